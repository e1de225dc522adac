"""DESeq2's median-of-ratios size factors (``estimateSizeFactorsForMatrix``, DESeq2 1.38).

The ``ratio`` type takes its log geometric means from PyDESeq2 (``deseq2_norm_fit``),
which agrees with DESeq2 (``docs/methods.md`` §3), and the median of log
ratios of ``deseq2_norm_transform`` without the normalized counts that function also
computes; both run in blocks so that a consortium-sized matrix is never copied whole.
``poscounts`` is ours: PyDESeq2 keeps only genes whose positive-count geometric mean
exceeds 1, whereas DESeq2 drops only all-zero genes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydeseq2.preprocessing import deseq2_norm_fit

from cohortnorm.blocks import BLOCK_CELLS, cell_slices

SizeFactorType = Literal["ratio", "poscounts"]
SIZE_FACTOR_TYPES: tuple[str, ...] = ("ratio", "poscounts")

FloatArray = npt.NDArray[np.float64]


def _log_geometric_means(values: FloatArray, type: SizeFactorType) -> FloatArray:
    n_genes, n_samples = values.shape
    log_means = np.empty(n_genes)
    for block in cell_slices(n_genes, n_samples, BLOCK_CELLS):
        if type == "ratio":
            log_means[block] = deseq2_norm_fit(values[block].T)[0]
        else:
            # DESeq2's geoMeanNZ: exp(sum(log(x[x > 0])) / n), 0 for an all-zero gene.
            with np.errstate(divide="ignore"):
                logs = np.log(values[block])
            logs[~np.isfinite(logs)] = 0.0
            log_means[block] = logs.sum(axis=1) / n_samples
            log_means[block][~(values[block] > 0).any(axis=1)] = -np.inf
    return log_means


def size_factors(
    counts: npt.ArrayLike,
    type: SizeFactorType = "ratio",
    *,
    control_genes: npt.ArrayLike | None = None,
) -> FloatArray:
    """Median-of-ratios size factors, ``DESeq2::estimateSizeFactors`` (1.38).

    Parameters
    ----------
    counts
        Genes × samples raw counts.
    type
        ``"ratio"`` (DESeq2's default) uses genes with no zero in any sample.
        ``"poscounts"`` uses the geometric mean of the positive counts, so genes with
        zeros count too; the factors are re-centred to a geometric mean of 1 as on
        DESeq2's ``DESeqDataSet`` path (``estimateSizeFactors(dds, type="poscounts")``).
    control_genes
        Optional boolean mask or indices of the genes whose ratios form the medians
        (DESeq2's ``controlGenes``).

    Returns
    -------
    numpy.ndarray
        One size factor per sample.

    Raises
    ------
    ValueError
        When a sample has no reads (its factor would be NaN), and with ``type="ratio"``,
        when every gene contains a zero (DESeq2's
        "every gene contains at least one zero, cannot compute log geometric means").
    """
    values = np.asarray(counts, dtype=np.float64)
    if type not in SIZE_FACTOR_TYPES:
        raise ValueError(f"unknown size factor type {type!r}; use one of {SIZE_FACTOR_TYPES}")
    # min and max propagate NaN: two reductions check all three conditions.
    lowest, highest = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if np.isnan(lowest):
        raise ValueError("NA values are not allowed in the count matrix")
    if lowest < 0:
        raise ValueError("some values in assay are negative")
    if not highest > 0:
        raise ValueError("all samples have 0 counts for all genes. check the counting script.")
    # A sample without reads has no finite log ratio: its factor would be NaN (poscounts)
    # or every gene would be dropped (ratio, with DESeq2's misleading "every gene
    # contains at least one zero").
    empty = np.flatnonzero(~(values.max(axis=0) > 0)) if values.size else np.array([], int)
    if empty.size:
        raise ValueError(
            f"sample column(s) {', '.join(str(i + 1) for i in empty)} have no reads "
            "(all counts 0), so their size factors would be NaN"
        )
    log_means = _log_geometric_means(values, type)
    usable = np.isfinite(log_means)
    if control_genes is not None:
        chosen = np.zeros(values.shape[0], dtype=bool)
        chosen[np.asarray(control_genes)] = True
        usable &= chosen
    if type == "ratio" and not usable.any():
        raise ValueError(
            "every gene contains at least one zero, cannot compute log geometric means"
        )
    factors = median_ratio_factors(values, log_means, np.flatnonzero(usable), type)
    if type == "poscounts":
        factors = factors / np.exp(np.mean(np.log(factors)))
    return factors


def median_ratio_factors(
    values: FloatArray, log_means: FloatArray, rows: npt.NDArray[np.intp], type: SizeFactorType
) -> FloatArray:
    """Each sample's median ratio to the geometric means over the genes ``rows``.

    The second half of :func:`size_factors`, before poscounts' re-centring: one median
    per sample, so a shard of samples given the cohort's ``log_means`` gets exactly its
    factors (``cohortnorm.sharded``).
    """
    factors = np.empty(values.shape[1])
    for block in cell_slices(values.shape[1], rows.size, BLOCK_CELLS):
        # One sample per contiguous row, so that each median partitions contiguous data.
        part = np.ascontiguousarray(values[rows, block].T)
        with np.errstate(divide="ignore"):
            log_ratios = np.log(part, out=part)
        log_ratios -= log_means[rows]
        if type == "ratio":
            # PyDESeq2's deseq2_norm_transform, without the normalized counts it also
            # returns: exp(median(log c_j - log geometric mean)) over the usable genes.
            factors[block] = np.exp(np.median(log_ratios, axis=1))
        else:
            # A zero count has no log ratio: DESeq2 takes the median over c_j > 0 only.
            log_ratios[~np.isfinite(log_ratios)] = np.nan
            factors[block] = np.exp(np.nanmedian(log_ratios, axis=1))
    return factors


def norm_transform(
    counts: npt.ArrayLike, size_factors: npt.ArrayLike, pc: float = 1.0
) -> FloatArray:
    """``log2(counts / size_factor + pc)``, ``DESeq2::normTransform(dds, f = log2, pc = 1)``.

    The shifted log of DESeq2's normalized counts (``counts(dds, normalized = TRUE)``):
    the baseline the DESeq2 vignette compares its variance-stabilizing transforms with
    (``docs/methods.md`` §3). For plots and clustering, not for testing.

    Parameters
    ----------
    counts
        Genes × samples counts.
    size_factors
        One DESeq2 size factor per sample (normalization/size_factors.tsv ``size_factor``).
    pc
        The pseudocount added before the log.

    Returns
    -------
    numpy.ndarray
        Genes × samples, log2 scale.
    """
    values = np.asarray(counts, dtype=np.float64)
    factors = np.asarray(size_factors, dtype=np.float64)
    if factors.shape != (values.shape[1],) or not np.all(np.isfinite(factors) & (factors > 0)):
        raise ValueError("one positive, finite size factor per sample is needed")
    return np.log2(values / factors + pc)
