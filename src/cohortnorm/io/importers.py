"""Read gene counts from the common RNA-seq quantification formats.

One reader per format and the dispatcher :func:`import_counts`:

============== ====================================================================
format         input
============== ====================================================================
matrix         one TSV/CSV, gene IDs in the first column, one column per sample
featurecounts  featureCounts output (``#`` command line, ``Geneid Chr Start End Strand
               Length <one column per BAM>``); its ``Length`` is returned as lengths
htseq          one htseq-count (or DEXSeq ``dexseq_count.py``) file per sample
star           one STAR ``ReadsPerGene.out.tab`` per sample
salmon         one ``quant.sf`` per sample (transcripts; summarised with tx2gene)
kallisto       one ``abundance.tsv`` per sample (transcripts; summarised with tx2gene)
rsem           one ``*.genes.results`` (gene level) or ``*.isoforms.results`` per sample
h5ad           one AnnData file (samples × genes): ``X`` or a layer, dense or sparse
============== ====================================================================

Transcript-level estimates are summarised to genes as tximport 1.26.1 does
(:mod:`cohortnorm.tximport`); the quantifier columns used are tximport's (Salmon
``NumReads``/``TPM``/``EffectiveLength``, kallisto ``est_counts``/``tpm``/``eff_length``,
RSEM ``expected_count``/``TPM``/``effective_length``).

Every problem with the input raises :class:`~cohortnorm.errors.InputError` naming the
file, the gene or line and the sample, and what to fix. The checks are vectorised: a
60,000 × 1,000 matrix costs little more than pyarrow's parse.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_table, read_text_matrix, sniff_delimiter
from cohortnorm.tximport import (
    COUNTS_FROM_ABUNDANCE,
    make_counts_from_abundance,
    summarize_to_genes,
)

FORMATS: tuple[str, ...] = (
    "matrix",
    "featurecounts",
    "htseq",
    "star",
    "salmon",
    "kallisto",
    "rsem",
    "h5ad",
)
GENE_COUNT_FORMATS: frozenset[str] = frozenset({"matrix", "featurecounts", "htseq", "star", "h5ad"})
QUANTIFIER_FORMATS: frozenset[str] = frozenset({"salmon", "kallisto", "rsem"})

# STAR ReadsPerGene.out.tab columns 2-4: unstranded; reads whose 1st read strand matches
# the gene (htseq-count -s yes); reads whose 2nd read strand matches (htseq-count -s reverse).
STAR_STRAND_COLUMNS: dict[str, str] = {
    "unstranded": "unstranded",
    "forward": "forward",
    "reverse": "reverse",
}
_STAR_SUMMARY_ROWS = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
# dexseq_count.py ends its files with these four rows instead of htseq-count's __ rows.
_DEXSEQ_SUMMARY_ROWS = ("_ambiguous", "_empty", "_lowaqual", "_notaligned")
_GENE_ID_NAMES = frozenset(
    {"gene_id", "geneid", "gene", "genes", "ensembl_gene_id", "gene_name", "gene_symbol", "id"}
)
_FEATURECOUNTS_ANNOTATION = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
_BAM_SUFFIXES = (
    "Aligned.sortedByCoord.out.bam",
    "Aligned.toTranscriptome.out.bam",
    "Aligned.out.bam",
    ".sorted.bam",
    ".bam",
    ".sam",
)


@dataclass(frozen=True)
class _QuantifierLayout:
    id_column: str
    counts: str
    abundance: str
    length: str
    default_file: str
    gene_column: str | None = None


_QUANTIFIERS: dict[str, _QuantifierLayout] = {
    "salmon": _QuantifierLayout("Name", "NumReads", "TPM", "EffectiveLength", "quant.sf"),
    "kallisto": _QuantifierLayout("target_id", "est_counts", "tpm", "eff_length", "abundance.tsv"),
    "rsem_isoforms": _QuantifierLayout(
        "transcript_id",
        "expected_count",
        "TPM",
        "effective_length",
        "isoforms.results",
        gene_column="gene_id",
    ),
    "rsem_genes": _QuantifierLayout(
        "gene_id", "expected_count", "TPM", "effective_length", "genes.results"
    ),
}


@dataclass
class ImportResult:
    """Counts read from one of the supported formats.

    Attributes
    ----------
    counts
        Genes × samples, index named ``gene_id``. int64 for gene-count formats
        (matrix, featurecounts, htseq, star); float64 for quantifiers (not rounded).
    lengths
        featureCounts ``Length`` (Series), or the quantifier's per-sample average
        transcript length (genes × samples DataFrame); ``None`` otherwise.
    abundance
        TPM (genes × samples) for quantifiers, else ``None``.
    notes
        What was done to the input, for the run log.
    """

    counts: pd.DataFrame
    lengths: pd.DataFrame | pd.Series | None = None
    abundance: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _preview(names: Sequence[object], limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: {what} not found. Check the path in the config.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the {what} inside it.")
    return path


def _first_lines(path: Path, comment: str | None = None, n: int = 2) -> list[list[str]]:
    """The first ``n`` non-comment lines, split on the file's delimiter."""
    delimiter = sniff_delimiter(path)
    opener = gzip.open if path.suffix == ".gz" else open
    lines: list[list[str]] = []
    with opener(path, "rt", newline="") as handle:
        for line in handle:
            if comment is not None and line.startswith(comment):
                continue
            lines.append([cell.strip() for cell in line.rstrip("\r\n").split(delimiter)])
            if len(lines) == n:
                break
    return lines


