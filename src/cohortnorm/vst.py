"""DESeq2's variance-stabilising transformation: ``varianceStabilizingTransformation`` and
``vst`` (DESeq2 1.38.3), from the algorithm.

Both estimate the dispersion trend (:mod:`cohortnorm.deseq2_dispersion`) and apply the
closed form of ``getVarianceStabilizedData`` to the normalised counts ``K/s``:

* parametric trend ``α(μ) = a0 + a1/μ``:
  ``log2[(1 + a1 + 2·a0·q + 2·√(a0·q·(1 + a1 + a0·q))) / (4·a0)]``;
* mean trend ``α``: ``(2·asinh(√(α·q)) − log α − log 4)/log 2``.

``vst`` fits the trend on ``nsub`` genes only: those with mean normalised count > 5,
ordered by that mean, taken at ``round(seq(1, n, length = nsub))``. Every gene is
transformed, all-zero genes included, so the output has no NaN.

Size factors, when not given, are DESeq2's ``estimateSizeFactors`` (ratio) computed with
R's rounding (:func:`deseq2_ratio_size_factors`): the dispersion line search is sensitive
to the last bit of the means. On the reference datasets (DESeq2 1.38.3) every VST value
agrees to ≤ 1.3e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from cohortnorm.blocks import BLOCK_CELLS
from cohortnorm.deseq2_dispersion import (
    DispersionTrend,
    _check_counts,
    base_means,
    estimate_dispersions_fit,
    estimate_dispersions_gene_est,
)
from cohortnorm.errors import InputError

FloatArray = NDArray[np.float64]

__all__ = [
    "deseq2_ratio_size_factors",
    "transform",
    "variance_stabilizing_transformation",
    "vst",
    "vst_subset",
    "vst_trend",
]


_LOG_TABLE_SIZE = 1 << 16
_LOG_TABLE: FloatArray | None = None


def _libm_log_counts(values: FloatArray) -> FloatArray:
    """``log`` of whole-number counts as the C library computes it (R's ``log``).

    numpy's vectorised log differs from the C library in the last bit for a few
    arguments; counts are integers, so small ones are looked up in a table built with
    ``math.log`` and only large ones go through numpy.
    """
    global _LOG_TABLE
    if _LOG_TABLE is None:
        table = np.empty(_LOG_TABLE_SIZE)
        table[0] = -np.inf
        table[1:] = [math.log(v) for v in range(1, _LOG_TABLE_SIZE)]
        _LOG_TABLE = table
    out = np.empty_like(values)
    rows = max(1, BLOCK_CELLS // max(1, values.shape[1]))
    for start in range(0, values.shape[0], rows):
        block = values[start : start + rows]
        # One gather from the table for every cell, then numpy's log for the few counts
        # beyond it: boolean masks over every cell took 1.3 s of the 60,000 × 1,000 VST.
        index = block.astype(np.intp)
        np.minimum(index, _LOG_TABLE_SIZE - 1, out=index)
        part = np.take(_LOG_TABLE, index)
        large = block >= _LOG_TABLE_SIZE
        if large.any():
            part[large] = np.log(block[large])
        out[start : start + rows] = part
    return out


def deseq2_ratio_size_factors(counts: ArrayLike) -> FloatArray:
    """DESeq2's ``estimateSizeFactorsForMatrix`` (ratio), rounded as R rounds it.

    ``exp(median over genes without zeros of log K − rowMeans(log K))``: the row means are
    accumulated in long double as R's ``rowMeans`` does, and ``log``/``exp`` are the C
    library's, so that the factors are DESeq2's to the last bit (the dispersion line
    search can stop one step apart on a borderline gene when the means differ by one
    unit in the last place).
    """
    y = np.asarray(counts, dtype=np.float64)
    logs = _libm_log_counts(y)
    # A gene with a zero has log geometric mean -inf and takes no part. Its row is left
    # out before the long-double sum: x87 arithmetic on -inf is microcoded, and summing
    # those rows took 3.9 of the 4.2 s of this sum at 60,000 × 1,000.
    usable = ~(y == 0).any(axis=1)
    if not usable.any():
        raise InputError(
            "DESeq2's size factors cannot be computed: every gene contains at least one "
            "zero. Filter out lowly expressed genes first, or supply size factors"
        )
    kept = logs[usable]
    del logs
    kept = np.asfortranarray(kept) if y.flags.f_contiguous else kept
    log_geo = (kept.sum(axis=1, dtype=np.longdouble) / y.shape[1]).astype(np.float64)
    # One sample per contiguous row, so that each median reads contiguous memory.
    ratios = np.ascontiguousarray((kept - log_geo[:, None]).T)
    del kept
    factors = np.empty(y.shape[1])
    for j in range(y.shape[1]):
        column = ratios[j]
        factors[j] = math.exp(float(np.median(column[np.isfinite(column)])))
    return factors


def _prepare(counts: ArrayLike, size_factors: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
    y = _check_counts(counts)
    if not (y > 0).any():
        raise InputError(
            "every count is zero: there is nothing to transform. Check the counts file "
            "and the gene filter"
        )
    if size_factors is None:
        sf = deseq2_ratio_size_factors(y)
    else:
        sf = np.asarray(size_factors, dtype=np.float64).reshape(-1)
        if sf.shape[0] != y.shape[1] or not np.all(np.isfinite(sf)) or np.any(sf <= 0):
            raise InputError(
                f"size factors must be {y.shape[1]} positive finite numbers, one per sample"
            )
    return y, sf


def transform(normalized: ArrayLike, trend: DispersionTrend) -> FloatArray:
    """The closed-form VST of ``getVarianceStabilizedData`` for a fitted trend.

    Parameters
    ----------
    normalized
        Genes × samples normalised counts ``K/s``.
    trend
        A parametric or mean trend.
    """
    q = np.asarray(normalized, dtype=np.float64)
    if trend.fit_type == "parametric":
        a0, a1 = trend.asympt_disp, trend.extra_pois
        # 1 + a1 + 2·a0·q + 2·sqrt(a0·q·(1 + a1 + a0·q)), the same operations in the same
        # order as the one-line formula (the same bits), in place: three temporaries
        # instead of nine, about half the time of this transform.
        aq = a0 * q
        root = (1.0 + a1) + aq
        root *= aq
        np.sqrt(root, out=root)
        root *= 2.0
        inner = (2.0 * a0) * q
        inner += 1.0 + a1
        inner += root
        inner /= 4.0 * a0
        np.log(inner, out=inner)
        inner /= math.log(2)
        return inner
    if trend.fit_type == "mean":
        alpha = trend.mean_disp
        return (2.0 * np.arcsinh(np.sqrt(alpha * q)) - math.log(alpha) - math.log(4)) / math.log(2)
    raise InputError(f"fit_type {trend.fit_type!r} has no closed-form VST; use parametric or mean")


def _transform_counts(counts: FloatArray, sf: FloatArray, trend: DispersionTrend) -> FloatArray:
    """``transform(counts/sf)`` in blocks of rows, so a cohort-sized matrix is never
    copied more than once."""
    out = np.empty(counts.shape)
    rows = max(1, BLOCK_CELLS // max(1, counts.shape[1]))
    for start in range(0, counts.shape[0], rows):
        block = slice(start, start + rows)
        out[block] = transform(counts[block] / sf, trend)
    return out


def _wrap(result: FloatArray, counts: ArrayLike) -> FloatArray | pd.DataFrame:
    if isinstance(counts, pd.DataFrame):
        return pd.DataFrame(result, index=counts.index, columns=counts.columns)
    return result


def _design_for(blind: bool, design: ArrayLike | None) -> ArrayLike | None:
    # blind=TRUE sets the design to ~1 whatever the object's design was.
    return None if blind else design


def variance_stabilizing_transformation(
    counts: ArrayLike,
    size_factors: ArrayLike | None = None,
    design: ArrayLike | None = None,
    blind: bool = True,
    fit_type: str = "parametric",
) -> FloatArray | pd.DataFrame:
    """``DESeq2::varianceStabilizingTransformation`` (1.38.3) on a count matrix.

    Parameters
    ----------
    counts
        Genes × samples raw counts (a DataFrame keeps its labels in the result).
    size_factors
        One per sample; ``None`` estimates them as ``estimateSizeFactors`` does (ratio).
    design
        Samples × coefficients model matrix used when ``blind=False`` (``None``: ``~1``).
    blind
        ``True`` (DESeq2's default) estimates the dispersions with design ``~1``.
    fit_type
        ``"parametric"`` (default) or ``"mean"``; ``"local"`` is refused.

    Returns
    -------
    numpy.ndarray or pandas.DataFrame
        Genes × samples VST values (log2 scale), finite everywhere.

    Raises
    ------
    InputError
        Fewer than 2 samples, bad counts, a design without residual degrees of freedom,
        ``fit_type="local"``, or a parametric fit that fails.
    """
    y, sf = _prepare(counts, size_factors)
    genes = estimate_dispersions_gene_est(y, sf, _design_for(blind, design))
    trend = estimate_dispersions_fit(genes, fit_type)
    return _wrap(_transform_counts(y, sf, trend), counts)


def vst_subset(base_mean: ArrayLike, nsub: int) -> NDArray[np.intp]:
    """Row indices of the genes ``vst`` fits its trend on, in DESeq2's order.

    Genes with ``baseMean > 5``, sorted by ``baseMean`` (stable: ties keep input order),
    taken at positions ``round(seq(1, n, length = nsub))`` (R rounds halves to even).
    """
    bm = np.asarray(base_mean, dtype=np.float64)
    big = np.flatnonzero(bm > 5)
    order = big[np.argsort(bm[big], kind="stable")]
    n = order.size
    if nsub == 1:
        pos = np.array([1.0])
    else:
        inner = 1.0 + np.arange(1, nsub - 1) * ((n - 1.0) / (nsub - 1))
        pos = np.concatenate([[1.0], inner, [float(n)]])
    return order[np.round(pos).astype(np.intp) - 1]


def vst_trend(
    counts: ArrayLike,
    size_factors: ArrayLike | None = None,
    design: ArrayLike | None = None,
    blind: bool = True,
    nsub: int = 1000,
    fit_type: str = "parametric",
) -> tuple[DispersionTrend, NDArray[np.intp], FloatArray]:
    """The dispersion trend ``DESeq2::vst`` fits, with the gene subset and size factors.

    Parameters
    ----------
    counts, size_factors, design, blind, nsub, fit_type
        As for :func:`vst`.

    Returns
    -------
    trend : DispersionTrend
        Fitted on the ``nsub`` genes of :func:`vst_subset`.
    subset : numpy.ndarray
        Their row indices, in DESeq2's order.
    size_factors : numpy.ndarray
        The size factors used (given, or :func:`deseq2_ratio_size_factors`).

    Raises
    ------
    InputError
        As :func:`vst`.
    """
    if not isinstance(nsub, (int, np.integer)) or nsub < 1:
        raise InputError(f"nsub must be a positive whole number; got {nsub!r}")
    y, sf = _prepare(counts, size_factors)
    if y.shape[0] < nsub:
        raise InputError(
            f"vst with nsub={nsub} needs at least {nsub} genes, but there are "
            f"{y.shape[0]}. Use varianceStabilizingTransformation (the full VST, no gene "
            "subset) or a smaller nsub"
        )
    base_mean = base_means(y, sf)
    n5 = int(np.sum(base_mean > 5))
    if n5 < nsub:
        raise InputError(
            f"vst with nsub={nsub} needs at least {nsub} genes with mean normalised count "
            f"> 5, but only {n5} have. Use varianceStabilizingTransformation (the full "
            "VST, no gene subset) or a smaller nsub"
        )
    idx = vst_subset(base_mean, nsub)
    genes = estimate_dispersions_gene_est(y[idx], sf, _design_for(blind, design))
    trend = estimate_dispersions_fit(genes, fit_type)
    return trend, idx, sf


def vst(
    counts: ArrayLike,
    size_factors: ArrayLike | None = None,
    design: ArrayLike | None = None,
    blind: bool = True,
    nsub: int = 1000,
    fit_type: str = "parametric",
) -> FloatArray | pd.DataFrame:
    """``DESeq2::vst`` (1.38.3): the VST with the trend fitted on ``nsub`` genes.

    Parameters
    ----------
    counts, size_factors, design, blind, fit_type
        As for :func:`variance_stabilizing_transformation`.
    nsub
        Number of genes the trend is fitted on (DESeq2's default 1000).

    Returns
    -------
    numpy.ndarray or pandas.DataFrame
        Genes × samples VST values for every gene.

    Raises
    ------
    InputError
        Fewer than ``nsub`` genes, or fewer than ``nsub`` genes with mean normalised
        count > 5 (DESeq2: "less than 'nsub' rows"), plus the errors of
        :func:`variance_stabilizing_transformation`.
    """
    trend, _, sf = vst_trend(counts, size_factors, design, blind, nsub, fit_type)
    y = np.asarray(counts, dtype=np.float64)
    return _wrap(_transform_counts(y, sf, trend), counts)
