"""Transcript-to-gene summarisation of quantifier output, as tximport does it.

Reproduces tximport 1.26.1 ``summarizeToGene`` (the list method called by
``tximport(..., tx2gene=)``), ``replaceMissingLength`` and ``makeCountsFromAbundance``.
Pure functions on DataFrames: the file readers live in :mod:`cohortnorm.io.importers`.

Gene order is that of R's ``rowsum`` over a factor: the gene IDs sorted as R sorts the
factor levels. R built with ICU (Debian's, used for the references, even under
``LC_COLLATE=C.UTF-8``) collates with the ICU root order: whitespace, then punctuation in
the order ``_-,;:!?.'"()[]{}@*/\\&#%`^+<=>|~$``, digits, then letters case-insensitively,
with case (lower before upper) deciding only between otherwise equal IDs. So ``Cort``
sorts before ``CORT``, and ``XLOC_1:CORT`` before ``XLOC_10``. :func:`r_sort_key`
reproduces that for ASCII IDs; other characters sort after the letters by code point.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError, preview

CountsFromAbundance = Literal["no", "scaledTPM", "lengthScaledTPM"]
COUNTS_FROM_ABUNDANCE: tuple[str, ...] = ("no", "scaledTPM", "lengthScaledTPM")


# ICU root collation order of printable ASCII (printed by R 4.2.2 with ICU: sort() of
# the single characters); letters are listed lower then upper, and share a primary weight.
_ICU_ASCII_ORDER = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789"
_PRIMARY: dict[str, int] = {char: rank for rank, char in enumerate(_ICU_ASCII_ORDER)}
for _offset, _letter in enumerate("abcdefghijklmnopqrstuvwxyz"):
    _PRIMARY[_letter] = _PRIMARY[_letter.upper()] = len(_ICU_ASCII_ORDER) + _offset


def r_sort_key(identifier: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key that orders ASCII identifiers as R's ``sort()`` does with ICU collation.

    Primary weights compare the whole string first (case-insensitive, punctuation before
    digits before letters); the tertiary weights (lower case before upper case) only
    break ties.
    """
    primary = tuple(_PRIMARY.get(char, 1000 + ord(char)) for char in identifier)
    tertiary = tuple(1 if char.isupper() else 0 for char in identifier)
    return primary, tertiary


def make_counts_from_abundance(
    counts: pd.DataFrame,
    abundance: pd.DataFrame,
    length: pd.DataFrame,
    counts_from_abundance: str,
) -> pd.DataFrame:
    """Counts rebuilt from abundance and scaled to each sample's original count total.

    Reproduces tximport 1.26.1 ``makeCountsFromAbundance``: ``scaledTPM`` scales the TPM
    of each sample to its count total; ``lengthScaledTPM`` first multiplies the TPM by
    the feature's mean length across samples (``rowMeans(length)``).

    Parameters
    ----------
    counts, abundance, length
        Features × samples, aligned (same index and columns).
    counts_from_abundance
        ``"scaledTPM"`` or ``"lengthScaledTPM"``.

    Returns
    -------
    pandas.DataFrame
        The new counts, same shape and labels as ``counts``.
    """
    if counts_from_abundance == "lengthScaledTPM":
        new_counts = abundance.to_numpy(dtype=float) * length.to_numpy(dtype=float).mean(
            axis=1, keepdims=True
        )
    elif counts_from_abundance == "scaledTPM":
        new_counts = abundance.to_numpy(dtype=float)
    else:
        raise InputError(
            f"counts_from_abundance={counts_from_abundance!r} is not supported here: use "
            "'scaledTPM' or 'lengthScaledTPM'."
        )
    counts_sum = counts.to_numpy(dtype=float).sum(axis=0)
    new_sum = new_counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = new_counts * (counts_sum / new_sum)
    return pd.DataFrame(scaled, index=counts.index, columns=counts.columns)