def _cell_location(mask: np.ndarray, genes: Sequence[object], samples: Sequence[object]) -> str:
    row, column = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return f"gene {genes[row]}, sample {samples[column]}"


def _check_labels(genes: pd.Index, samples: Sequence[object], source: str) -> None:
    if len(genes) == 0:
        raise InputError(f"{source}: no genes (rows) found. Check that this is a count table.")
    if len(samples) == 0:
        raise InputError(f"{source}: no sample columns found. Check the file's delimiter.")
    sample_index = pd.Index(samples)
    if sample_index.duplicated().any():
        duplicates = list(dict.fromkeys(sample_index[sample_index.duplicated()]))
        raise InputError(
            f"{source}: sample column name(s) appear more than once: {_preview(duplicates)}. "
            "Give every sample a unique column name."
        )
    if genes.has_duplicates:
        duplicates = list(dict.fromkeys(genes[genes.duplicated()]))
        raise InputError(
            f"{source}: {len(duplicates)} gene ID(s) appear on more than one row: "
            f"{_preview(duplicates)}. Sum or remove the duplicate rows so each gene appears once."
        )
    empty = genes.astype(str).str.strip() == ""
    if empty.any():
        raise InputError(
            f"{source}: {int(empty.sum())} row(s) have an empty gene ID (the first is data row "
            f"{int(np.argmax(empty)) + 1}). Fill in or remove those rows."
        )


def _numeric_values(frame: pd.DataFrame, source: str) -> np.ndarray:
    """The frame's values as a numeric 2-D array; a non-numeric cell is an error."""
    text_columns = [i for i, dtype in enumerate(frame.dtypes) if dtype.kind not in "iufb"]
    for position in text_columns:
        column = frame.iloc[:, position]
        parsed = pd.to_numeric(column, errors="coerce")
        bad = parsed.isna().to_numpy() & column.notna().to_numpy()
        bad &= column.astype(str).str.strip().to_numpy() != ""
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(
                f"{source}: gene {frame.index[row]}, sample {frame.columns[position]}: "
                f"{column.iloc[row]!r} is not a number ({int(bad.sum())} such cell(s) in that "
                "column). Counts must be numbers."
            )
    if text_columns:
        return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return frame.to_numpy()


def _check_count_values(
    values: np.ndarray,
    genes: Sequence[object],
    samples: Sequence[object],
    source: str,
    *,
    require_integer: bool,
    what: str = "count",
    allow_all_zero: bool = False,
) -> None:
    """Refuse missing, infinite, negative, (optionally) fractional values and empty samples."""
    if values.dtype.kind == "f":
        missing = np.isnan(values)
        if missing.any():
            raise InputError(
                f"{source}: {_cell_location(missing, genes, samples)}: empty or missing {what} "
                f"({int(missing.sum())} such cell(s)). Fill in every cell (0 for no reads)."
            )
        infinite = np.isinf(values)
        if infinite.any():
            raise InputError(
                f"{source}: {_cell_location(infinite, genes, samples)}: infinite {what}. "
                "Check the tool that wrote this file."
            )
    negative = values < 0
    if negative.any():
        raise InputError(
            f"{source}: {_cell_location(negative, genes, samples)}: negative {what} "
            f"{values[np.unravel_index(int(np.argmax(negative)), values.shape)]} "
            f"({int(negative.sum())} negative cell(s)). Counts cannot be negative: check the "
            "file was not transformed (log, centring) before import."
        )
    if require_integer and values.dtype.kind == "f":
        fractional = values != np.floor(values)
        if fractional.any():
            raise InputError(
                f"{source}: {_cell_location(fractional, genes, samples)}: "
                f"{values[np.unravel_index(int(np.argmax(fractional)), values.shape)]} is not a "
                f"whole number ({int(fractional.sum())} such cell(s)). Raw read counts are "
                "integers: import estimated counts with the salmon/kallisto/rsem format, or "
                "round them first."
            )
    if not allow_all_zero:
        zero = ~values.any(axis=0)
        if zero.any():
            names = [samples[i] for i in np.flatnonzero(zero)]
            raise InputError(
                f"{source}: sample(s) {_preview(names)} have 0 for every gene. Remove them "
                "from the sample sheet or check the counting step."
            )


def validate_count_matrix(frame: pd.DataFrame, source: str, *, require_integer: bool) -> None:
    """Check a genes × samples count matrix; raise on the first problem found.

    Checks, in order: at least one gene and one sample; unique sample names; unique,
    non-empty gene IDs; every cell a number; no missing or infinite cell; no negative
    count; whole numbers when ``require_integer``; no sample whose counts are all zero.
    The R references accept some of these (edgeR takes non-integers and duplicate
    genes) or fail later with a less precise message; see ALGORITHMS.md §7.

    Parameters
    ----------
    frame
        Genes × samples, indexed by gene ID.
    source
        File name (or description) used in messages.
    require_integer
        Refuse fractional values (raw read counts).

    Raises
    ------
    InputError
        Naming the gene and sample of the first bad cell, the duplicated names, or the
        empty samples.
    """
    _check_labels(frame.index, list(frame.columns), source)
    values = _numeric_values(frame, source)
    _check_count_values(
        values, frame.index, list(frame.columns), source, require_integer=require_integer
    )


