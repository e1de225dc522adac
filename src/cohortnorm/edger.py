"""edgeR's library-size normalization, expression filter and counts per million.

Reproduces edgeR 3.40 (``calcNormFactors``, ``filterByExpr``, ``cpm``) as described in
``docs/methods.md`` §1–2. Every function takes a genes × samples array of
counts and returns plain numpy arrays; nothing here reads files or knows about Snakemake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from cohortnorm.blocks import BLOCK_CELLS, CACHE_BLOCK_CELLS, cell_slices

#: The methods calc_norm_factors implements (tests/test_registry.py checks that the
#: registry's edgeR entries are exactly these).
NORM_METHODS: tuple[str, ...] = ("TMM", "TMMwsp", "RLE", "upperquartile", "none")

FloatArray = npt.NDArray[np.float64]


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


def require_reads(
    lib_size: npt.ArrayLike,
    sample_names: Sequence[str] | None = None,
    *,
    fix: str = "remove these samples, or check how their counts were made",
) -> None:
    """Refuse samples whose library size is 0 (or not a positive number).

    Every normalization factor and size factor of such a sample is 0/0: edgeR returns
    NaN (TMM, upper quartile, RLE), ``method="none"`` returns 1 but its CPM is still 0/0,
    and DESeq2's ratio and poscounts factors are NaN or undefined.

    Parameters
    ----------
    lib_size
        Library size of each sample.
    sample_names
        Names for the message; default ``column 1``, ``column 2``, ...
    fix
        What the message tells the user to do.

    Raises
    ------
    ValueError
        Naming every such sample.
    """
    sizes = np.asarray(lib_size, dtype=np.float64).ravel()
    empty = np.flatnonzero(~(sizes > 0))
    if empty.size == 0:
        return
    names = (
        [str(sample_names[i]) for i in empty]
        if sample_names is not None
        else [f"column {i + 1}" for i in empty]
    )
    raise ValueError(
        f"sample(s) {', '.join(names)} have no reads (library size 0), so their "
        f"normalization and size factors would be NaN: {fix}"
    )


def _column_order_statistics(
    values: FloatArray, k: int, row_divisor: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per column, the ``k``-th smallest value (0-based) and the next one up.

    What R's ``sort(x, partial = c(k, k + 1))`` gives ``quantile`` and ``median``: one
    selection per column on a transposed block of samples (contiguous rows), then a
    minimum over the values above it, several times faster than ``np.quantile`` along
    the strided gene axis. The second value equals the first when ``k`` is the last.
    With ``row_divisor`` (one value per row) the statistics are those of
    ``values / row_divisor[:, None]``, divided block by block instead of as a whole matrix.
    """
    n_rows, n_columns = values.shape
    kth = np.empty(n_columns)
    following = np.empty(n_columns)
    for block in cell_slices(n_columns, n_rows, BLOCK_CELLS):
        # A copy even when the transpose is already contiguous: the partition is in place.
        rows = np.array(values[:, block].T, order="C")
        if row_divisor is not None:
            rows /= row_divisor
        rows.partition(k, axis=1)
        kth[block] = rows[:, k]
        following[block] = rows[:, k + 1 :].min(axis=1) if k + 1 < n_rows else rows[:, k]
    return kth, following


def column_quantile(values: FloatArray, p: float) -> FloatArray:
    """R's ``quantile(x, p, type = 7)`` of each column.

    ``(1 - h)·x[lo] + h·x[hi]`` with ``lo, hi`` the order statistics around
    ``1 + (n - 1)·p``, written as R writes it (so the rounding is R's): the weight is
    ``index - floor(index)`` of the 1-based index, which for some ``p`` differs in the
    last bit from the same difference taken on the 0-based index.
    """
    index = 1 + (values.shape[0] - 1) * p
    low = int(np.floor(index))
    weight = index - low
    at_low, above = _column_order_statistics(values, low - 1)
    interpolate = (weight > 0) & (above != at_low)
    return np.where(interpolate, (1 - weight) * at_low + weight * above, at_low)


