"""Pooling (deconvolution) size factors, reproducing scran 1.26.2 ``calculateSumFactors``.

``scran::calculateSumFactors`` is ``scuttle::pooledSizeFactors`` (scuttle 1.8.4). The method
(Lun, Bach & Marioni 2016, *Genome Biology* 17:75) sums the library-size-normalised counts
of pools of samples, takes the median ratio of each pool to an average pseudo-sample, and
solves the linear system that ties every pool's factor to the factors of its members.

Behaviour kept from scuttle, with its defaults:

* ``sizes = seq(21, 101, 5)``; pool sizes larger than a cluster are dropped **silently**.
  With fewer samples than the smallest pool no pool equation remains and the factors are
  exactly ``library size / mean library size``. That is what scran returns for every bulk
  cohort under 21 samples; :attr:`PooledSizeFactors.notes` says so, so the caller can
  show it (a pooling method that pools nothing is worth a line in the log).
* ``min.mean`` from the median library size (≤ 5e4 → 0.1, ≥ 1e5 → 1, in between 0.1
  with scuttle's warning "assuming UMI data").
* The low-weight equations carry weight ``sqrt(1e-6)``; the least-squares system has full
  column rank, so a dense Householder QR gives scuttle's sparse-QR answer to rounding.
* Clusters are rescaled to the cluster whose pseudo-sample has most non-zero genes, by the
  median ratio of pseudo-samples, and the factors are divided by their mean.

Departures, all on input where scuttle stops with an R error or warns and goes on:

* a sample with no reads, a cluster label that is missing, a cluster of one sample, and a
  ``min.mean`` that removes every gene raise :class:`~cohortnorm.errors.InputError`
  naming the samples/cluster and the fix;
* non-positive factor estimates are not repaired with ``cleanSizeFactors`` (a robust
  ``nls`` fit of detected genes on the factor): they raise an InputError that names the
  samples, because a size factor that had to be invented from a trend is not one a
  clinical user should receive silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import qr, solve_triangular

from cohortnorm.errors import InputError

FloatArray = NDArray[np.float64]

__all__ = [
    "DEFAULT_SIZES",
    "LOW_WEIGHT",
    "PooledSizeFactors",
    "guess_min_mean",
    "pooled_size_factors",
]

#: scuttle's default pool sizes, ``seq(21, 101, 5)``.
DEFAULT_SIZES: tuple[int, ...] = tuple(range(21, 102, 5))
#: scuttle's ``LOWWEIGHT``: the squared weight of the equations that pin each factor.
LOW_WEIGHT = 1e-6
#: scuttle's ``max.cluster.size`` default.
MAX_CLUSTER_SIZE = 3000


@dataclass
class PooledSizeFactors:
    """Output of :func:`pooled_size_factors`.

    Attributes
    ----------
    size_factors : ndarray, samples
        Size factors with mean 1 (over the positive ones), as ``calculateSumFactors`` returns.
    min_mean : float
        The ``min.mean`` used (given, or chosen from the median library size).
    clusters : list of str
        Cluster names in scuttle's order (after splitting clusters above ``max_cluster_size``).
    pool_sizes : dict of str to list of int
        For each cluster, the pool sizes that fit (empty: only the low-weight equations).
    rescaling : dict of str to float
        The factor each cluster's estimates were multiplied by (1 for the reference).
    reference_cluster : str
        The cluster the others were rescaled to.
    genes_used : dict of str to int
        Genes passing ``min.mean`` in each cluster.
    warnings : list of str
        What scuttle warns about (UMI guess, fallback rescaling).
    notes : list of str
        Plain-language notes for the log (e.g. no pool fits a cluster).
    """

    size_factors: FloatArray
    min_mean: float
    clusters: list[str]
    pool_sizes: dict[str, list[int]]
    rescaling: dict[str, float]
    reference_cluster: str
    genes_used: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def guess_min_mean(counts: FloatArray, min_mean: float | None) -> tuple[float, list[str]]:
    """``min.mean`` as scuttle's ``.guessMinMean`` chooses it.

    Parameters
    ----------
    counts : ndarray, genes × samples
        The full matrix (before ``subset_row``).
    min_mean : float or None
        A given value is floored at 1e-8; ``None`` picks from the median library size.

    Returns
    -------
    float, list of str
        The value and any warning scuttle would give.
    """
    if min_mean is not None:
        return max(float(min_mean), 1e-8), []
    mid = float(np.median(counts.sum(axis=0)))
    if mid <= 50000:
        return 0.1, []
    if mid >= 1e5:
        return 1.0, []
    return 0.1, [
        f"median library size {mid:g} is between 5e4 and 1e5: assuming UMI data when "
        "setting min_mean (0.1); give min_mean explicitly to silence this"
    ]


def _ring(scaling: FloatArray) -> NDArray[np.intp]:
    """scuttle's ``.generateSphere``: odd ranks ascending, then even ranks descending, twice.

    Neighbouring pools then mix small and large libraries, so no pool is all-small.
    """
    o = np.argsort(scaling, kind="stable")  # R's order(): ties by position
    out = np.concatenate([o[0::2], o[1::2][::-1]])
    return np.concatenate([out, out])


def _median(values: FloatArray) -> float:
    """R's ``median``: the mean of the two middle values for an even count."""
    return float(np.median(values))