def _as_int64(frame: pd.DataFrame, notes: list[str], source: str) -> pd.DataFrame:
    if all(dtype.kind in "iu" for dtype in frame.dtypes):
        return frame.astype(np.int64, copy=False)
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    notes.append(f"{source}: counts written as decimals (e.g. 12.0) were read as integers")
    return pd.DataFrame(values.astype(np.int64), index=frame.index, columns=frame.columns)


def _sample_block(frame: pd.DataFrame, columns: list[str], genes: pd.Index) -> pd.DataFrame:
    """The sample columns as one genes × samples frame backed by a single array.

    pyarrow hands over one block per column; pandas would merge them with a slow
    ``vstack`` on the first whole-frame operation. Filling a Fortran-ordered array column
    by column costs one contiguous copy, and pandas keeps it as one block without copying.
    """
    dtypes = {frame[column].dtype for column in columns}
    if len(dtypes) != 1 or next(iter(dtypes)).kind not in "iuf":
        block = frame[columns].copy()
        block.index = genes
        return block
    values = np.empty((len(frame), len(columns)), dtype=next(iter(dtypes)), order="F")
    for position, column in enumerate(columns):
        values[:, position] = frame[column].to_numpy()
    return pd.DataFrame(values, index=genes, columns=columns, copy=False)


def _read_or_explain(path: Path, expectation: str, **options: object) -> pd.DataFrame:
    try:
        return read_table(path, **options)  # type: ignore[arg-type]
    except InputError as error:
        if "could not be parsed" in str(error):
            raise InputError(f"{error}. {expectation}") from None
        raise


# --------------------------------------------------------------------------- matrix


def import_matrix(path: str | Path) -> ImportResult:
    """Read a genes × samples count table (TSV or CSV, optionally gzipped).

    The first column holds the gene IDs, the header names the samples. A header with
    one field fewer than the rows (R's ``write.table`` with row names) is accepted.

    Raises
    ------
    InputError
        Missing file, a gene-ID column that is not first, a first column of numbers,
        or any problem :func:`validate_count_matrix` reports (integers required).
    """
    path = _require_file(Path(path), "count matrix")
    source = str(path)
    notes: list[str] = []
    lines = _first_lines(path)
    if not lines:
        raise InputError(f"{source}: the file is empty.")
    header = lines[0]
    if len(lines) > 1 and len(lines[1]) == len(header) + 1:
        raise InputError(
            f"{source}: the header has {len(header)} fields but the rows have {len(lines[1])}: "
            "the gene-ID column has no name (R's write.table with row names). Add a first "
            "header field such as gene_id (in R: write.table(..., col.names = NA))."
        )
    if len(set(header)) != len(header):
        seen = pd.Index(header)
        duplicates = list(dict.fromkeys(seen[seen.duplicated()]))
        raise InputError(
            f"{source}: column name(s) appear more than once in the header: "
            f"{_preview(duplicates)}. Give every sample a unique column name."
        )
    misplaced = [name for name in header[1:] if name.lower() in _GENE_ID_NAMES]
    if misplaced:
        raise InputError(
            f"{source}: column {misplaced[0]!r} looks like gene IDs but is not the first column. "
            "The gene-ID column must come first; move it, or drop the extra annotation columns."
        )
    # One numpy array straight from pyarrow's multithreaded parse (each Arrow column is
    # released as soon as it is copied): a single dense copy of the matrix.
    counts = read_text_matrix(path)
    counts.index = pd.Index(counts.index.astype(str), name="gene_id")
    if header[0].lower() not in _GENE_ID_NAMES:
        as_number = pd.to_numeric(pd.Series(counts.index), errors="coerce")
        if len(counts) and as_number.notna().all():
            raise InputError(
                f"{source}: the first column {header[0]!r} holds numbers, not gene IDs. The "
                "gene-ID column must come first (or name it gene_id if the IDs are numeric)."
            )
    validate_count_matrix(counts, source, require_integer=True)
    counts = _as_int64(counts, notes, source)
    return ImportResult(counts=counts, notes=notes)


# --------------------------------------------------------------------------- featureCounts


def _bam_basename(column: str) -> str:
    parts = column.replace("\\", "/").rstrip("/").split("/")
    # STAR run in one directory per sample writes <sample>/Aligned.sortedByCoord.out.bam.
    if parts[-1].startswith("Aligned.") and len(parts) > 1:
        return f"{parts[-2]}_{parts[-1]}"
    return parts[-1]


