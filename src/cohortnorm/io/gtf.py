"""Gene lengths from an annotation (GTF/GFF) or from a two-column table.

The length of a gene is the number of bases in the union of its exons, overlaps counted
once: the ``Length`` column featureCounts writes for a meta-feature (gene) when counting
with ``-t exon -g gene_id`` (Subread user guide; edgeR ``featureCounts2DGEList`` keeps it
as ``genes$Length``), and the length rnanorm uses for TPM.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cohortnorm.errors import InputError
from cohortnorm.io.tables import check_input_file, explain_read_errors, read_table

_GTF_COLUMNS = [
    "seqname",
    "source",
    "feature",
    "start",
    "end",
    "score",
    "strand",
    "frame",
    "attribute",
]
_ANNOTATION_SUFFIXES = (".gtf", ".gff", ".gff3", ".gtf.gz", ".gff.gz", ".gff3.gz")


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _leading_comment_lines(path: Path) -> int:
    count = 0
    with _open_text(path) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            count += 1
    return count


def union_lengths(
    groups: np.ndarray, starts: np.ndarray, ends: np.ndarray, n_groups: int
) -> np.ndarray:
    """Bases covered by the union of closed intervals ``[start, end]`` in each group.

    Parameters
    ----------
    groups
        Integer group code of each interval, in ``0 .. n_groups-1``.
    starts, ends
        1-based inclusive coordinates (GTF convention).
    n_groups
        Number of groups.

    Returns
    -------
    numpy.ndarray
        int64 covered length per group.

    Notes
    -----
    After sorting by (group, start), the bases an interval adds are those past the
    furthest end seen so far in its group, ``max(0, end - max(start - 1, reach))``. The
    running maximum is taken over all rows at once by offsetting each group's ends by a
    multiple of a constant larger than any coordinate, so it never crosses groups.
    """
    groups = np.asarray(groups, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if groups.size == 0:
        return np.zeros(n_groups, dtype=np.int64)
    order = np.lexsort((starts, groups))
    groups, starts, ends = groups[order], starts[order], ends[order]
    span = int(max(ends.max(), starts.max())) + 2
    offset = groups * span
    reach = np.maximum.accumulate(ends + offset) - offset
    previous_reach = np.empty_like(reach)
    previous_reach[0] = 0
    previous_reach[1:] = reach[:-1]
    first_in_group = np.ones(groups.size, dtype=bool)
    first_in_group[1:] = groups[1:] != groups[:-1]
    previous_reach[first_in_group] = 0
    added = np.maximum(0, ends - np.maximum(starts - 1, previous_reach))
    return np.bincount(groups, weights=added, minlength=n_groups).astype(np.int64)


def gene_lengths_from_gtf(
    path: str | Path, feature: str = "exon", attribute: str = "gene_id"
) -> pd.Series:
    """Union-of-exons length of every gene in a GTF (or GFF) file.

    Reproduces the ``Length`` column of featureCounts (Subread) for meta-features:
    exons of the same gene are merged per chromosome, overlaps counted once, and the
    chromosome totals added; strand is ignored.

    Parameters
    ----------
    path
        GTF/GFF file, optionally gzipped.
    feature
        Feature type (third column) to use.
    attribute
        Attribute holding the gene ID (``gene_id "X";`` in GTF, ``gene_id=X`` in GFF3).

    Returns
    -------
    pandas.Series
        int64 lengths named ``length``, indexed by ``gene_id`` in order of first
        appearance in the file.

    Raises
    ------
    InputError
        Missing or unparsable file, no ``feature`` rows, rows without ``attribute``, or
        coordinates that are not positive with start ≤ end.
    """
    path = check_input_file(path, "annotation file (lengths)")

    def skip_comment(row: pacsv.InvalidRow) -> str:
        # Comment lines inside the file (not only the header) have one column.
        return "skip" if row.text is not None and row.text.startswith("#") else "error"

    try:
        with explain_read_errors(path):
            skip_rows = _leading_comment_lines(path)
            table = _read_gtf(path, skip_rows, skip_comment)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(
            f"{path}: not a GTF/GFF file (9 tab-separated columns, integer start and end): {error}"
        ) from None
    return _lengths_from_table(path, table, feature, attribute)


def _read_gtf(path: Path, skip_rows: int, skip_comment) -> pa.Table:  # type: ignore[no-untyped-def]
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            skip_rows=skip_rows,
            column_names=_GTF_COLUMNS,
            block_size=1 << 24,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter="\t", quote_char=False, invalid_row_handler=skip_comment
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "seqname": pa.string(),
                "feature": pa.string(),
                "start": pa.int64(),
                "end": pa.int64(),
                "attribute": pa.string(),
            },
            include_columns=["seqname", "feature", "start", "end", "attribute"],
        ),
    )


def _lengths_from_table(path: Path, table: pa.Table, feature: str, attribute: str) -> pd.Series:
    table = table.filter(pc.equal(table["feature"], feature))
    if table.num_rows == 0:
        raise InputError(
            f"{path}: no rows of feature type {feature!r} (third column). Give an annotation "
            "with exon rows, or a two-column gene_id/length table."
        )
    pattern = rf'(?:^|;)\s*{attribute}(?:\s+"|\s+|=)(?P<id>[^";]+)'
    extracted = pc.extract_regex(table["attribute"], pattern).combine_chunks()
    gene_ids = extracted.field("id")
    if extracted.null_count:
        first = pc.index(pc.is_null(extracted), True).as_py()
        raise InputError(
            f"{path}: {extracted.null_count} {feature} row(s) have no {attribute!r} attribute, "
            f"the first with attributes {table['attribute'][first].as_py()!r}. Use an "
            "annotation where every exon names its gene."
        )
    starts = table["start"].to_numpy()
    ends = table["end"].to_numpy()
    bad = (starts < 1) | (ends < starts)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: {int(bad.sum())} {feature} row(s) have start < 1 or end < start, the first "
            f"of gene {gene_ids[first].as_py()} ({starts[first]}-{ends[first]}). Fix the "
            "coordinates."
        )
    gene_codes, genes = pd.factorize(np.asarray(gene_ids.to_numpy(zero_copy_only=False)))
    seq_codes, _ = pd.factorize(np.asarray(table["seqname"].to_numpy()))
    # Merge per (gene, chromosome): featureCounts never merges exons across chromosomes.
    pair_codes, pairs = pd.factorize(
        gene_codes.astype(np.int64) * (seq_codes.max() + 1) + seq_codes
    )
    pair_lengths = union_lengths(pair_codes, starts, ends, len(pairs))
    pair_gene = pairs // (seq_codes.max() + 1)
    lengths = np.bincount(pair_gene, weights=pair_lengths, minlength=len(genes)).astype(np.int64)
    return pd.Series(lengths, index=pd.Index(genes, name="gene_id", dtype=object), name="length")


def read_lengths_table(path: str | Path) -> pd.Series:
    """Read a gene-length table: first column gene ID, second column length.

    Parameters
    ----------
    path
        TSV/CSV with a header line, optionally gzipped.

    Returns
    -------
    pandas.Series
        Lengths named ``length`` indexed by ``gene_id`` (read as text); int64 when every
        length is a whole number, else float64.

    Raises
    ------
    InputError
        Fewer than two columns, duplicate genes, or a length that is missing, not a
        number, or not positive (a zero length makes TPM/FPKM infinite).
    """
    path = Path(path)
    # Gene IDs are text: 007 must stay 007, and 1.1 and 1.10 must stay two genes.
    frame = read_table(path, string_positions=(0,))
    if frame.shape[1] < 2:
        raise InputError(
            f"{path}: a gene-length table needs two columns (gene_id, length); found "
            f"{frame.shape[1]}. Separate them with a tab or a comma."
        )
    ids = frame.iloc[:, 0].astype(str).to_numpy()
    raw = frame.iloc[:, 1]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: {int(bad.sum())} gene length(s) are missing, not numbers or not "
            f"positive, the first for gene {ids[first]} "
            f"(line {first + 2}: {str(raw.iloc[first])!r}). "
            "Every gene needs a length > 0."
        )
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        names = list(dict.fromkeys(ids[duplicated]))
        raise InputError(
            f"{path}: {len(names)} gene ID(s) appear more than once: {', '.join(names[:5])}. "
            "Keep one length per gene."
        )
    if np.all(values == np.round(values)):
        values = values.astype(np.int64)
    return pd.Series(values, index=pd.Index(ids, name="gene_id", dtype=object), name="length")


def read_gene_lengths(path: str | Path) -> pd.Series:
    """Gene lengths from a GTF/GFF (``.gtf``, ``.gff``, ``.gff3``, optionally ``.gz``) or a table.

    See :func:`gene_lengths_from_gtf` and :func:`read_lengths_table`.
    """
    name = Path(path).name.lower()
    if name.endswith(_ANNOTATION_SUFFIXES):
        return gene_lengths_from_gtf(path)
    return read_lengths_table(path)