def _rowsum(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    # np.add.at adds row after row in input order, like R's rowsum C loop, so the
    # floating-point sums match R's bit for bit in the common case.
    out = np.zeros((n_groups, values.shape[1]), dtype=float)
    np.add.at(out, codes, values)
    return out


def replace_missing_length(length: np.ndarray, ave_length_gene: np.ndarray) -> np.ndarray:
    """Fill NaN gene lengths (genes with zero abundance in a sample).

    Reproduces tximport 1.26.1 ``replaceMissingLength``: a NaN is replaced by the
    geometric mean of the gene's lengths in the samples where it is not NaN; a gene that
    is NaN in every sample gets ``ave_length_gene`` (the mean over its transcripts of
    their across-sample mean length).

    Parameters
    ----------
    length
        Genes × samples, with NaN where the gene's abundance was zero.
    ave_length_gene
        One value per gene.

    Returns
    -------
    numpy.ndarray
        A new array without NaN.
    """
    missing = np.isnan(length)
    rows = np.flatnonzero(missing.any(axis=1))
    if rows.size == 0:
        return length
    out = length.copy()
    block = out[rows]
    block_missing = missing[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_block = np.where(block_missing, 0.0, np.log(np.where(block_missing, 1.0, block)))
        n_present = (~block_missing).sum(axis=1)
        geo = np.exp(log_block.sum(axis=1) / n_present)
    fill = np.where(n_present == 0, ave_length_gene[rows], geo)
    out[rows] = np.where(block_missing, fill[:, None], block)
    return out


def summarize_to_genes(
    counts_tx: pd.DataFrame,
    abundance_tx: pd.DataFrame,
    length_tx: pd.DataFrame,
    tx2gene: pd.Series,
    counts_from_abundance: str = "no",
    *,
    ignore_missing: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Summarise transcript-level estimates to genes.

    Reproduces tximport 1.26.1 ``summarizeToGene`` (``tximport(files, type=...,
    tx2gene=tx2gene, countsFromAbundance=...)``):

    - abundance (TPM) and counts are summed per gene;
    - length is the abundance-weighted mean ``Σ(TPM·len)/Σ TPM``; where a gene's
      abundance is zero in a sample, see :func:`replace_missing_length`;
    - with ``counts_from_abundance`` other than ``"no"`` the gene counts are rebuilt by
      :func:`make_counts_from_abundance` from the gene abundance and length.

    Parameters
    ----------
    counts_tx, abundance_tx, length_tx
        Transcripts × samples (estimated counts, TPM, effective length), same index.
    tx2gene
        Gene of each transcript, indexed by transcript ID. Duplicate transcripts keep
        their first row (as tximport's ``cleanTx2Gene``).
    counts_from_abundance
        ``"no"``, ``"scaledTPM"`` or ``"lengthScaledTPM"``.
    ignore_missing
        tximport drops quantified transcripts that have no row in ``tx2gene`` with only
        a message. Here that is an error unless this is true, since it usually means the
        annotation does not match the index.

    Returns
    -------
    counts, abundance, length
        Genes × samples, genes sorted by ID.

    Raises
    ------
    InputError
        On misaligned inputs, an unknown ``counts_from_abundance``, or transcripts
        without a gene.
    """
    if counts_from_abundance not in COUNTS_FROM_ABUNDANCE:
        raise InputError(
            f"counts_from_abundance={counts_from_abundance!r} is not one of "
            f"{', '.join(COUNTS_FROM_ABUNDANCE)}."
        )
    tx_ids = counts_tx.index
    for name, frame in (("abundance", abundance_tx), ("length", length_tx)):
        if not frame.index.equals(tx_ids) or not frame.columns.equals(counts_tx.columns):
            raise InputError(
                f"transcript {name} and counts are not aligned: they must have the same "
                "transcripts and samples in the same order."
            )
    tx2gene = tx2gene[~tx2gene.index.duplicated(keep="first")]
    gene_of_tx = tx2gene.reindex(tx_ids).to_numpy(dtype=object)
    missing = pd.isna(gene_of_tx)
    if missing.all():
        raise InputError(
            "none of the quantified transcripts are in the tx2gene table. Example IDs "
            f"(quantification): {preview(list(tx_ids[:3]), 3)}; example IDs (tx2gene): "
            f"{preview(list(tx2gene.index[:3]), 3)}. Use the tx2gene table of the annotation "
            "the quantifier index was built from (check transcript version suffixes)."
        )
    keep = ~missing
    if missing.any():
        if not ignore_missing:
            raise InputError(
                f"{int(missing.sum())} quantified transcript(s) have no gene in the tx2gene "
                f"table: {preview(list(tx_ids[missing]))}. Use the tx2gene table of the "
                "annotation the quantifier index was built from."
            )
        gene_of_tx = gene_of_tx[keep]
    unique_genes, codes = np.unique(gene_of_tx.astype(str), return_inverse=True)
    order = np.array(sorted(range(unique_genes.size), key=lambda i: r_sort_key(unique_genes[i])))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    genes = unique_genes[order]
    codes = rank[codes.ravel()]
    n_genes = genes.size

    abundance_values = abundance_tx.to_numpy(dtype=float)[keep]
    counts_values = counts_tx.to_numpy(dtype=float)[keep]
    length_values = length_tx.to_numpy(dtype=float)[keep]

    abundance = _rowsum(abundance_values, codes, n_genes)
    counts = _rowsum(counts_values, codes, n_genes)
    weighted_length = _rowsum(abundance_values * length_values, codes, n_genes)
    with np.errstate(divide="ignore", invalid="ignore"):
        length = weighted_length / abundance
    ave_length_tx = length_values.mean(axis=1)
    ave_length_gene = np.bincount(codes, weights=ave_length_tx, minlength=n_genes) / np.bincount(
        codes, minlength=n_genes
    )
    length = replace_missing_length(length, ave_length_gene)

    index = pd.Index(genes, name="gene_id", dtype=object)
    columns = counts_tx.columns
    counts_frame = pd.DataFrame(counts, index=index, columns=columns)
    abundance_frame = pd.DataFrame(abundance, index=index, columns=columns)
    length_frame = pd.DataFrame(length, index=index, columns=columns)
    if counts_from_abundance != "no":
        counts_frame = make_counts_from_abundance(
            counts_frame, abundance_frame, length_frame, counts_from_abundance
        )
    return counts_frame, abundance_frame, length_frame