def bam_sample_name(column: str) -> str:
    """Sample name from a featureCounts BAM column: basename without the BAM suffix.

    ``/data/S1.bam``, ``star/S1_Aligned.sortedByCoord.out.bam`` and
    ``star/S1/Aligned.sortedByCoord.out.bam`` all give ``S1``.
    """
    base = _bam_basename(column)
    for suffix in _BAM_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return base.rstrip("._") or base


def _match_bam_columns(columns: Sequence[str], samples: Sequence[str], source: str) -> list[str]:
    # The longest sample name that prefixes the BAM basename wins, so S10 is not taken
    # for S1.
    names: list[str] = []
    owner: dict[str, str] = {}
    by_length = sorted(samples, key=len, reverse=True)
    for column in columns:
        base = _bam_basename(column)
        match = next((sample for sample in by_length if base.startswith(sample)), None)
        if match is None:
            names.append(bam_sample_name(column))
            continue
        if match in owner:
            raise InputError(
                f"{source}: columns {owner[match]!r} and {column!r} both match sample {match!r}. "
                "Rename the BAM files or the samples so that each sample matches one column."
            )
        owner[match] = column
        names.append(match)
    unmatched = [sample for sample in samples if sample not in owner]
    if unmatched:
        raise InputError(
            f"{source}: no BAM column starts with the name of sample(s) {_preview(unmatched)}; "
            f"the columns are {_preview([bam_sample_name(c) for c in columns], 10)}. Make the "
            "sample names match the BAM file names."
        )
    return names


def import_featurecounts(path: str | Path, *, samples: Sequence[str] | None = None) -> ImportResult:
    """Read a featureCounts table; return its counts and its ``Length`` column.

    Sample names are the BAM basenames without directories and ``.bam`` (or STAR's
    ``Aligned.sortedByCoord.out.bam``) suffixes. With ``samples``, each column is instead
    given the longest sample name its basename starts with; every sample must match
    one column.

    Raises
    ------
    InputError
        Not a featureCounts table, unmatched samples, or any problem
        :func:`validate_count_matrix` reports (integers required).
    """
    path = _require_file(Path(path), "featureCounts table")
    source = str(path)
    notes: list[str] = []
    lines = _first_lines(path, comment="#", n=1)
    header = lines[0] if lines else []
    if tuple(header[:6]) != _FEATURECOUNTS_ANNOTATION:
        raise InputError(
            f"{source}: not a featureCounts table: the header must start with "
            f"{' '.join(_FEATURECOUNTS_ANNOTATION)} and then have one column per BAM file; "
            f"found {' '.join(header[:6])!r}. Use format 'matrix' for a plain count table."
        )
    bam_columns = header[6:]
    if len(set(bam_columns)) != len(bam_columns):
        index = pd.Index(bam_columns)
        raise InputError(
            f"{source}: BAM column(s) appear more than once: "
            f"{_preview(list(dict.fromkeys(index[index.duplicated()])))}. Count each BAM once."
        )
    frame = _read_or_explain(
        path,
        "featureCounts tables have the same number of tab-separated fields on every line.",
        comment="#",
        string_columns=["Geneid", "Chr", "Start", "End", "Strand"],
    )
    genes = pd.Index(frame["Geneid"].astype(str), name="gene_id")
    names = (
        _match_bam_columns(bam_columns, samples, source)
        if samples is not None
        else [bam_sample_name(column) for column in bam_columns]
    )
    if samples is None and names != bam_columns:
        notes.append(f"{source}: sample names taken from the BAM file names ({_preview(names)})")
    counts = _sample_block(frame, list(frame.columns[6:]), genes)
    counts.columns = names
    validate_count_matrix(counts, source, require_integer=True)
    counts = _as_int64(counts, notes, source)
    length_frame = pd.DataFrame({"Length": frame["Length"]})
    length_frame.index = genes
    length_values = _numeric_values(length_frame, source)[:, 0].astype(float)
    bad = ~(length_values > 0)
    if bad.any():
        raise InputError(
            f"{source}: gene {genes[int(np.argmax(bad))]} has Length "
            f"{length_values[int(np.argmax(bad))]}; lengths must be positive. Check the "
            "annotation given to featureCounts."
        )
    lengths = pd.Series(length_values.astype(np.int64), index=genes, name="length")
    return ImportResult(counts=counts, lengths=lengths, notes=notes)


# --------------------------------------------------------------------------- per-sample files


def _as_sample_paths(paths: Mapping[str, Path] | Path | str, format_name: str) -> dict[str, Path]:
    if not isinstance(paths, Mapping):
        raise InputError(
            f"format {format_name!r} reads one file per sample: give a mapping sample → file "
            f"(got the single path {paths})."
        )
    if not paths:
        raise InputError(f"format {format_name!r}: no sample files given.")
    return {str(sample): Path(path) for sample, path in paths.items()}


