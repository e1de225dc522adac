"""edgeR's library-size normalization, expression filter and counts per million.

Reproduces edgeR 3.40 (``calcNormFactors``, ``filterByExpr``, ``cpm``) as specified in
``shared/reference/ALGORITHMS.md`` §1–2. Every function takes a genes × samples array of
counts and returns plain numpy arrays; nothing here reads files or knows about Snakemake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from cohortnorm.blocks import cell_slices

NormMethod = Literal["TMM", "TMMwsp", "RLE", "upperquartile", "none"]
NORM_METHODS: tuple[str, ...] = ("TMM", "TMMwsp", "RLE", "upperquartile", "none")

FloatArray = npt.NDArray[np.float64]

# Samples are processed in blocks so that TMM's per-gene M, A and variance matrices
# (about ten temporaries of a block each) stay near 300 MB, whatever the cohort size.
_BLOCK_CELLS = 4_000_000


def _as_counts(counts: npt.ArrayLike) -> FloatArray:
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"counts must be a genes × samples matrix, got {values.ndim} dimension(s)")
    if np.isnan(values).any():
        raise ValueError("NA counts not permitted")
    return values


def _library_sizes(values: FloatArray, lib_size: npt.ArrayLike | None) -> FloatArray:
    if lib_size is None:
        return values.sum(axis=0)
    sizes = np.asarray(lib_size, dtype=np.float64).ravel()
    if np.isnan(sizes).any():
        raise ValueError("NA lib.sizes not permitted")
    if sizes.size != values.shape[1]:
        raise ValueError(
            f"lib_size has {sizes.size} entries but counts have {values.shape[1]} samples"
        )
    return sizes


def upper_quartile_factors(counts: FloatArray, lib_size: FloatArray, p: float = 0.75) -> FloatArray:
    """Raw upper-quartile factors, edgeR's ``.calcFactorQuantile``.

    Parameters
    ----------
    counts
        Genes × samples counts with all-zero genes already removed.
    lib_size
        Library size of each sample.
    p
        The quantile (R type 7).

    Returns
    -------
    numpy.ndarray
        ``quantile(counts[, j], p) / lib_size[j]``, not yet rescaled. A zero quantile
        gives 0, as in edgeR (which only warns).
    """
    return np.quantile(counts, p, axis=0, method="linear") / lib_size


def _tmm_reference_column(counts: FloatArray, lib_size: FloatArray, p: float) -> int:
    f75 = upper_quartile_factors(counts, lib_size, p)
    # Since edgeR 3.31.5: when most counts are zero the upper quartiles are useless, so
    # the sample with the largest sum of square-root counts serves as reference.
    if np.median(f75) < 1e-20:
        return int(np.argmax(np.sqrt(counts).sum(axis=0)))
    return int(np.argmin(np.abs(f75 - f75.mean())))


def _average_rank_within(
    values: FloatArray, low: npt.NDArray[np.float64], high: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Per column, whether each value's average rank (R's ``rank``) lies in [low, high].

    The average rank is non-decreasing in the value, so the window of ranks is a window
    of values: one sort per column finds its ends, and comparing with them gives the
    same answer as ranking every value, at the cost of a sort rather than an argsort
    and its scatter. ``low`` and ``high`` hold one bound per column.
    """
    ordered = np.sort(values.T, axis=1)  # one sample per contiguous row
    n = ordered.shape[1]
    position = np.arange(n)
    new_value = np.ones(ordered.shape, dtype=bool)
    new_value[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(new_value, position, 0), axis=1)
    last_value = np.ones(ordered.shape, dtype=bool)
    last_value[:, :-1] = new_value[:, 1:]
    last = np.minimum.accumulate(np.where(last_value, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    average_rank = (first + last) / 2 + 1
    lowest = np.min(np.where(average_rank >= low[:, None], ordered, np.inf), axis=1, initial=np.inf)
    highest = np.max(
        np.where(average_rank <= high[:, None], ordered, -np.inf), axis=1, initial=-np.inf
    )
    return (values >= lowest) & (values <= highest)


def _tmm_factors(
    counts: FloatArray,
    lib_size: FloatArray,
    ref: int,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> FloatArray:
    """edgeR's ``.calcFactorTMM`` for every sample against column ``ref``, vectorized."""
    n_genes, n_samples = counts.shape
    factors = np.ones(n_samples)
    ref_counts = counts[:, ref]
    n_ref = lib_size[ref]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ref = np.log2(ref_counts / n_ref)
        var_ref = (n_ref - ref_counts) / n_ref / ref_counts
        for block in cell_slices(n_samples, n_genes, _BLOCK_CELLS):
            obs = counts[:, block]
            n_obs = lib_size[block]
            log_obs = np.log2(obs / n_obs)
            log_ratio = np.log2((obs / n_obs) / (ref_counts / n_ref)[:, None])
            abs_expr = (log_obs + log_ref[:, None]) / 2
            variance = (n_obs - obs) / n_obs / obs + var_ref[:, None]
            usable = np.isfinite(log_ratio) & np.isfinite(abs_expr) & (abs_expr > a_cutoff)
            n_used = usable.sum(axis=0)
            # R's rank() with ties averaged, over each sample's usable genes only. Unusable
            # genes are set to +Inf: they rank after every usable one, so the usable genes'
            # ranks are those among themselves, and whole blocks of samples are trimmed at
            # once (scipy's rankdata with nan_policy="omit" goes column by column).
            log_ratio[~usable] = np.inf
            abs_expr[~usable] = np.inf
            lo_l = np.floor(n_used * logratio_trim) + 1
            lo_s = np.floor(n_used * sum_trim) + 1
            keep = (
                usable
                & _average_rank_within(log_ratio, lo_l, n_used + 1 - lo_l)
                & _average_rank_within(abs_expr, lo_s, n_used + 1 - lo_s)
            )
            log_ratio[~usable] = np.nan
            if do_weighting:
                # sum(logR/v, na.rm=TRUE) / sum(1/v, na.rm=TRUE) over the kept genes.
                log_factor = np.nansum(np.where(keep, log_ratio / variance, np.nan), axis=0)
                log_factor /= np.nansum(np.where(keep, 1 / variance, np.nan), axis=0)
            else:
                log_factor = np.where(keep, log_ratio, 0.0).sum(axis=0) / keep.sum(axis=0)
            log_factor = np.where(np.isnan(log_factor), 0.0, log_factor)
            max_abs = np.nanmax(np.where(usable, np.abs(log_ratio), 0.0), axis=0, initial=0.0)
            # edgeR returns exactly 1 when the two samples are (nearly) identical,
            # which includes the reference itself.
            log_factor = np.where((max_abs < 1e-6) | (n_used == 0), 0.0, log_factor)
            factors[block] = 2**log_factor
    return factors


def _tmmwsp_factor(
    obs: FloatArray,
    ref: FloatArray,
    n_obs: float,
    n_ref: float,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
) -> float:
    """edgeR's ``.calcFactorTMMwsp`` for one sample (TMM with singleton pairing)."""
    eps = 1e-14
    state = 2 * (obs > eps) + (ref > eps)
    present = state != 0
    obs, ref, state = obs[present], ref[present], state[present]
    zero_obs, zero_ref = state == 1, state == 2
    single = zero_obs | zero_ref
    n_pairs = min(int(zero_obs.sum()), int(zero_ref.sum()))
    # Singletons are paired by rank: the largest count seen only in obs with the largest
    # seen only in ref, and so on; the unpaired rest is discarded.
    obs_single = -np.sort(-obs[single], kind="stable")[:n_pairs]
    ref_single = -np.sort(-ref[single], kind="stable")[:n_pairs]
    obs = np.concatenate([obs[~single], obs_single])
    ref = np.concatenate([ref[~single], ref_single])
    n = obs.size
    if n == 0:
        return 1.0
    obs_p = obs / n_obs
    ref_p = ref / n_ref
    with np.errstate(divide="ignore", invalid="ignore"):
        m_values = np.log2(obs_p / ref_p)
        a_values = 0.5 * np.log2(obs_p * ref_p)
    if np.max(np.abs(m_values)) < 1e-6:
        return 1.0
    m_shrunk = np.log2(((obs + 0.5) / (n_obs + 0.5)) / ((ref + 0.5) / (n_ref + 0.5)))
    order_m = np.lexsort((m_shrunk, m_values))
    order_a = np.argsort(a_values, kind="stable")
    lo_m = int(n * logratio_trim) + 1
    lo_a = int(n * sum_trim) + 1
    keep_m = np.zeros(n, dtype=bool)
    keep_m[order_m[lo_m - 1 : n + 1 - lo_m]] = True
    keep_a = np.zeros(n, dtype=bool)
    keep_a[order_a[lo_a - 1 : n + 1 - lo_a]] = True
    keep = keep_m & keep_a
    m_kept = m_values[keep]
    if do_weighting:
        obs_k, ref_k = obs_p[keep], ref_p[keep]
        variance = (1 - obs_k) / obs_k / n_obs + (1 - ref_k) / ref_k / n_ref
        weight = (1 + 1e-6) / (variance + 1e-6)
        return float(2 ** (np.sum(weight * m_kept) / np.sum(weight)))
    return float(2 ** np.mean(m_kept))


def calc_norm_factors(
    counts: npt.ArrayLike,
    method: NormMethod = "TMM",
    *,
    lib_size: npt.ArrayLike | None = None,
    ref_column: int | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
    p: float = 0.75,
) -> FloatArray:
    """Normalization factors, as ``edgeR::calcNormFactors`` (3.40) computes them.

    Parameters
    ----------
    counts
        Genes × samples counts. NaN is an error.
    method
        ``"TMM"`` (edgeR's default), ``"TMMwsp"``, ``"RLE"``, ``"upperquartile"`` or
        ``"none"``. ``"TMMwzp"`` is accepted as the old name of ``"TMMwsp"``.
    lib_size
        Library sizes; default the column sums. They are not recomputed after
        all-zero genes are dropped, exactly as in edgeR.
    ref_column
        0-based reference sample for TMM/TMMwsp; default edgeR's choice.
    logratio_trim, sum_trim, do_weighting, a_cutoff
        TMM's trimming fractions, precision weighting and abundance cutoff.
    p
        Quantile for ``"upperquartile"`` (and TMM's reference choice).

    Returns
    -------
    numpy.ndarray
        One factor per sample, rescaled so that their product is 1.

    Notes
    -----
    Genes with no positive count are dropped first. With one sample, or none left,
    all factors are 1.

    Raises
    ------
    ValueError
        On NaN counts, and where edgeR would return Inf or NA factors: a zero upper
        quartile, or RLE without a gene expressed in every sample.
    """
    values = _as_counts(counts)
    sizes = _library_sizes(values, lib_size)
    if method == "TMMwzp":
        method = "TMMwsp"
    if method not in NORM_METHODS:
        raise ValueError(f"unknown normalization method {method!r}; use one of {NORM_METHODS}")
    expressed = (values > 0).any(axis=1)
    if not expressed.all():  # boolean indexing always copies: only when needed
        values = values[expressed]
    n_samples = values.shape[1]
    if values.shape[0] == 0 or n_samples == 1 or method == "none":
        return np.ones(n_samples)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "upperquartile":
            factors = upper_quartile_factors(values, sizes, p)
            if not np.all(factors > 0):
                # edgeR only warns "One or more quantiles are zero" and returns Inf/NaN.
                raise ValueError(
                    f"the {p} quantile of the counts is zero in "
                    f"{int(np.sum(~(factors > 0)))} sample(s): upper-quartile normalization "
                    "is undefined; use TMM or a higher p"
                )
        elif method == "RLE":
            geo_mean = np.exp(np.log(values).mean(axis=1))
            usable = geo_mean > 0
            # The median of ratios (not of log ratios): with an even number of genes
            # edgeR averages the two middle ratios arithmetically.
            if not usable.any():
                # edgeR returns NA factors here; a number downstream would be meaningless.
                raise ValueError(
                    "RLE needs at least one gene with a positive count in every sample; "
                    "use TMM or TMMwsp for sparse data"
                )
            ratios = values[usable] / geo_mean[usable, None]
            factors = np.median(ratios, axis=0) / sizes
        elif method == "TMM":
            ref = _tmm_reference_column(values, sizes, p) if ref_column is None else ref_column
            factors = _tmm_factors(
                values, sizes, ref, logratio_trim, sum_trim, do_weighting, a_cutoff
            )
        else:
            ref = int(np.argmax(np.sqrt(values).sum(axis=0))) if ref_column is None else ref_column
            factors = np.array(
                [
                    _tmmwsp_factor(
                        values[:, j],
                        values[:, ref],
                        sizes[j],
                        sizes[ref],
                        logratio_trim,
                        sum_trim,
                        do_weighting,
                    )
                    for j in range(n_samples)
                ]
            )
        return factors / np.exp(np.mean(np.log(factors)))


def cpm(
    counts: npt.ArrayLike,
    lib_size: npt.ArrayLike | None = None,
    *,
    log: bool = False,
    prior_count: float = 2.0,
) -> FloatArray:
    """Counts per million, ``edgeR::cpm`` (3.40) on a matrix or DGEList.

    Parameters
    ----------
    counts
        Genes × samples counts.
    lib_size
        Library sizes; pass ``lib.size × norm.factors`` (the effective library sizes)
        to reproduce ``cpm(DGEList)``. Default: the column sums.
    log
        Return log2 CPM with a prior count, as edgeR's C routine ``calc_cpm_log``.
    prior_count
        Average prior count added to every count, scaled per sample by its library
        size relative to the mean library size (``prior.count=2`` in edgeR).

    Returns
    -------
    numpy.ndarray
        CPM or logCPM, genes × samples (float64).
    """
    values = np.asarray(counts, dtype=np.float64)
    sizes = values.sum(axis=0) if lib_size is None else np.asarray(lib_size, np.float64).ravel()
    if values.size == 0:
        return values.copy()
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise ValueError("library sizes should be finite and non-negative")
    if not log:
        return values / sizes * 1e6
    if not np.isfinite(prior_count) or prior_count < 0:
        raise ValueError("prior counts must be finite non-negative values")
    prior = prior_count * sizes / sizes.mean()
    adjusted_size = np.log(sizes + 2 * prior)
    result = values + prior
    with np.errstate(invalid="ignore", divide="ignore"):
        np.log(result, out=result)
    result -= adjusted_size
    result += np.log(1e6)
    result /= np.log(2)
    return result


def samples_reaching_cpm(
    counts: npt.ArrayLike, lib_size: npt.ArrayLike, threshold: float
) -> npt.NDArray[np.int64]:
    """Per gene, the number of samples whose CPM is at least ``threshold``.

    ``(cpm(counts, lib_size) >= threshold).sum(axis=1)``, computed in blocks of genes so
    that no full CPM matrix is built (the same numbers: CPM is elementwise).
    """
    values = np.asarray(counts)
    sizes = np.asarray(lib_size, np.float64).ravel()
    reached = np.empty(values.shape[0], dtype=np.int64)
    for rows in cell_slices(values.shape[0], values.shape[1], _BLOCK_CELLS):
        reached[rows] = (cpm(values[rows], sizes) >= threshold).sum(axis=1)
    return reached


@dataclass(frozen=True)
class FilterDetails:
    """What ``filter_by_expr_details`` decided, for the filter report.

    Attributes
    ----------
    keep
        One boolean per gene.
    cutoff_cpm
        The CPM a sample needs, ``min_count / median(lib_size) · 1e6``.
    min_sample_size
        How many samples must reach it (after the large-n adjustment).
    """

    keep: npt.NDArray[np.bool_]
    cutoff_cpm: float
    min_sample_size: float


def _hat_max(design: FloatArray) -> float:
    """``max(stats::hat(design))``: the largest leverage in the span of ``[1, design]``."""
    with_intercept = np.column_stack([np.ones(design.shape[0]), design])
    left, singular, _ = np.linalg.svd(with_intercept, full_matrices=False)
    # A design that already has an intercept repeats it: only the column span counts,
    # as with the rank R's qr(tol = 1e-7) finds.
    span = left[:, singular > 1e-7 * singular.max()]
    return float((span**2).sum(axis=1).max())


def filter_by_expr_details(
    counts: npt.ArrayLike,
    *,
    group: npt.ArrayLike | None = None,
    design: npt.ArrayLike | None = None,
    lib_size: npt.ArrayLike | None = None,
    min_count: float = 10,
    min_total_count: float = 15,
    large_n: float = 10,
    min_prop: float = 0.7,
) -> FilterDetails:
    """Which genes are expressed enough to keep, ``edgeR::filterByExpr`` (3.40).

    Parameters
    ----------
    counts
        Genes × samples raw counts.
    group
        Group of each sample; the smallest non-empty group sets the minimum sample size.
    design
        Design matrix used instead of ``group``: the minimum sample size is
        ``1 / max(hat(design))``. With neither, all samples form one group.
    lib_size
        Library sizes; default the column sums (effective sizes for a DGEList).
    min_count, min_total_count, large_n, min_prop
        edgeR's defaults 10, 15, 10 and 0.7.

    Returns
    -------
    FilterDetails
        The keep mask and the thresholds used.
    """
    values = np.asarray(counts, dtype=np.float64)
    sizes = values.sum(axis=0) if lib_size is None else np.asarray(lib_size, np.float64).ravel()
    if group is not None:
        group_sizes = pd.Series(np.asarray(group)).value_counts()
        min_sample_size = float(group_sizes[group_sizes > 0].min())
    elif design is not None:
        min_sample_size = 1 / _hat_max(np.asarray(design, dtype=np.float64))
    else:
        min_sample_size = float(values.shape[1])
    if min_sample_size > large_n:
        min_sample_size = large_n + (min_sample_size - large_n) * min_prop
    cutoff = min_count / float(np.median(sizes)) * 1e6
    expressed = samples_reaching_cpm(values, sizes, cutoff) >= min_sample_size - 1e-14
    enough_total = values.sum(axis=1) >= min_total_count - 1e-14
    return FilterDetails(expressed & enough_total, cutoff, min_sample_size)


def filter_by_expr(counts: npt.ArrayLike, **options: object) -> npt.NDArray[np.bool_]:
    """The keep mask of :func:`filter_by_expr_details` (``edgeR::filterByExpr``)."""
    return filter_by_expr_details(counts, **options).keep  # type: ignore[arg-type]