def column_median(values: FloatArray, row_divisor: FloatArray | None = None) -> FloatArray:
    """R's ``median`` of each column: the middle value, or the mean of the two middle ones.

    With ``row_divisor``, the medians of ``values / row_divisor[:, None]``.
    """
    n_rows = values.shape[0]
    at_low, above = _column_order_statistics(values, (n_rows - 1) // 2, row_divisor)
    return at_low if n_rows % 2 else (at_low + above) / 2


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
    return column_quantile(counts, p) / lib_size


def _tmm_reference_column(counts: FloatArray, lib_size: FloatArray, p: float) -> int:
    f75 = upper_quartile_factors(counts, lib_size, p)
    return tmm_reference(f75, lambda: sqrt_column_sums(counts))


def tmm_reference(f75: FloatArray, sqrt_sums: Callable[[], npt.NDArray[np.longdouble]]) -> int:
    """edgeR's TMM reference sample from every sample's raw upper-quartile factor.

    Shared by the in-memory and the sharded paths (``cohortnorm.sharded``), which
    gather ``f75`` (and, only when needed, the square-root sums) from their shards.

    Parameters
    ----------
    f75
        :func:`upper_quartile_factors` of every sample (all-zero genes removed).
    sqrt_sums
        Gives :func:`sqrt_column_sums` of every sample; called only when the upper
        quartiles are useless.
    """
    # Since edgeR 3.31.5: when most counts are zero the upper quartiles are useless, so
    # the sample with the largest sum of square-root counts serves as reference.
    if np.median(f75) < 1e-20:
        return int(np.argmax(sqrt_sums().astype(np.float64)))
    # The reference is the sample nearest the mean: a comparison, so the mean is R's.
    return int(np.argmin(np.abs(f75 - r_mean(f75))))


def r_mean(values: FloatArray) -> float:
    """R's ``mean`` of a numeric vector, rounding included.

    R sums in long double, divides by ``n``, then adds the mean of the residuals
    (also summed in long double) before rounding to double. A plain float64 mean can
    differ in the last bit, which matters where the mean decides something, such as
    TMM's choice of reference sample.
    """
    x = np.asarray(values, dtype=np.longdouble).ravel()
    n = x.size
    total = np.longdouble(0)
    for value in x:  # R adds in order; only used on one value per sample
        total += value
    mean = total / n
    if np.isfinite(mean):
        residual = np.longdouble(0)
        for value in x:
            residual += value - mean
        mean += residual / n
    return float(mean)


def _largest_sqrt_sum_column(counts: FloatArray) -> int:
    """``which.max(colSums(sqrt(x)))``: the sums in long double, as R's ``colSums``.

    These sums decide the reference sample of TMMwsp (and of TMM on sparse data), so
    they carry R's extra precision rather than float64 rounding.
    """
    return int(np.argmax(sqrt_column_sums(counts).astype(np.float64)))


def sqrt_column_sums(counts: FloatArray) -> npt.NDArray[np.longdouble]:
    """``colSums(sqrt(x))`` in long double, each column summed gene by gene in order.

    The sum of a column does not depend on the other columns (nor on the row blocks),
    so a shard of samples gives exactly its columns' sums.
    """
    sums = np.zeros(counts.shape[1], dtype=np.longdouble)
    for rows in cell_slices(counts.shape[0], counts.shape[1], CACHE_BLOCK_CELLS):
        sums += np.sqrt(counts[rows]).sum(axis=0, dtype=np.longdouble)
    return sums


def _trim_window(ordered: FloatArray, low: int, high: int) -> tuple[float, float]:
    """The values whose average rank (R's ``rank``) lies in [low, high], as [lowest, highest].

    ``ordered`` is sorted. The average rank is non-decreasing in the value, so the window
    of ranks is a window of values: only the tie groups at positions ``low`` and ``high``
    need their average rank, and two binary searches give each one's extent.
    """
    n = ordered.size
    at_low = ordered[low - 1]
    first = int(np.searchsorted(ordered, at_low, "left"))
    end = int(np.searchsorted(ordered, at_low, "right"))
    if (first + end + 1) / 2 >= low:
        lowest = float(at_low)
    else:  # the tie group straddling ``low`` ranks below it: the window starts after it
        lowest = float(ordered[end]) if end < n else np.inf
    at_high = ordered[high - 1]
    first = int(np.searchsorted(ordered, at_high, "left"))
    end = int(np.searchsorted(ordered, at_high, "right"))
    if (first + end + 1) / 2 <= high:
        highest = float(at_high)
    else:
        highest = float(ordered[first - 1]) if first > 0 else -np.inf
    return lowest, highest


def _tmm_log_factor(
    obs: FloatArray,
    n_obs: float,
    ref_share: FloatArray,
    log_ref: FloatArray,
    var_ref: FloatArray,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
    workspace: tuple[FloatArray, FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
) -> float:
    """log2 of edgeR's ``.calcFactorTMM`` for one sample ``obs`` against the reference.

    One sample's genes (a contiguous row) stay in cache through every step, which is
    what makes a loop over samples faster than whole-matrix passes here; ``workspace``
    holds two float and two boolean rows reused from sample to sample. The arithmetic
    follows edgeR's expressions operation by operation, so ties (which decide the
    trimming) are the same as in R.
    """
    log_ratio, abs_expr, usable, above = workspace
    obs_share = np.divide(obs, n_obs, out=log_ratio)
    np.log2(obs_share, out=abs_expr)
    abs_expr += log_ref
    abs_expr /= 2
    obs_share /= ref_share
    np.log2(obs_share, out=log_ratio)
    np.isfinite(log_ratio, out=usable)
    usable &= np.isfinite(abs_expr, out=above)
    usable &= np.greater(abs_expr, a_cutoff, out=above)
    ratio_used = log_ratio[usable]
    n = ratio_used.size
    # edgeR returns exactly 1 when the two samples are (nearly) identical, which
    # includes the reference itself.
    if n == 0 or max(ratio_used.max(), -ratio_used.min()) < 1e-6:
        return 0.0
    expr_used = abs_expr[usable]
    lo_l = int(n * logratio_trim) + 1
    lo_s = int(n * sum_trim) + 1
    ratio_low, ratio_high = _trim_window(np.sort(ratio_used), lo_l, n + 1 - lo_l)
    expr_low, expr_high = _trim_window(np.sort(expr_used), lo_s, n + 1 - lo_s)
    keep = (ratio_used >= ratio_low) & (ratio_used <= ratio_high)
    keep &= (expr_used >= expr_low) & (expr_used <= expr_high)
    kept = np.flatnonzero(usable)[keep]
    if kept.size == 0:
        return 0.0
    if do_weighting:
        # sum(logR/v, na.rm=TRUE) / sum(1/v, na.rm=TRUE), v the delta-method variance.
        obs_kept = obs.take(kept)
        variance = (n_obs - obs_kept) / n_obs / obs_kept
        variance += var_ref.take(kept)
        log_factor = float(np.nansum(log_ratio.take(kept) / variance) / np.nansum(1 / variance))
    else:
        log_factor = float(np.mean(log_ratio.take(kept)))
    return 0.0 if np.isnan(log_factor) else log_factor


def _contiguous_samples(counts: FloatArray) -> Iterator[tuple[int, FloatArray]]:
    """Each sample's index and genes as a contiguous row, one transposed block at a time.

    TMM and TMMwsp work one sample at a time; a strided column would miss the cache on
    every gene, a transposed block of about :data:`~cohortnorm.blocks.BLOCK_CELLS` cells
    does not.
    """
    n_genes, n_samples = counts.shape
    for block in cell_slices(n_samples, n_genes, BLOCK_CELLS):
        samples = np.ascontiguousarray(counts[:, block].T)
        for offset, obs in enumerate(samples):
            yield block.start + offset, obs


def _tmm_factors(
    counts: FloatArray,
    lib_size: FloatArray,
    ref: int,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> FloatArray:
    """edgeR's ``.calcFactorTMM`` for every sample against column ``ref``."""
    return tmm_factors_against(
        counts,
        lib_size,
        counts[:, ref],
        float(lib_size[ref]),
        logratio_trim,
        sum_trim,
        do_weighting,
        a_cutoff,
    )


def tmm_factors_against(
    counts: FloatArray,
    lib_size: FloatArray,
    ref_counts: FloatArray,
    n_ref: float,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
) -> FloatArray:
    """edgeR's ``.calcFactorTMM`` of every column against the reference ``ref_counts``.

    Each factor depends only on its sample and the reference (library size ``n_ref``),
    so a shard of samples given the reference column gets exactly its factors, not yet
    rescaled (:func:`rescale_factors`).
    """
    n_genes, n_samples = counts.shape
    log_factors = np.zeros(n_samples)
    ref_counts = np.ascontiguousarray(ref_counts, dtype=np.float64)
    workspace = (
        np.empty(n_genes),
        np.empty(n_genes),
        np.empty(n_genes, dtype=bool),
        np.empty(n_genes, dtype=bool),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_share = ref_counts / n_ref
        log_ref = np.log2(ref_share)
        var_ref = (n_ref - ref_counts) / n_ref / ref_counts
        for j, obs in _contiguous_samples(counts):
            log_factors[j] = _tmm_log_factor(
                obs,
                float(lib_size[j]),
                ref_share,
                log_ref,
                var_ref,
                logratio_trim,
                sum_trim,
                do_weighting,
                a_cutoff,
                workspace,
            )
    return 2**log_factors


def _order_window(
    values: FloatArray, low: int, high: int, tiebreak: FloatArray | None = None
) -> npt.NDArray[np.bool_]:
    """Whether each value's position in R's ``order(values, tiebreak)`` is in [low, high].

    1-based positions; ``order`` is stable, so ties left after ``tiebreak`` go by index.
    Only the tie groups at the two boundary positions need ordering: every other value
    is inside or outside by comparison with the boundary values, which one (vectorized)
    sort finds. This replaces an argsort of every value (or a lexsort on two keys).
    """
    ordered = np.sort(values)
    at_low, at_high = ordered[low - 1], ordered[high - 1]
    keep = (values > at_low) & (values < at_high)
    for boundary in {float(at_low), float(at_high)}:
        members = np.flatnonzero(values == boundary)  # in index order
        if tiebreak is not None:
            members = members[np.argsort(tiebreak[members], kind="stable")]
        first = int(np.searchsorted(ordered, boundary, "left")) + 1
        position = first + np.arange(members.size)
        keep[members] = (position >= low) & (position <= high)
    return keep


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
    obs_single = np.sort(obs[single])[::-1][:n_pairs]
    ref_single = np.sort(ref[single])[::-1][:n_pairs]
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
    lo_m = int(n * logratio_trim) + 1
    lo_a = int(n * sum_trim) + 1
    keep = _order_window(m_values, lo_m, n + 1 - lo_m, m_shrunk)
    keep &= _order_window(a_values, lo_a, n + 1 - lo_a)
    m_kept = m_values[keep]
    if do_weighting:
        obs_k, ref_k = obs_p[keep], ref_p[keep]
        variance = (1 - obs_k) / obs_k / n_obs + (1 - ref_k) / ref_k / n_ref
        weight = (1 + 1e-6) / (variance + 1e-6)
        return float(2 ** (np.sum(weight * m_kept) / np.sum(weight)))
    return float(2 ** np.mean(m_kept))


def _tmmwsp_factors(
    counts: FloatArray,
    lib_size: FloatArray,
    ref: int,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
) -> FloatArray:
    """``_tmmwsp_factor`` for every sample, each a contiguous row."""
    return tmmwsp_factors_against(
        counts,
        lib_size,
        counts[:, ref],
        float(lib_size[ref]),
        logratio_trim,
        sum_trim,
        do_weighting,
    )


def tmmwsp_factors_against(
    counts: FloatArray,
    lib_size: FloatArray,
    ref_counts: FloatArray,
    n_ref: float,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
) -> FloatArray:
    """edgeR's ``.calcFactorTMMwsp`` of every column against ``ref_counts``, unscaled.

    As :func:`tmm_factors_against`: one sample and the reference decide each factor.
    """
    factors = np.ones(counts.shape[1])
    ref_counts = np.ascontiguousarray(ref_counts, dtype=np.float64)
    for j, obs in _contiguous_samples(counts):
        factors[j] = _tmmwsp_factor(
            obs,
            ref_counts,
            float(lib_size[j]),
            n_ref,
            logratio_trim,
            sum_trim,
            do_weighting,
        )
    return factors


def calc_norm_factors(
    counts: npt.ArrayLike,
    method: str = "TMM",
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
        ``"none"`` (:data:`NORM_METHODS`; the workflow's list is
        :data:`cohortnorm.registry.NORMALIZERS`).
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
        On NaN counts, a trim fraction outside [0, 0.5), and where edgeR would return
        Inf or NA factors: a library size of 0 (for every method, ``"none"`` included,
        since the CPM would be 0/0; see :func:`require_reads`), a zero upper quartile,
        or RLE without a gene expressed in every sample.
    """
    values = _as_counts(counts)
    sizes = _library_sizes(values, lib_size)
    if method not in NORM_METHODS:
        raise ValueError(f"unknown normalization method {method!r}; use one of {NORM_METHODS}")
    if not (0 <= logratio_trim < 0.5 and 0 <= sum_trim < 0.5):
        # edgeR does not check; from 0.5 up its windows are empty or run backwards.
        raise ValueError(
            f"logratio_trim={logratio_trim} and sum_trim={sum_trim}: each is the fraction "
            "trimmed from both ends, so it must lie in [0, 0.5)"
        )
    require_reads(sizes)
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
            geo_mean = np.empty(values.shape[0])
            for rows in cell_slices(values.shape[0], n_samples, CACHE_BLOCK_CELLS):
                geo_mean[rows] = np.exp(np.log(values[rows]).mean(axis=1))
            usable = geo_mean > 0
            # The median of ratios (not of log ratios): with an even number of genes
            # edgeR averages the two middle ratios arithmetically.
            if not usable.any():
                # edgeR returns NA factors here; a number downstream would be meaningless.
                raise ValueError(
                    "RLE needs at least one gene with a positive count in every sample; "
                    "use TMM or TMMwsp for sparse data"
                )
            if not usable.all():
                values, geo_mean = values[usable], geo_mean[usable]
            factors = column_median(values, row_divisor=geo_mean) / sizes
        elif method == "TMM":
            ref = _tmm_reference_column(values, sizes, p) if ref_column is None else ref_column
            factors = _tmm_factors(
                values, sizes, ref, logratio_trim, sum_trim, do_weighting, a_cutoff
            )
        else:
            ref = _largest_sqrt_sum_column(values) if ref_column is None else ref_column
            factors = _tmmwsp_factors(values, sizes, ref, logratio_trim, sum_trim, do_weighting)
        return rescale_factors(factors)


def rescale_factors(factors: FloatArray) -> FloatArray:
    """edgeR's last step: divide by the geometric mean, so the factors multiply to 1."""
    return factors / np.exp(np.mean(np.log(factors)))


def cpm(
    counts: npt.ArrayLike,
    lib_size: npt.ArrayLike | None = None,
    *,
    log: bool = False,
    prior_count: float = 2.0,
    mean_lib_size: float | None = None,
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
    mean_lib_size
        The mean of the whole cohort's library sizes, for a shard of its samples
        (``cohortnorm.sharded``); default the mean of ``lib_size``.

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
        # edgeR's C++ (calculate_cpm_raw) multiplies each count by 1e6 / lib.size.
        # ``count / lib.size * 1e6`` rounds differently in the last bit, which flips
        # filterByExpr's ``CPM >= cutoff`` for counts exactly at the cutoff.
        return values * (1e6 / sizes)
    if not np.isfinite(prior_count) or prior_count < 0:
        raise ValueError("prior counts must be finite non-negative values")
    prior = prior_count * sizes / (sizes.mean() if mean_lib_size is None else mean_lib_size)
    adjusted_size = np.log(sizes + 2 * prior)
    result = np.empty(values.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        for rows in cell_slices(values.shape[0], values.shape[1], CACHE_BLOCK_CELLS):
            part = np.add(values[rows], prior, out=result[rows])
            np.log(part, out=part)
            part -= adjusted_size
            part += np.log(1e6)
            part /= np.log(2)
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
    for rows in cell_slices(values.shape[0], values.shape[1], BLOCK_CELLS):
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
    min_sample_size = filter_min_sample_size(
        values.shape[1], group=group, design=design, large_n=large_n, min_prop=min_prop
    )
    cutoff = filter_cutoff_cpm(sizes, min_count)
    # R's rowSums/colSums add in long double; on whole counts (all the workflow passes,
    # below 2**53) float64 sums are exact too, so the comparisons are R's. Long double
    # sums would cost most of this function's time for nothing on such counts.
    keep = filter_keep(
        samples_reaching_cpm(values, sizes, cutoff),
        values.sum(axis=1),
        min_sample_size,
        min_total_count,
    )
    return FilterDetails(keep, cutoff, min_sample_size)


def filter_min_sample_size(
    n_samples: int,
    *,
    group: npt.ArrayLike | None = None,
    design: npt.ArrayLike | None = None,
    large_n: float = 10,
    min_prop: float = 0.7,
) -> float:
    """filterByExpr's ``MinSampleSize``: smallest group, ``1/max(hat)``, or all samples,
    then the large-n adjustment. Shared by the in-memory and sharded paths."""
    if group is not None:
        group_sizes = pd.Series(np.asarray(group)).value_counts()
        min_sample_size = float(group_sizes[group_sizes > 0].min())
    elif design is not None:
        min_sample_size = 1 / _hat_max(np.asarray(design, dtype=np.float64))
    else:
        min_sample_size = float(n_samples)
    if min_sample_size > large_n:
        min_sample_size = large_n + (min_sample_size - large_n) * min_prop
    return min_sample_size


def filter_cutoff_cpm(lib_size: FloatArray, min_count: float = 10) -> float:
    """filterByExpr's CPM cutoff, ``min.count / median(lib.size) · 1e6``."""
    return min_count / float(np.median(lib_size)) * 1e6


def filter_keep(
    reached: npt.NDArray[np.int64],
    totals: FloatArray,
    min_sample_size: float,
    min_total_count: float = 15,
) -> npt.NDArray[np.bool_]:
    """filterByExpr's decision from per-gene sample counts at the cutoff and totals."""
    return (reached >= min_sample_size - 1e-14) & (totals >= min_total_count - 1e-14)


def filter_by_expr(counts: npt.ArrayLike, **options: object) -> npt.NDArray[np.bool_]:
    """The keep mask of :func:`filter_by_expr_details` (``edgeR::filterByExpr``)."""
    return filter_by_expr_details(counts, **options).keep  # type: ignore[arg-type]