def _stack_samples(
    paths: dict[str, Path],
    read_one: Callable[[str, Path], tuple[pd.Index, dict[str, np.ndarray]]],
    what: str,
) -> tuple[pd.Index, dict[str, dict[str, np.ndarray]]]:
    """Read every sample's file and check they list the same features in the same order."""
    first_ids: pd.Index | None = None
    first_sample = ""
    columns: dict[str, dict[str, np.ndarray]] = {}
    for sample, path in paths.items():
        ids, values = read_one(sample, path)
        if first_ids is None:
            first_ids, first_sample = ids, sample
        elif not ids.equals(first_ids):
            shared = min(len(ids), len(first_ids))
            differs = np.flatnonzero(ids[:shared].to_numpy() != first_ids[:shared].to_numpy())
            if differs.size:
                row = int(differs[0])
                detail = (
                    f"row {row + 1} is {ids[row]!r} here but {first_ids[row]!r} in "
                    f"{paths[first_sample]} (sample {first_sample})"
                )
            else:
                detail = (
                    f"it has {len(ids)} {what}s but {paths[first_sample]} (sample "
                    f"{first_sample}) has {len(first_ids)}"
                )
            raise InputError(
                f"{path} (sample {sample}): the {what}s differ from the first sample's: "
                f"{detail}. Every sample must be quantified against the same annotation."
            )
        columns[sample] = values
    assert first_ids is not None
    return first_ids, columns


def _single_column_checks(
    ids: pd.Index, values: np.ndarray, sample: str, path: Path, *, require_integer: bool
) -> None:
    _check_labels(ids, [sample], f"{path} (sample {sample})")
    _check_count_values(
        values.reshape(-1, 1),
        ids,
        [sample],
        str(path),
        require_integer=require_integer,
    )


def _column_values(frame: pd.DataFrame, column: str, ids: pd.Index, path: Path) -> np.ndarray:
    selected = frame[[column]]
    selected.index = ids
    return _numeric_values(selected, str(path))[:, 0]


def import_htseq(paths: Mapping[str, Path] | Path | str) -> ImportResult:
    """Read one htseq-count (or DEXSeq ``dexseq_count.py``) file per sample.

    Each file has two tab-separated columns, feature ID and count, and no header. The
    summary rows are dropped: htseq-count's ``__no_feature``, ``__ambiguous``,
    ``__too_low_aQual``, ``__not_aligned``, ``__alignment_not_unique`` (any ID starting
    with ``__``) and dexseq_count.py's ``_ambiguous``, ``_empty``, ``_lowaqual``,
    ``_notaligned``, which would otherwise be taken for genes.

    Raises
    ------
    InputError
        Missing file, not two columns, different features across samples, or a bad
        count (see :func:`validate_count_matrix`).
    """
    sample_paths = _as_sample_paths(paths, "htseq")
    dropped: dict[str, None] = {}

    def read_one(sample: str, path: Path) -> tuple[pd.Index, dict[str, np.ndarray]]:
        _require_file(path, f"HTSeq count file of sample {sample}")
        frame = _read_or_explain(
            path,
            "An htseq-count file has two tab-separated columns (feature ID, count) and no header.",
            header=False,
            column_names=["gene_id", "count"],
            string_columns=["gene_id"],
        )
        ids = frame["gene_id"]
        summary = ids.str.startswith("__").to_numpy() | ids.isin(_DEXSEQ_SUMMARY_ROWS).to_numpy()
        for name in ids[summary]:
            dropped[name] = None
        frame = frame[~summary]
        index = pd.Index(frame["gene_id"], name="gene_id")
        values = _column_values(frame, "count", index, path)
        _single_column_checks(index, values, sample, path, require_integer=True)
        return index, {"count": values}

    genes, columns = _stack_samples(sample_paths, read_one, "feature ID")
    counts = pd.DataFrame(
        {sample: values["count"] for sample, values in columns.items()}, index=genes
    )
    notes = []
    if dropped:
        notes.append(
            f"dropped {len(dropped)} HTSeq/DEXSeq summary rows ({_preview(list(dropped))}) "
            "from each file"
        )
    counts = _as_int64(counts, notes, "HTSeq files")
    return ImportResult(counts=counts, notes=notes)


