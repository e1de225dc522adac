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

Non-positive estimates (samples with reads in very few of the genes the others share) are
replaced as scran's ``positive = TRUE`` does, by scuttle's ``cleanSizeFactors``: a robust
``nls`` trend of detected genes against size factor. That fit uses finite-difference
gradients whose noise (~1e-6) turns last-bit differences into ~1e-8 differences of the
trend, so R's ``nls`` Gauss-Newton steps and its LINPACK QR are reproduced operation by
operation: from R's raw estimates the repaired factors equal scran's to the last bit, and
from ours (within 1e-13 of R's) they agree to about 1e-7. Every repair is reported in
:attr:`PooledSizeFactors.warnings` with the samples named; ``positive=False`` refuses
instead.

Departures, all on input where scuttle stops with an R error: a sample with no reads, a
cluster label that is missing, a cluster of one sample, and a ``min.mean`` that removes
every gene raise :class:`~cohortnorm.errors.InputError` naming the samples/cluster and the
fix.
"""

from __future__ import annotations

import math
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
    "clean_size_factors",
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
) -> tuple[FloatArray, FloatArray, list[int], int, FloatArray]:
    """scuttle's ``.per_cluster_normalize`` before the ``cleanSizeFactors`` repair.

    Returns the factors, the pseudo-sample over all genes, the pool sizes used, the number
    of genes kept and, per sample, the number of kept genes detected (for the repair).
    """
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
    detected = (exprs > 0).sum(axis=0).astype(np.float64)
    return theta * scaling, ave, fit, int(keep.sum()), detected


# ------------------------------------------------- cleanSizeFactors (scuttle) and R's nls

#: R's ``numericDeriv`` step, ``.Machine$double.eps^(1/2)``.
_DERIV_EPS = 2.0**-26


def _trend_rhs(theta: Sequence[float], log_x: FloatArray, x: FloatArray) -> FloatArray:
    """``logA + lX - log(X * exp(logB) + 1)``, evaluated as R does (libm, left to right)."""
    log_a, log_b = float(theta[0]), float(theta[1])
    try:
        e_b = math.exp(log_b)
        out = np.array(
            [(log_a + lx) - math.log(xv * e_b + 1.0) for lx, xv in zip(log_x, x, strict=True)]
        )
    except (OverflowError, ValueError) as exc:
        raise FloatingPointError("Missing value or an infinity produced") from exc
    if not np.isfinite(out).all():
        raise FloatingPointError("Missing value or an infinity produced")
    return out


def _numeric_deriv(
    theta: FloatArray, log_x: FloatArray, x: FloatArray, rhs: FloatArray
) -> FloatArray:
    """R's ``numericDeriv`` (forward differences, step ``|theta|·2^-26``, divided by the step)."""
    grad = np.empty((rhs.size, theta.size))
    for i in range(theta.size):
        delta = _DERIV_EPS if theta[i] == 0 else abs(theta[i]) * _DERIV_EPS
        moved = theta.copy()
        moved[i] += delta
        new = _trend_rhs(moved, log_x, x)
        if not np.isfinite(new).all():
            raise FloatingPointError("Missing value or an infinity produced")
        grad[:, i] = (new - rhs) / delta
    return grad


def _ddot(x: Sequence[float], y: Sequence[float]) -> float:
    """Reference BLAS ``ddot``: a sequential sum (its unrolling keeps the order)."""
    total = 0.0
    for a, b in zip(x, y, strict=True):
        total = total + a * b
    return total


def _dnrm2(x: Sequence[float]) -> float:
    """Reference BLAS 3.11 ``dnrm2`` for values in the unscaled range: ``sqrt(Σ x²)``."""
    total = 0.0
    for a in x:
        total = total + a * a
    return math.sqrt(total)


def _linpack_qr(a: FloatArray) -> tuple[list[list[float]], list[float]]:
    """R's ``qr()`` (LINPACK ``dqrdc2``) of a full-rank n × p matrix, as columns.

    The finite-difference gradients of ``nls`` carry noise near 1e-6, so a solve that
    differs from R's in the last bit sends the Gauss-Newton path elsewhere at 1e-8. The
    Householder steps are therefore done in R's order with R's BLAS arithmetic.
    """
    n, p = a.shape
    cols = [[float(v) for v in a[:, j]] for j in range(p)]
    qraux = [0.0] * p
    for col in range(min(n, p)):
        if col == n - 1:
            break
        xl = cols[col]
        nrmxl = _dnrm2(xl[col:])
        if nrmxl == 0.0:
            continue
        if xl[col] != 0.0:
            nrmxl = math.copysign(nrmxl, xl[col])
        scale = 1.0 / nrmxl
        for i in range(col, n):
            xl[i] = scale * xl[i]
        xl[col] = 1.0 + xl[col]
        for j in range(col + 1, p):
            xj = cols[j]
            t = -_ddot(xl[col:], xj[col:]) / xl[col]
            for i in range(col, n):
                xj[i] = xj[i] + t * xl[i]
        qraux[col] = xl[col]
        xl[col] = -nrmxl
    return cols, qraux


def _linpack_qty(cols: list[list[float]], qraux: list[float], y: FloatArray) -> list[float]:
    """``qr.qty`` (LINPACK ``dqrsl``): Householder reflections applied in order."""
    n, k = len(y), len(cols)
    qty = [float(v) for v in y]
    for j in range(min(k, n - 1)):
        if qraux[j] == 0.0:
            continue
        v = cols[j][:]
        v[j] = qraux[j]
        t = -_ddot(v[j:], qty[j:]) / v[j]
        for i in range(j, n):
            qty[i] = qty[i] + t * v[i]
    return qty


def _linpack_coef(cols: list[list[float]], qty: list[float]) -> FloatArray:
    """``qr.coef`` back substitution, column by column as ``dqrsl`` does it."""
    k = len(cols)
    b = qty[:k]
    for j in range(k - 1, -1, -1):
        b[j] = b[j] / cols[j][j]
        t = -b[j]
        for i in range(j):
            b[i] = b[i] + t * cols[j][i]
    return np.array(b)


class _NlsFailed(Exception):
    """``nls`` stopped with an error (``try-error`` in cleanSizeFactors)."""


def _nls_state(
    theta: FloatArray, log_y: FloatArray, log_x: FloatArray, x: FloatArray, swts: FloatArray
) -> tuple[FloatArray, FloatArray, float, FloatArray, bool]:
    """One ``setPars``: fitted values, weighted residuals, deviance, weighted gradient, singular."""
    rhs = _trend_rhs(theta, log_x, x)
    resid = swts * (log_y - rhs)
    grad = swts[:, None] * _numeric_deriv(theta, log_x, x, rhs)
    singular = bool(np.linalg.matrix_rank(grad, tol=1e-7 * np.abs(grad).max(initial=0)) < 2)
    return rhs, resid, math.fsum(resid**2), grad, singular


def _nls(
    start: FloatArray,
    log_y: FloatArray,
    log_x: FloatArray,
    x: FloatArray,
    weights: FloatArray,
    maxiter: int = 50,
    tol: float = 1e-5,
    min_factor: float = 1 / 1024,
) -> tuple[FloatArray, FloatArray]:
    """R's ``nls`` Gauss-Newton (``nls_iter``) with ``warnOnly = TRUE``.

    Returns the parameters and fitted values the fit object holds when nls returns: on a
    convergence failure (iterations, step factor, singular gradient) nls only warns, and
    its model holds the parameters it last tried.
    """
    swts = np.sqrt(weights)
    theta = start.astype(np.float64).copy()
    if not np.isfinite(theta).all():
        raise _NlsFailed("non-finite start")
    try:
        rhs, resid, dev, grad, singular = _nls_state(theta, log_y, log_x, x, swts)
    except FloatingPointError as exc:
        raise _NlsFailed(str(exc)) from exc
    if singular:
        raise _NlsFailed("singular gradient matrix at initial parameter estimates")
    fac = 1.0
    for _ in range(maxiter):
        cols, qraux = _linpack_qr(grad)
        qty = _linpack_qty(cols, qraux, resid)
        denom = math.fsum(v * v for v in qty[2:])
        conv = math.sqrt(math.fsum(v * v for v in qty[:2]) / denom) if denom > 0 else math.inf
        if conv <= tol:
            return theta, rhs
        incr = _linpack_coef(cols, qty)  # qr.coef(QR, resid)
        while fac >= min_factor:
            trial = theta + fac * incr
            try:
                t_rhs, t_resid, t_dev, t_grad, t_singular = _nls_state(trial, log_y, log_x, x, swts)
            except FloatingPointError as exc:
                raise _NlsFailed(str(exc)) from exc
            if t_singular:
                return trial, t_rhs
            if t_dev <= dev:
                theta, rhs, resid, dev, grad = trial, t_rhs, t_resid, t_dev, t_grad
                fac = min(2 * fac, 1.0)
                break
            fac /= 2
            last = (trial, t_rhs)
        if fac < min_factor:
            return last
    return theta, rhs


def clean_size_factors(
    size_factors: FloatArray, num_detected: FloatArray, iterations: int = 3, nmads: float = 3
) -> FloatArray:
    """Replace non-positive size factors, reproducing scuttle 1.8.4 ``cleanSizeFactors``.

    The positive factors ``X`` and genes detected ``Y`` are fitted by
    ``log Y = log A + log X - log(X·B + 1)`` (``nls``, four passes with tricube robustness
    weights); a failed sample with ``Y`` genes detected gets ``Y/(A - B·Y)`` (the largest
    positive factor if that is negative). When ``nls`` fails, the failed samples get the
    smallest positive factor.

    Raises
    ------
    InputError
        Fewer than three positive factors (scuttle: "need at least three positive values
        for trend fitting").
    """
    sf = np.asarray(size_factors, dtype=np.float64).copy()
    keep = sf > 0
    if keep.all():
        return sf
    x = sf[keep]
    y = np.asarray(num_detected, dtype=np.float64)[keep]
    if x.size < 3:
        raise InputError(
            f"only {x.size} sample(s) got a positive pooled size factor; scran needs at least "
            "three to repair the others. Remove the samples with too few reads, or use clusters "
            "of similar samples."
        )
    lower = _median(x) > x
    xl, yl = x[lower], y[lower]
    if xl.size:
        # lm(Y ~ 0 + X) as R solves it (LINPACK QR), to the last bit: see _linpack_qr
        cols, qraux = _linpack_qr(xl[:, None])
        a = float(_linpack_coef(cols, _linpack_qty(cols, qraux, yl))[0])
    else:
        a = math.nan
    below = np.flatnonzero(y < a * x)
    if below.size == 0:
        sf[~keep] = x.min()
        return sf
    top = below[int(np.argmax(y[below]))]
    b = a / y[top] - 1 / x[top]
    with np.errstate(invalid="ignore", divide="ignore"):
        start = np.log(np.array([a, b]))
    # libm's log, as R's, for the data of the fit
    log_y = np.array([math.log(v) for v in y])
    log_x = np.array([math.log(v) for v in x])
    weights = np.ones(y.size)
    theta = start
    try:
        for _ in range(iterations + 1):
            theta, fitted = _nls(theta, log_y, log_x, x, weights)
            resids = np.abs(log_y - fitted)
            bandwidth = max(1e-8, _median(resids) * nmads)
            # R's ^3 is libm's pow
            weights = np.array(
                [math.pow(1 - math.pow(min(r / bandwidth, 1.0), 3), 3) for r in resids]
            )
    except _NlsFailed:
        sf[~keep] = x.min()
        return sf
    failed = np.asarray(num_detected, dtype=np.float64)[~keep]
    new = failed / (math.exp(theta[0]) - math.exp(theta[1]) * failed)
    new[new < 0] = x.max()
    sf[~keep] = new
    return sf


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
    positive: bool = True,
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
    positive : bool
        ``True`` (scran's default): non-positive estimates are replaced as scuttle's
        ``cleanSizeFactors`` does, with a warning naming the samples. ``False``: they raise
        :class:`~cohortnorm.errors.InputError` (scran would return them as they are, and
        no later step can divide by them).
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
    # One function, over 120 lines: it follows scran's calculateSumFactors() step by step
    # (min.mean filter, clusters, pools on the ring, the constrained least-squares system,
    # rescaling between clusters, cleanSizeFactors), so that it reads side by side with
    # the R source; each step is a call into this module.
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
        f, a, fit, used, detected = _per_cluster(sub, sc, size_list, mm)
        nf[nm], ave[nm], pool_sizes[nm], genes_used[nm] = f, a, fit, used
        if not fit:
            notes.append(
                f"{label}: {idx.size} samples, fewer than the smallest pool size {size_list[0]}; "
                "as in scran no pool is formed and the factors are library size / mean library size"
            )
        bad = idx[f <= 0]
        if bad.size:
            who = ", ".join(names[i] for i in bad)
            if not positive:
                raise InputError(
                    f"scran pooling gave non-positive size factors for sample(s) {who} ({label}). "
                    "These samples have too few reads in the genes shared with the others; remove "
                    "them, or use clusters of similar samples."
                )
            nf[nm] = clean_size_factors(f, detected)
            warnings.append(
                f"scran pooling gave non-positive size factors for sample(s) {who} ({label}); "
                "as scran does (positive=TRUE), they were replaced by the value a trend of "
                "detected genes against size factor predicts (cleanSizeFactors). These samples "
                "have too few reads in the genes shared with the others: consider removing them."
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
