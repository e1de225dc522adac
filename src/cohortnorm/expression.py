"""Length-normalized expression for visualization: TPM and FPKM (ALGORITHMS.md §4).

Neither is for differential-expression testing: TPM removes library size entirely and
both divide by a gene length that the counting model does not use.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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


def tpm(counts: npt.ArrayLike, lengths: npt.ArrayLike, *, overwrite: bool = False) -> FloatArray:
    """Transcripts per million, ``1e6 · (c/len) / Σ(c/len)`` per sample.

    Parameters
    ----------
    counts
        Genes × samples counts (or estimated counts).
    lengths
        Gene lengths in bases: one per gene, or genes × samples (effective lengths
        from a quantifier, tximport's ``length`` matrix).
    overwrite
        Compute in the memory of ``counts`` when it is a float64 array (the same
        numbers, without a second dense copy); ``counts`` then holds the TPM.

    Returns
    -------
    numpy.ndarray
        TPM, each column summing to 1e6 (NaN for a sample with no counts).
    """
    values = np.asarray(counts, dtype=np.float64)
    checked = _checked_lengths(lengths, values.shape)
    if overwrite and values.flags.writeable:
        rate = np.divide(values, checked, out=values)
    else:
        rate = values / checked
    with np.errstate(invalid="ignore", divide="ignore"):
        rate *= 1e6 / rate.sum(axis=0)
    return rate


def fpkm(
    counts: npt.ArrayLike, lengths: npt.ArrayLike, lib_size: npt.ArrayLike | None = None
) -> FloatArray:
    """Fragments per kilobase per million, ``edgeR::rpkm`` (``cpm / (len/1000)``).

    Parameters
    ----------
    counts
        Genes × samples counts.
    lengths
        Gene lengths in bases, one per gene or genes × samples.
    lib_size
        Library sizes; default the column sums (pass effective sizes for TMM-FPKM).

    Returns
    -------
    numpy.ndarray
        ``counts · 1e9 / (lib_size · length)``.
    """
    values = np.asarray(counts, dtype=np.float64)
    sizes = values.sum(axis=0) if lib_size is None else np.asarray(lib_size, np.float64).ravel()
    return values / sizes * 1e6 / (_checked_lengths(lengths, values.shape) / 1000)