def import_star(
    paths: Mapping[str, Path] | Path | str, *, star_strand: str = "unstranded"
) -> ImportResult:
    """Read one STAR ``ReadsPerGene.out.tab`` per sample.

    The four columns are gene ID, then counts for ``unstranded`` (column 2),
    ``forward`` (column 3: reads whose first mate is on the gene's strand, htseq-count
    ``-s yes``) and ``reverse`` (column 4: ``-s reverse``, e.g. Illumina TruSeq
    stranded/dUTP). The ``N_unmapped``, ``N_multimapping``, ``N_noFeature`` and
    ``N_ambiguous`` lines are dropped.

    Raises
    ------
    InputError
        Unknown ``star_strand``, missing file, not four columns, different genes across
        samples, or a bad count.
    """
    if star_strand not in STAR_STRAND_COLUMNS:
        raise InputError(
            f"star_strand={star_strand!r} is not one of {', '.join(STAR_STRAND_COLUMNS)} "
            "(STAR ReadsPerGene.out.tab columns 2, 3, 4)."
        )
    column = STAR_STRAND_COLUMNS[star_strand]
    sample_paths = _as_sample_paths(paths, "star")

    def read_one(sample: str, path: Path) -> tuple[pd.Index, dict[str, np.ndarray]]:
        _require_file(path, f"STAR ReadsPerGene.out.tab of sample {sample}")
        lines = _first_lines(path, n=1)
        if lines and len(lines[0]) != 4:
            raise InputError(
                f"{path} (sample {sample}): line 1 has {len(lines[0])} column(s); a STAR "
                "ReadsPerGene.out.tab has 4 tab-separated columns (gene, unstranded, forward, "
                "reverse). Give the ReadsPerGene.out.tab written by STAR --quantMode GeneCounts."
            )
        frame = _read_or_explain(
            path,
            "A STAR ReadsPerGene.out.tab has 4 tab-separated columns on every line (gene, "
            "unstranded, forward, reverse).",
            header=False,
            column_names=["gene_id", "unstranded", "forward", "reverse"],
            string_columns=["gene_id"],
        )
        frame = frame[~frame["gene_id"].isin(_STAR_SUMMARY_ROWS).to_numpy()]
        index = pd.Index(frame["gene_id"], name="gene_id")
        values = _column_values(frame, column, index, path)
        _single_column_checks(index, values, sample, path, require_integer=True)
        return index, {column: values}

    genes, columns = _stack_samples(sample_paths, read_one, "gene ID")
    counts = pd.DataFrame(
        {sample: values[column] for sample, values in columns.items()}, index=genes
    )
    notes = [
        f"STAR: used the {star_strand} counts (ReadsPerGene.out.tab column "
        f"{2 + list(STAR_STRAND_COLUMNS).index(star_strand)}); dropped the "
        f"{', '.join(_STAR_SUMMARY_ROWS)} rows"
    ]
    counts = _as_int64(counts, notes, "STAR files")
    return ImportResult(counts=counts, notes=notes)


# --------------------------------------------------------------------------- quantifiers


def read_tx2gene(path: str | Path) -> pd.Series:
    """Read a transcript → gene table (first column transcript ID, second gene ID).

    Returns
    -------
    pandas.Series
        Gene IDs indexed by transcript ID. Duplicate transcripts are kept: tximport
        (and :func:`~cohortnorm.tximport.summarize_to_genes`) use the first.
    """
    path = _require_file(Path(path), "tx2gene table")
    lines = _first_lines(path, n=1)
    if not lines or len(lines[0]) < 2:
        raise InputError(
            f"{path}: a tx2gene table needs two columns (transcript ID, gene ID) with a header."
        )
    frame = read_table(path, string_columns=lines[0][:2])
    return _tx2gene_series(frame, str(path))


def _tx2gene_series(tx2gene: pd.DataFrame | pd.Series, source: str) -> pd.Series:
    if isinstance(tx2gene, pd.Series):
        return tx2gene.astype(str)
    if tx2gene.shape[1] < 2:
        raise InputError(
            f"{source}: tx2gene needs two columns (transcript ID, gene ID); found "
            f"{tx2gene.shape[1]}."
        )
    return pd.Series(
        tx2gene.iloc[:, 1].astype(str).to_numpy(),
        index=pd.Index(tx2gene.iloc[:, 0].astype(str), name="transcript_id"),
        name="gene_id",
    )


def _resolve_quantifier_file(path: Path, default_file: str) -> Path:
    if path.is_dir():
        for candidate in (path / default_file, path / f"{default_file}.gz"):
            if candidate.exists():
                return candidate
        raise InputError(f"{path}: directory has no {default_file}. Give the file itself.")
    return path


def _rsem_layout(path: Path) -> _QuantifierLayout:
    lines = _first_lines(path, n=1)
    first = lines[0][0] if lines and lines[0] else ""
    if first == "gene_id":
        return _QUANTIFIERS["rsem_genes"]
    if first == "transcript_id":
        return _QUANTIFIERS["rsem_isoforms"]
    raise InputError(
        f"{path}: not an RSEM result file: the header must start with gene_id "
        f"(*.genes.results) or transcript_id (*.isoforms.results); found {first!r}."
    )