def _pool_factors(
    exprs: FloatArray, ave: FloatArray, ring: NDArray[np.intp], sizes: Sequence[int]
) -> FloatArray:
    """Median pool/pseudo-sample ratio for every pool (size-major, start-minor order).

    Pool sums come from running sums along the ring: the difference of two running sums
    loses at most ``2n/S`` ulps relative to summing the pool directly, far below the
    tolerance of the comparison with scran, and it makes each pool O(genes).
    """
    n = exprs.shape[1]
    running = np.zeros((exprs.shape[0], 2 * n + 1))
    np.cumsum(exprs[:, ring], axis=1, out=running[:, 1:])
    out = np.empty(len(sizes) * n)
    # columns per block so that a block of ratios stays near 4 million doubles
    step = max(1, min(n, 4_000_000 // max(1, exprs.shape[0])))
    for k, size in enumerate(sizes):
        for w0 in range(0, n, step):
            w = np.arange(w0, min(n, w0 + step))
            pools = running[:, w + size] - running[:, w]
            # R's median: the mean of the two middle values for an even count
            out[k * n + w] = np.median(pools / ave[:, None], axis=0)
    return out


def _solve(
    ring: NDArray[np.intp], sizes: Sequence[int], factors: FloatArray, total: float, n: int
) -> FloatArray:
    """Least squares of the pooling system, by Householder QR taken one pool size at a time.

    Folding the rows block by block into the n × n triangle keeps memory at O(n²) whatever
    the number of pool sizes; the system has full column rank (the low-weight rows alone
    have it), so the answer is the unique least-squares solution that scuttle's sparse QR
    also returns, to rounding.
    """
    w = np.sqrt(LOW_WEIGHT)
    r = w * np.eye(n)
    rhs = np.full(n, w / total)
    for k, size in enumerate(sizes):
        block = np.zeros((n, n))
        for start in range(n):
            block[start, ring[start : start + size]] = 1.0
        q, r_new = qr(np.vstack([r, block]), mode="economic")
        rhs = q.T @ np.concatenate([rhs, factors[k * n : (k + 1) * n]])
        r = r_new
    return solve_triangular(r, rhs)


def _as_labels(clusters: ArrayLike | None, n: int) -> tuple[list[str], list[NDArray[np.intp]]]:
    """Clusters as R's ``split()`` groups them: factor levels in order, else sorted values."""
    if clusters is None:
        return ["0"], [np.arange(n)]
    if isinstance(clusters, pd.Categorical):
        cat = clusters
    elif isinstance(clusters, pd.Series) and isinstance(clusters.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(clusters)
    else:
        values = list(np.asarray(clusters, dtype=object))
        if len(values) != n:
            raise InputError(
                f"clusters has {len(values)} value(s) but the count matrix has {n} sample(s). "
                "Give one cluster label per sample, in the column order of the counts."
            )
        missing = [
            i
            for i, v in enumerate(values)
            if v is None or (isinstance(v, float) and np.isnan(v)) or v == ""
        ]
        if missing:
            raise InputError(
                "clusters: sample(s) at position(s) "
                f"{', '.join(str(i + 1) for i in missing)} have no cluster label. "
                "Fill in the cluster column for every sample."
            )
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            # numbers: R's factor() sorts them numerically
            cat = pd.Categorical(values)
        else:
            labels = [str(v) for v in values]
            cat = pd.Categorical(labels, categories=sorted(set(labels), key=_r_string_key))
    if len(cat) != n:
        raise InputError(
            f"clusters has {len(cat)} value(s) but the count matrix has {n} sample(s). "
            "Give one cluster label per sample, in the column order of the counts."
        )
    codes = np.asarray(cat.codes)
    if (codes < 0).any():
        bad = np.flatnonzero(codes < 0)
        raise InputError(
            f"clusters: sample(s) at position(s) {', '.join(str(i + 1) for i in bad)} have no "
            "cluster label. Fill in the cluster column for every sample."
        )
    names = [str(c) for c in cat.categories]
    groups = [np.flatnonzero(codes == i) for i in range(len(names))]
    empty = [nm for nm, g in zip(names, groups, strict=True) if g.size == 0]
    if empty:
        raise InputError(
            f"clusters: level(s) {', '.join(empty)} have no sample. Drop unused levels from the "
            "cluster column (scran stops with 'zero cells in one of the clusters')."
        )
    return names, groups


def _limit_cluster_size(
    names: list[str], groups: list[NDArray[np.intp]], n: int, max_size: int | None
) -> tuple[list[str], list[NDArray[np.intp]]]:
    """scuttle's ``.limit_cluster_size``: split big clusters round-robin, then regroup by name."""
    if max_size is None or all(g.size <= max_size for g in groups):
        return names, groups
    labels = np.empty(n, dtype=object)
    for nm, g in zip(names, groups, strict=True):
        mult = int(np.ceil(g.size / max_size))
        if mult > 1:
            labels[g] = [f"{nm}-{1 + (i % mult)}" for i in range(g.size)]
        else:
            labels[g] = f"{nm}-1"
    # scuttle relabels every cluster as character "id-k" and split() then sorts the names.
    uniq = sorted(set(labels), key=_r_string_key)
    return list(uniq), [np.flatnonzero(labels == u) for u in uniq]


def _r_string_key(s: str) -> tuple[str, str]:
    """Sort key close to R's ``sort()`` of labels under ICU collation (R in a UTF-8 locale).

    Case-insensitive first, lower case before upper case on a tie (``a, A, b, B``). The
    order only decides which cluster is the reference when two clusters' pseudo-samples
    have equally many non-zero genes; pass a :class:`pandas.Categorical` to fix it.
    """
    return (s.casefold(), s.swapcase())


def _per_cluster(
    x: FloatArray, scaling: FloatArray, sizes: Sequence[int], min_mean: float
) -> tuple[FloatArray, FloatArray, list[int], int]:
    """scuttle's ``.per_cluster_normalize`` without the ``cleanSizeFactors`` repair."""
    exprs = x / scaling
    ave = exprs.mean(axis=1) * scaling.mean()
    keep = ave >= min_mean
    exprs = exprs[keep]
    use_ave = ave[keep]
    n = x.shape[1]
    fit = [int(s) for s in sizes if s <= n]
    ring = _ring(scaling)
    factors = _pool_factors(exprs, use_ave, ring, fit)
    theta = _solve(ring, fit, factors, float(use_ave.sum()), n)
    return theta * scaling, ave, fit, int(keep.sum())


def pooled_size_factors(
    counts: ArrayLike,
    sizes: Sequence[int] | None = None,
    clusters: ArrayLike | None = None,
    *,
    ref_clust: str | None = None,
    max_cluster_size: int | None = MAX_CLUSTER_SIZE,
    scaling: ArrayLike | None = None,
    min_mean: float | None = None,
    subset_row: ArrayLike | None = None,
    sample_names: Sequence[str] | None = None,
) -> PooledSizeFactors:
    """Deconvolution size factors, as scran 1.26.2 ``calculateSumFactors`` / scuttle 1.8.4.

    Parameters
    ----------
    counts : array_like, genes × samples
        Raw counts (scran's ``x``); the workflow passes the filterByExpr-filtered counts.
    sizes : sequence of int, optional
        Pool sizes (default ``seq(21, 101, 5)``). Sorted; duplicates are an error.
    clusters : array_like, optional
        One label per sample (a sheet column); a :class:`pandas.Categorical` keeps its level
        order, other labels are grouped in sorted order as R's ``factor()`` would.
    ref_clust : str, optional
        Cluster the others are rescaled to (default: most non-zero genes in its pseudo-sample).
    max_cluster_size : int or None
        Clusters above this are split round-robin (scuttle's ``max.cluster.size``).
    scaling : array_like, optional
        Per-sample scaling in place of the library sizes.
    min_mean : float, optional
        Minimum pseudo-sample mean for a gene to be used; ``None`` as scuttle chooses.
    subset_row : array_like of bool or int, optional
        Genes to use (scuttle's ``subset.row``); ``min_mean`` is still chosen on all genes.
    sample_names : sequence of str, optional
        Used in error messages.

    Returns
    -------
    PooledSizeFactors
        ``size_factors`` equal ``calculateSumFactors(x, ...)`` (positive = TRUE).

    Raises
    ------
    InputError
        A sample with no reads, a one-sample cluster, bad cluster labels or sizes, no gene
        passing ``min_mean``, or non-positive estimates (see the module docstring).
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise InputError("counts must be a genes × samples matrix.")
    n = x.shape[1]
    names = (
        list(sample_names) if sample_names is not None else [f"sample {i + 1}" for i in range(n)]
    )
    if not np.isfinite(x).all() or (x < 0).any():
        raise InputError("counts must be finite and non-negative for scran size factors.")
    size_list = sorted(int(s) for s in (DEFAULT_SIZES if sizes is None else sizes))
    if not size_list:
        raise InputError(
            "sizes is empty. Give at least one pool size (scran's default is 21, 26, …, 101)."
        )
    if len(set(size_list)) != len(size_list):
        dup = sorted({s for s in size_list if size_list.count(s) > 1})
        raise InputError(
            f"pool sizes are not unique: {dup} given more than once. List each pool size once."
        )
    if size_list[0] < 1:
        raise InputError(f"pool size {size_list[0]} is not a positive number of samples.")

    cl_names, groups = _as_labels(clusters, n)
    cl_names, groups = _limit_cluster_size(cl_names, groups, n, max_cluster_size)

    scale_all = None
    if scaling is not None:
        scale_all = np.asarray(scaling, dtype=np.float64)
        if scale_all.shape != (n,):
            raise InputError(f"scaling has {scale_all.size} value(s) but there are {n} sample(s).")

    mm, warnings = guess_min_mean(x, min_mean)
    rows = x if subset_row is None else x[np.asarray(subset_row)]

    lib = rows.sum(axis=0) if scale_all is None else scale_all
    zero = [names[i] for i in np.flatnonzero(lib == 0)]
    if zero:
        what = (
            "have no reads in the genes used" if scale_all is None else "have a scaling value of 0"
        )
        raise InputError(
            f"sample(s) {', '.join(zero)} {what}; pooled size factors need every sample to have "
            "reads. Remove them from the sample sheet or check the counting step."
        )

    nf: dict[str, FloatArray] = {}
    ave: dict[str, FloatArray] = {}
    pool_sizes: dict[str, list[int]] = {}
    genes_used: dict[str, int] = {}
    notes: list[str] = []
    for nm, idx in zip(cl_names, groups, strict=True):
        label = "all samples" if clusters is None else f"cluster {nm}"
        if idx.size < 2:
            raise InputError(
                f"{label} has only {idx.size} sample ({', '.join(names[i] for i in idx)}); "
                "scran cannot pool a single sample. Merge it into another cluster or run without "
                "clusters."
            )
        sub = rows[:, idx]
        sc = sub.sum(axis=0) if scale_all is None else scale_all[idx]
        exprs_mean = (sub / sc).mean(axis=1) * sc.mean()
        if not (exprs_mean >= mm).any():
            raise InputError(
                f"{label}: no gene has a mean normalised count of at least min_mean = {mm:g}, so "
                "no gene is left to compare the samples. Check that the matrix holds raw counts, "
                "or lower min_mean."
            )
        f, a, fit, used = _per_cluster(sub, sc, size_list, mm)
        nf[nm], ave[nm], pool_sizes[nm], genes_used[nm] = f, a, fit, used
        if not fit:
            notes.append(
                f"{label}: {idx.size} samples, fewer than the smallest pool size {size_list[0]}; "
                "as in scran no pool is formed and the factors are library size / mean library size"
            )
        bad = idx[f <= 0]
        if bad.size:
            raise InputError(
                f"scran pooling gave non-positive size factors for sample(s) "
                f"{', '.join(names[i] for i in bad)} ({label}). These samples have too few "
                "reads in the genes shared with the others; remove them, or use clusters of "
                "similar samples."
            )

    if ref_clust is None:
        nonzero = [int((ave[nm] > 0).sum()) for nm in cl_names]
        ref = cl_names[int(np.argmax(nonzero))]
    else:
        ref = str(ref_clust)
        if ref not in cl_names:
            raise InputError(
                f"ref_clust {ref!r} is not one of the clusters: {', '.join(cl_names)}."
            )

    rescaling: dict[str, float] = {}
    ref_prof = ave[ref]
    ref_lib = float(ref_prof.sum())
    for nm in cl_names:
        cur = ave[nm]
        cur_lib = float(cur.sum())
        use = (cur / cur_lib + ref_prof / ref_lib) / 2 * (cur_lib + ref_lib) / 2 >= mm
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = cur[use] / ref_prof[use]
        ratio = ratio[~np.isnan(ratio)]
        value = _median(ratio) if ratio.size else np.nan
        if not np.isfinite(value) or value <= 0:
            warnings.append(
                f"inter-cluster rescaling factor for cluster {nm} is not strictly positive, "
                "reverting to the ratio of average library sizes"
            )
            value = float(cur[use].sum() / ref_prof[use].sum())
        rescaling[nm] = float(value)

    final = np.full(n, np.nan)
    for nm, idx in zip(cl_names, groups, strict=True):
        final[idx] = nf[nm] * rescaling[nm]
    pos = (final > 0) & ~np.isnan(final)
    final = final / final[pos].mean()
    return PooledSizeFactors(
        size_factors=final,
        min_mean=mm,
        clusters=cl_names,
        pool_sizes=pool_sizes,
        rescaling=rescaling,
        reference_cluster=ref,
        genes_used=genes_used,
        warnings=warnings,
        notes=notes,
    )
