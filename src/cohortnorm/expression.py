"""Length-normalized expression for visualization: TPM and FPKM (docs/methods.md §4).

Neither is for differential-expression testing: TPM removes library size entirely and
both divide by a gene length that the counting model does not use. For quantifier input
the workflow reports the quantifier's own TPM (tximport's ``abundance``) and derives FPKM
from it (:func:`fpkm_from_tpm`) instead of recomputing either from rounded counts. Also
here: the per-sample divisors of ``normalized_counts`` (:func:`normalized_counts_factors`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from cohortnorm.blocks import BLOCK_CELLS, cell_slices

FloatArray = npt.NDArray[np.float64]
#: Output dtypes of :func:`tpm` and :func:`fpkm`. float32 is allowed here and nowhere
#: else: TPM/FPKM are for visualization only, where float32's relative rounding error
#: (at most 2**-24, about 6e-8) is invisible, whereas size factors, logCPM, normalized
#: counts and batch-corrected values each have a 1e-9 contract with R that float32 breaks.
OUTPUT_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(np.float64), np.dtype(np.float32))


def _output_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    resolved = np.dtype(dtype)
    if resolved not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be float64 or float32, not {resolved}")
    return resolved


def _checked_lengths(lengths: npt.ArrayLike, shape: tuple[int, int]) -> FloatArray:
    values = np.asarray(lengths, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[0] != shape[0] or values.shape[1] not in (1, shape[1]):
        raise ValueError(
            f"lengths of shape {values.shape} do not match counts of shape {shape}; give "
            "one length per gene or one per gene and sample"
        )
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        # R silently returns Inf, then NaN for the whole sample; we refuse instead.
        raise ValueError(
            f"{int(bad.any(axis=1).sum())} gene(s) have a missing, zero or negative length"
        )
    return values


def tpm(
    counts: npt.ArrayLike,
    lengths: npt.ArrayLike,
    *,
    overwrite: bool = False,
    dtype: npt.DTypeLike = np.float64,
) -> npt.NDArray[np.floating[Any]]:
    """Transcripts per million, ``1e6 · (c/len) / Σ(c/len)`` per sample.

    Parameters
    ----------
    counts
        Genes × samples counts (or estimated counts).
    lengths
        Gene lengths in bases: one per gene, or genes × samples (effective lengths
        from a quantifier, tximport's ``length`` matrix).
    overwrite
        Compute in the memory of ``counts`` when it is a writeable float64 array (the
        same numbers, without a second dense copy); ``counts`` then holds the TPM. With
        ``dtype=np.float32`` the float32 result fills the first half of that memory
        when ``counts`` is also Fortran-ordered (as :func:`~cohortnorm.io.tables.read_matrix`
        returns it), and ``counts`` is left meaningless; otherwise it is untouched.
    dtype
        ``np.float64`` (default) or ``np.float32``. float32 is allowed because TPM is
        for visualization only, where its relative error of about 1e-7 is invisible;
        size factors and logCPM stay float64, as float32 would break their 1e-9
        contract with R. The float32 result is computed in float64 one block of samples
        at a time and rounded once, so it is the float64 TPM rounded to float32, with no
        float64 copy of the whole matrix.

    Returns
    -------
    numpy.ndarray
        TPM of ``dtype``, each column summing to 1e6 (NaN for a sample with no counts).

    Raises
    ------
    ValueError
        When ``dtype`` is neither float64 nor float32, or a length is invalid.
    """
    out_dtype = _output_dtype(dtype)
    if out_dtype == np.float32:
        return _float32_by_samples(counts, lengths, _tpm_block, overwrite=overwrite)
    values = np.asarray(counts, dtype=np.float64)
    checked = _checked_lengths(lengths, values.shape)
    if overwrite and values.flags.writeable:
        rate = np.divide(values, checked, out=values)
    else:
        rate = values / checked
    with np.errstate(invalid="ignore", divide="ignore"):
        rate *= 1e6 / rate.sum(axis=0)
    return rate


def _float32_by_samples(
    counts: npt.ArrayLike,
    lengths: npt.ArrayLike,
    scaled: Callable[[FloatArray, FloatArray, slice], FloatArray],
    *,
    overwrite: bool = False,
) -> npt.NDArray[np.float32]:
    """Fill a float32 genes × samples array one float64 block of samples at a time.

    ``scaled(block counts, block lengths, samples)`` gives a block's values in float64;
    each is rounded once into the result. A block of whole columns holds each sample's
    sum, so one pass suffices and the sums are those of the float64 path. With
    ``overwrite`` and a writeable Fortran-ordered float64 ``counts``, the result lives
    in the first half of its memory: float32 column ``j`` is bytes ``[4nj, 4n(j+1))``,
    inside float64 columns up to ``j``, and each block is read whole before it is
    written, so nothing is overwritten unread.
    """
    values = np.asarray(counts)
    if values.ndim != 2:
        raise ValueError(f"counts must be genes × samples, not of shape {values.shape}")
    checked = _checked_lengths(lengths, values.shape)
    n_genes, n_samples = values.shape
    if (
        overwrite
        and values.dtype == np.float64
        and values.flags.writeable
        and values.flags.f_contiguous
    ):
        memory = values.reshape(-1, order="F").view(np.float32)
        result = memory[: values.size].reshape(values.shape, order="F")
    else:
        result = np.empty(values.shape, dtype=np.float32, order="F")
    per_sample = checked.shape[1] > 1
    for block in cell_slices(n_samples, n_genes, BLOCK_CELLS):
        part = np.asarray(values[:, block], dtype=np.float64)
        result[:, block] = scaled(part, checked[:, block] if per_sample else checked, block)
    return result


def _tpm_block(values: FloatArray, lengths: FloatArray, _: slice) -> FloatArray:
    rate = values / lengths
    with np.errstate(invalid="ignore", divide="ignore"):
        rate *= 1e6 / rate.sum(axis=0)
    return rate


def fpkm(
    counts: npt.ArrayLike,
    lengths: npt.ArrayLike,
    lib_size: npt.ArrayLike | None = None,
    *,
    dtype: npt.DTypeLike = np.float64,
) -> npt.NDArray[np.floating[Any]]:
    """Fragments per kilobase per million, ``edgeR::rpkm`` (``cpm / (len/1000)``).

    Parameters
    ----------
    counts
        Genes × samples counts.
    lengths
        Gene lengths in bases, one per gene or genes × samples.
    lib_size
        Library sizes; default the column sums (pass effective sizes for TMM-FPKM).
    dtype
        ``np.float64`` (default) or ``np.float32``, as in :func:`tpm` (FPKM is for
        visualization only, so float32's ~1e-7 relative error is allowed here). The
        float32 result is the float64 one rounded once, computed by blocks of samples.

    Returns
    -------
    numpy.ndarray
        ``counts · 1e9 / (lib_size · length)``, of ``dtype``.

    Raises
    ------
    ValueError
        When ``dtype`` is neither float64 nor float32, or a length is invalid.
    """
    out_dtype = _output_dtype(dtype)
    sizes = None if lib_size is None else np.asarray(lib_size, np.float64).ravel()
    if out_dtype == np.float32:

        def scaled(values: FloatArray, lengths: FloatArray, block: slice) -> FloatArray:
            part = values.sum(axis=0) if sizes is None else sizes[block]
            return values / part * 1e6 / (lengths / 1000)

        return _float32_by_samples(counts, lengths, scaled)
    values = np.asarray(counts, dtype=np.float64)
    sizes = values.sum(axis=0) if sizes is None else sizes
    kilobases = _checked_lengths(lengths, values.shape) / 1000
    # edgeR's order of operations, in place: one dense result instead of three.
    result = values / sizes
    result *= 1e6
    result /= kilobases
    return result


def fpkm_from_tpm(abundance: npt.ArrayLike, lengths: npt.ArrayLike) -> FloatArray:
    """FPKM of a quantifier's genes from its TPM and effective lengths.

    ``FPKM = TPM · 1e9 / Σ(TPM · length)`` per sample, the sum over every gene the
    quantifier reported. Since a quantifier's TPM is ``1e6 · (c/len) / Σ(c/len)``, this
    is ``1e9 · c / (N · len)`` with ``N = Σ c`` its total estimated reads and ``len`` the
    effective length: the FPKM of RSEM, and edgeR's ``rpkm`` of the unrounded estimated
    counts with tximport's ``length`` matrix. It needs only the abundance and length
    that tximport returns, which do not depend on ``countsFromAbundance``. Equivalently,
    FPKM is TPM divided by the sample's TPM-weighted mean effective length in kilobases.

    Parameters
    ----------
    abundance
        Genes × samples TPM (tximport's ``abundance``), over all the quantifier's genes.
    lengths
        Genes × samples effective lengths (tximport's ``length``).

    Returns
    -------
    numpy.ndarray
        Genes × samples FPKM, float64.

    Raises
    ------
    ValueError
        When shapes differ, a value is negative or not finite, or a sample has no
        abundance at all.
    """
    tpm_values = np.asarray(abundance, dtype=np.float64)
    length_values = np.asarray(lengths, dtype=np.float64)
    if tpm_values.shape != length_values.shape or tpm_values.ndim != 2:
        raise ValueError(
            f"abundance of shape {tpm_values.shape} and lengths of shape "
            f"{length_values.shape} must both be genes × samples"
        )
    for name, values in (("abundance", tpm_values), ("length", length_values)):
        if not np.all(np.isfinite(values) & (values >= 0)):
            raise ValueError(f"every {name} must be a finite number ≥ 0")
    # A zero-length gene has zero TPM (nothing can be sampled from it): 0 · 0 = 0.
    weighted = (tpm_values * length_values).sum(axis=0)
    empty = np.flatnonzero(weighted <= 0)
    if empty.size:
        raise ValueError(f"sample column(s) {empty.tolist()} have no abundance at all")
    return tpm_values * (1e9 / weighted)


def normalized_counts_factors(
    size_factor: npt.ArrayLike, effective_lib_size: npt.ArrayLike, source: str
) -> FloatArray:
    """Per-sample divisors that turn counts into ``normalized_counts``.

    ``"deseq2"``: DESeq2's size factors, as ``counts(dds, normalized=TRUE)``.
    ``"method"``: the effective library sizes of ``normalization.method`` (edgeR's
    ``lib.size · norm.factors``) divided by their geometric mean, so that they multiply
    to 1 like DESeq2's; this is how edgeR factors are handed to DESeq2
    (``sizeFactors(dds) <- eff / exp(mean(log(eff)))``).

    Parameters
    ----------
    size_factor
        DESeq2 size factors.
    effective_lib_size
        edgeR effective library sizes.
    source
        ``"deseq2"`` or ``"method"``.

    Returns
    -------
    numpy.ndarray
        One divisor per sample.

    Raises
    ------
    ValueError
        On an unknown ``source`` or a non-positive effective library size.
    """
    if source == "deseq2":
        return np.asarray(size_factor, dtype=np.float64).copy()
    if source != "method":
        raise ValueError(f"normalized counts factors must be 'deseq2' or 'method', not {source!r}")
    effective = np.asarray(effective_lib_size, dtype=np.float64)
    if not np.all(np.isfinite(effective) & (effective > 0)):
        raise ValueError("every effective library size must be a finite number > 0")
    return effective / np.exp(np.mean(np.log(effective)))


def size_factor_table(
    samples: list[str],
    lib_size: npt.ArrayLike,
    norm_factor: npt.ArrayLike,
    size_factor: npt.ArrayLike,
    settings: dict[str, Any],
    counts_name: str,
) -> Any:
    """``normalization/size_factors.tsv``: each sample's library size, factors, and what
    ``normalized_counts`` divides by (and whose factors those are).

    One table for the in-memory and the sharded size-factor jobs.

    Parameters
    ----------
    samples
        Sample names, in the columns' order.
    lib_size, norm_factor, size_factor
        Filtered library sizes, the edgeR method's factors and the DESeq2 (or scran)
        size factors.
    settings
        The config's ``normalization`` section (``method``, ``size_factor_type``,
        ``normalized_counts_factors``).
    counts_name
        The filtered counts' file, named in the message.

    Raises
    ------
    InputError
        The method's factors cannot give normalized counts (a sample without reads).
    """
    import pandas as pd

    from cohortnorm.errors import InputError

    lib_size = np.asarray(lib_size, dtype=np.float64)
    norm_factor = np.asarray(norm_factor, dtype=np.float64)
    table = pd.DataFrame(
        {
            "sample": list(samples),
            "lib_size": lib_size,
            "norm_factor": norm_factor,
            "effective_lib_size": lib_size * norm_factor,
            "size_factor": np.asarray(size_factor, dtype=np.float64),
        }
    )
    source = settings["normalized_counts_factors"]
    try:
        table["normalized_counts_factor"] = normalized_counts_factors(
            table["size_factor"].to_numpy(), table["effective_lib_size"].to_numpy(), source
        )
    except ValueError as error:
        raise InputError(
            f"{counts_name}: {error}, so normalized counts cannot use the "
            f"{settings['method']} factors. Remove the samples without reads, or set "
            "normalization.normalized_counts_factors: deseq2."
        ) from error
    if source == "deseq2" and settings["size_factor_type"] == "scran":
        table["normalized_counts_factors"] = "scran pooled"
    elif source == "deseq2":
        table["normalized_counts_factors"] = f"DESeq2 {settings['size_factor_type']}"
    else:  # method none: plain library sizes
        table["normalized_counts_factors"] = settings["method"].replace("none", "library sizes")
    return table