def import_quantifier(
    format_name: str,
    paths: Mapping[str, Path] | Path | str,
    *,
    tx2gene: pd.DataFrame | pd.Series | None = None,
    counts_from_abundance: str = "no",
    tx_out: bool = False,
    ignore_missing_transcripts: bool = False,
) -> ImportResult:
    """Read Salmon, kallisto or RSEM output and summarise transcripts to genes.

    Reproduces tximport 1.26.1 ``tximport(files, type=format_name, tx2gene=tx2gene,
    countsFromAbundance=...)``: per-sample counts, TPM and effective lengths are read,
    checked to list the same transcripts, and summarised with
    :func:`~cohortnorm.tximport.summarize_to_genes`. RSEM transcript lengths below 1 are
    set to 1 (as tximport does for ``type="rsem"``); RSEM ``*.genes.results`` are
    already gene level and are returned as read (``counts_from_abundance`` does not
    apply to them, as in tximport). For ``*.isoforms.results`` without ``tx2gene`` the
    file's own ``gene_id`` column is used. Counts stay fractional: the workflow rounds
    them (as ``DESeqDataSetFromTximport``).

    Parameters
    ----------
    format_name
        ``"salmon"``, ``"kallisto"`` or ``"rsem"``.
    paths
        Sample → file (or the quantifier's output directory).
    tx2gene
        Transcript → gene: a Series, or a DataFrame whose first two columns are the
        transcript and gene IDs.
    counts_from_abundance
        ``"no"``, ``"scaledTPM"`` or ``"lengthScaledTPM"``.
    tx_out
        Return transcript-level estimates (tximport ``txOut=TRUE``).
    ignore_missing_transcripts
        Drop quantified transcripts absent from ``tx2gene`` (tximport's behaviour)
        instead of raising.

    Returns
    -------
    ImportResult
        Float counts, TPM abundance and average-length DataFrames (genes × samples).
    """
    if counts_from_abundance not in COUNTS_FROM_ABUNDANCE:
        raise InputError(
            f"counts_from_abundance={counts_from_abundance!r} is not one of "
            f"{', '.join(COUNTS_FROM_ABUNDANCE)}."
        )
    sample_paths = {
        sample: _resolve_quantifier_file(
            path,
            _QUANTIFIERS["rsem_genes" if format_name == "rsem" else format_name].default_file,
        )
        for sample, path in _as_sample_paths(paths, format_name).items()
    }
    first_path = _require_file(next(iter(sample_paths.values())), f"{format_name} output")
    layout = _rsem_layout(first_path) if format_name == "rsem" else _QUANTIFIERS[format_name]
    level = "gene" if layout is _QUANTIFIERS["rsem_genes"] else "transcript"
    gene_of_transcript: dict[str, pd.Series] = {}

    def read_one(sample: str, path: Path) -> tuple[pd.Index, dict[str, np.ndarray]]:
        _require_file(path, f"{format_name} output of sample {sample}")
        text_columns = [layout.id_column] + ([layout.gene_column] if layout.gene_column else [])
        lines = _first_lines(path, n=1)
        header = lines[0] if lines else []
        wanted = [layout.id_column, layout.counts, layout.abundance, layout.length]
        absent = [name for name in wanted if name not in header]
        if absent:
            raise InputError(
                f"{path} (sample {sample}): not a {format_name} {layout.default_file} file: "
                f"column(s) {', '.join(absent)} missing; the header is {' '.join(header)!r}."
            )
        frame = _read_or_explain(
            path,
            f"A {format_name} {layout.default_file} has the same number of tab-separated "
            "fields on every line.",
            string_columns=text_columns,
        )
        index = pd.Index(frame[layout.id_column], name=f"{level}_id")
        _check_labels(index, [sample], f"{path} (sample {sample})")
        values = {}
        for column in (layout.counts, layout.abundance, layout.length):
            data = _column_values(frame, column, index, path).astype(float)
            _check_count_values(
                data.reshape(-1, 1),
                index,
                [sample],
                f"{path} (column {column})",
                require_integer=False,
                what=column,
                allow_all_zero=column != layout.counts,
            )
            values[column] = data
        if layout.gene_column and not gene_of_transcript:
            gene_of_transcript["rsem"] = pd.Series(
                frame[layout.gene_column].astype(str).to_numpy(), index=index
            )
        return index, values

    features, columns = _stack_samples(sample_paths, read_one, f"{level} ID")

    def matrix(column: str) -> pd.DataFrame:
        return pd.DataFrame(
            {sample: values[column] for sample, values in columns.items()}, index=features
        )

    counts, abundance, length = (
        matrix(layout.counts),
        matrix(layout.abundance),
        matrix(layout.length),
    )
    notes: list[str] = []
    if np.any(counts.to_numpy() != np.round(counts.to_numpy())):
        notes.append(f"{format_name}: estimated counts are fractional; the workflow rounds them")
    if level == "gene":
        if counts_from_abundance != "no":
            notes.append(
                "RSEM genes.results are gene level: counts_from_abundance="
                f"{counts_from_abundance!r} needs transcript-level input and was not applied"
            )
        counts.index.name = abundance.index.name = length.index.name = "gene_id"
        return ImportResult(counts=counts, lengths=length, abundance=abundance, notes=notes)
    if format_name == "rsem":
        short = length.to_numpy() < 1
        if short.any():
            length = length.clip(lower=1)
            notes.append(f"RSEM: {int(short.sum())} effective lengths below 1 set to 1 (tximport)")
    if tx_out:
        if counts_from_abundance != "no":
            counts = make_counts_from_abundance(counts, abundance, length, counts_from_abundance)
            notes.append(f"counts rebuilt from abundance ({counts_from_abundance})")
        return ImportResult(counts=counts, lengths=length, abundance=abundance, notes=notes)
    if tx2gene is None:
        if "rsem" not in gene_of_transcript:
            raise InputError(
                f"{format_name} output is per transcript: give a tx2gene table (transcript ID, "
                "gene ID) to summarise it to genes."
            )
        mapping = gene_of_transcript["rsem"]
        notes.append("RSEM isoforms: genes taken from the files' gene_id column")
    else:
        mapping = _tx2gene_series(tx2gene, "tx2gene")
    n_transcripts = len(features)
    gene_counts, gene_abundance, gene_length = summarize_to_genes(
        counts,
        abundance,
        length,
        mapping,
        counts_from_abundance,
        ignore_missing=ignore_missing_transcripts,
    )
    notes.append(
        f"summarised {n_transcripts} transcripts to {len(gene_counts)} genes (tximport, "
        f"countsFromAbundance={counts_from_abundance})"
    )
    return ImportResult(
        counts=gene_counts, lengths=gene_length, abundance=gene_abundance, notes=notes
    )


# --------------------------------------------------------------------------- AnnData


def import_h5ad(path: str | Path, *, layer: str | None = None) -> ImportResult:
    """Read raw counts from an AnnData ``.h5ad`` file (samples × genes).

    ``obs_names`` are the samples and ``var_names`` the genes; the counts are ``X`` or
    the layer ``layer`` (dense or sparse). The genes × samples result is the transpose
    of the dense samples × genes array, a view (no copy) when it is stored dense.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown layer, or any problem
        :func:`validate_count_matrix` reports (integers required).
    """
    import h5py
    from anndata.io import read_elem

    path = _require_file(Path(path), "AnnData .h5ad file")
    source = str(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{source}: not an HDF5/AnnData file ({error}).") from None
    with handle:
        for key in ("obs", "var"):
            if key not in handle:
                raise InputError(f"{source}: no {key!r} group; is this an AnnData .h5ad file?")
        samples = read_elem(handle["obs"]).index.astype(str)
        genes = read_elem(handle["var"]).index.astype(str)
        if layer is None:
            if "X" not in handle:
                raise InputError(
                    f"{source}: X is empty; name the layer holding the raw counts with "
                    "counts.h5ad_layer."
                )
            element = handle["X"]
        else:
            layers = handle.get("layers")
            if layers is None or layer not in layers:
                available = sorted(layers) if layers is not None else []
                raise InputError(
                    f"{source}: no layer {layer!r} (layers: {available or 'none'}). Set "
                    "counts.h5ad_layer to the layer holding raw counts, or null for X."
                )
            element = layers[layer]
        matrix = read_elem(element)
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    matrix = np.asarray(matrix)
    if matrix.shape != (len(samples), len(genes)):
        raise InputError(
            f"{source}: the count matrix has shape {matrix.shape}, not samples × genes "
            f"({len(samples)} × {len(genes)})."
        )
    counts = pd.DataFrame(
        matrix.T, index=pd.Index(genes, name="gene_id"), columns=list(samples), copy=False
    )
    validate_count_matrix(counts, source, require_integer=True)
    notes: list[str] = [
        f"{source}: read {'X' if layer is None else f'layer {layer!r}'} "
        f"({matrix.dtype}, {len(samples)} samples × {len(genes)} genes)"
    ]
    if matrix.dtype.kind != "i":
        # Validated whole numbers (h5ad stores counts as float32 more often than not).
        counts = pd.DataFrame(
            matrix.T.astype(np.int64), index=counts.index, columns=counts.columns, copy=False
        )
    return ImportResult(counts=counts, notes=notes)


# --------------------------------------------------------------------------- dispatcher


def import_counts(
    format: str,
    paths: Mapping[str, Path] | Path | str,
    *,
    samples: Sequence[str] | None = None,
    star_strand: str = "unstranded",
    tx2gene: pd.DataFrame | pd.Series | None = None,
    counts_from_abundance: str = "no",
    tx_out: bool = False,
    ignore_missing_transcripts: bool = False,
    h5ad_layer: str | None = None,
) -> ImportResult:
    """Read counts in any supported format (see the module docstring).

    Parameters
    ----------
    format
        One of :data:`FORMATS` (case-insensitive).
    paths
        One path for ``matrix`` and ``featurecounts``; a mapping sample → path for the
        per-sample formats.
    samples
        featureCounts only: sample names to match to the BAM columns.
    star_strand
        STAR only: ``unstranded``, ``forward`` or ``reverse``.
    tx2gene, counts_from_abundance, tx_out, ignore_missing_transcripts
        Quantifiers only; see :func:`import_quantifier`.
    h5ad_layer
        h5ad only: the layer holding the counts (``None`` for ``X``).

    Raises
    ------
    InputError
        Unknown format, wrong kind of ``paths``, or any problem found in the files.
    """
    name = str(format).lower()
    if name not in FORMATS:
        raise InputError(f"unknown counts format {format!r}: use one of {', '.join(FORMATS)}.")
    if name in ("matrix", "featurecounts", "h5ad"):
        if isinstance(paths, Mapping):
            if len(paths) != 1:
                raise InputError(
                    f"format {name!r} reads one table holding every sample: give one path, "
                    f"not {len(paths)} files."
                )
            paths = next(iter(paths.values()))
        if name == "matrix":
            return import_matrix(paths)
        if name == "h5ad":
            return import_h5ad(paths, layer=h5ad_layer)
        return import_featurecounts(paths, samples=samples)
    if name == "htseq":
        return import_htseq(paths)
    if name == "star":
        return import_star(paths, star_strand=star_strand)
    return import_quantifier(
        name,
        paths,
        tx2gene=tx2gene,
        counts_from_abundance=counts_from_abundance,
        tx_out=tx_out,
        ignore_missing_transcripts=ignore_missing_transcripts,
    )
