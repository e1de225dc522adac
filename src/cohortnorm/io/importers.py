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

Samples are named exactly, never guessed: a matrix column or an ``obs_name`` is the
sample name; a featureCounts column is the BAM file name without directory and aligner
ending (:func:`bam_sample_name`), which must equal a sample-sheet name; per-sample files
come from the ``{sample}`` path pattern. :attr:`ImportResult.sources` records where each
sample's counts came from. Gene and transcript IDs are always read as text.

Every problem with the input raises :class:`~cohortnorm.errors.InputError` naming the
file, the gene or line and the sample, and what to fix. The checks are vectorised: a
60,000 × 1,000 matrix costs little more than pyarrow's parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError, preview
from cohortnorm.io.tables import (
    check_input_file,
    explain_read_errors,
    open_text,
    read_table,
    read_text_matrix,
    sniff_delimiter,
    split_line,
    split_thousands,
)
from cohortnorm.registry import FORMATS, load
from cohortnorm.tximport import (
    COUNTS_FROM_ABUNDANCE,
    make_counts_from_abundance,
    summarize_to_genes,
)
from cohortnorm.validation import side_by_side

# Counts are int64: 2**63 and above do not fit (float64 holds 2**63 - 1 as 2**63).
_INT64_LIMIT = 2**63
# STAR ReadsPerGene.out.tab columns 2-4: unstranded; reads whose 1st read strand matches
# the gene (htseq-count -s yes); reads whose 2nd read strand matches (htseq-count -s reverse).
STAR_STRANDS: tuple[str, ...] = ("unstranded", "forward", "reverse")
_STAR_SUMMARY_ROWS = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
# dexseq_count.py ends its files with these four rows instead of htseq-count's __ rows.
_DEXSEQ_SUMMARY_ROWS = ("_ambiguous", "_empty", "_lowaqual", "_notaligned")
_GENE_ID_NAMES = frozenset(
    {"gene_id", "geneid", "gene", "genes", "ensembl_gene_id", "gene_name", "gene_symbol", "id"}
)
_FEATURECOUNTS_ANNOTATION = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
#: File-name endings taken off a BAM/SAM/CRAM column (after its directory) to give the
#: sample name, longest first; one is removed, then a trailing ``.``, ``_`` or ``-``.
#: STAR writes ``<prefix>Aligned.sortedByCoord.out.bam``, ``Aligned.out.bam`` (or
#: ``.sam``) and ``Aligned.toTranscriptome.out.bam``, the prefix usually ending in ``.``
#: or ``_``; samtools pipelines and nf-core/rnaseq add ``.sorted``, ``.sort``,
#: ``.markdup``, ``.dedup`` or ``.umi_dedup`` before ``.bam``. Anything else stays in the
#: name, which must then equal a sample-sheet name exactly.
BAM_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        {
            f"{stem}.{ext}"
            for ext in ("bam", "sam", "cram")
            for stem in (
                "Aligned.sortedByCoord.out",
                "Aligned.toTranscriptome.out",
                "Aligned.out",
                "sortedByCoord.out",
                "markdup.sorted",
                "sorted.markdup",
                "umi_dedup.sorted",
                "dedup.sorted",
                "sorted.dedup",
                "sorted",
                "sort",
                "markdup",
                "dedup",
            )
        }
        | {".bam", ".sam", ".cram"},
        key=len,
        reverse=True,
    )
)
# 1,000 / 12,345,678 / 1,000.5 / 1 000 / 1'000: a number with grouped thousands, which
# is text to a CSV reader. (1.000 for a thousand cannot be told from one: it reads as 1.)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}([,' \u00a0\u202f]\d{3})+([.,]\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
# Characters the tab-separated outputs cannot hold in a gene ID or sample name.
_FORBIDDEN_IN_NAMES = {
    '"': 'a double quote (")',
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a line break",
}


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
    sources
        Sample → where its counts came from: the column name (matrix, featureCounts,
        h5ad ``obs_names``) or the file (per-sample formats).
    warnings
        Options that do not apply to this input and were not used, for the run log.
    """

    counts: pd.DataFrame
    lengths: pd.DataFrame | pd.Series | None = None
    abundance: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _require_file(path: Path, what: str, *, text: bool = True) -> Path:
    return check_input_file(path, what, text=text)


def _first_lines(path: Path, comment: str | None = None, n: int = 2) -> list[list[str]]:
    """The first ``n`` non-comment lines, split on the file's delimiter (quotes as CSV)."""
    delimiter = sniff_delimiter(path)
    lines: list[list[str]] = []
    with explain_read_errors(path), open_text(path) as handle:
        for line in handle:
            if comment is not None and line.startswith(comment):
                continue
            lines.append([cell.strip() for cell in split_line(line, delimiter)])
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
            f"{source}: sample column name(s) appear more than once: {preview(duplicates)}. "
            "Give every sample a unique column name."
        )
    if genes.has_duplicates:
        duplicates = list(dict.fromkeys(genes[genes.duplicated()]))
        raise InputError(
            f"{source}: {len(duplicates)} gene ID(s) appear on more than one row: "
            f"{preview(duplicates)}. Sum or remove the duplicate rows so each gene appears once."
        )
    text = genes.astype(str)
    empty = text.str.strip() == ""
    if empty.any():
        raise InputError(
            f"{source}: {int(empty.sum())} row(s) have an empty gene ID (the first is data row "
            f"{int(np.argmax(empty)) + 1}). Fill in or remove those rows."
        )
    _check_characters(text, samples, source)


def _check_characters(
    ids: pd.Index, samples: Sequence[object], source: str, what: str = "gene ID"
) -> None:
    """Refuse IDs and sample names holding a quote, tab or line break (TSV outputs)."""
    text = ids.astype(str)
    for character, described in _FORBIDDEN_IN_NAMES.items():
        holds = np.asarray(text.str.contains(character, regex=False))
        if holds.any():
            row = int(np.argmax(holds))
            raise InputError(
                f"{source}: {what} {text[row]!r} (data row {row + 1}) contains {described}, "
                f"which the tab-separated outputs cannot hold ({int(holds.sum())} such ID(s)). "
                f"Remove it from the {what}s."
            )
        for sample in map(str, samples):
            if character in sample:
                raise InputError(
                    f"{source}: sample name {sample!r} contains {described}, which the "
                    "tab-separated outputs cannot hold. Remove it from the column name and "
                    "the sample sheet."
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
            where = f"{source}: gene {frame.index[row]}, sample {frame.columns[position]}"
            text = str(column.iloc[row]).strip()
            if _THOUSANDS.fullmatch(text):
                raise InputError(
                    f"{where}: {text!r} is written with a thousands separator "
                    f"({int(bad.sum())} such cell(s) in that column). Thousands separators "
                    "are not allowed: export the table without them (plain 1000, not 1,000)."
                )
            if _DECIMAL_COMMA.fullmatch(text):
                raise InputError(
                    f"{where}: {text!r} has a decimal comma ({int(bad.sum())} such cell(s) in "
                    "that column). Export the table with a decimal point."
                )
            raise InputError(
                f"{where}: {text!r} is not a number ({int(bad.sum())} such cell(s) in that "
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
    if values.dtype.kind == "f":
        huge = values >= _INT64_LIMIT
        if huge.any():
            cell = values[np.unravel_index(int(np.argmax(huge)), values.shape)]
            raise InputError(
                f"{source}: {_cell_location(huge, genes, samples)}: {cell:.6g} is too large "
                f"for a read count ({int(huge.sum())} such cell(s); the largest count this "
                f"tool holds is {_INT64_LIMIT - 1:,}). Check that this column holds read counts "
                "(not IDs, coordinates or numbers glued together)."
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
                f"{source}: sample(s) {preview(names)} have 0 for every gene. Remove them "
                "from the sample sheet or check the counting step."
            )


def validate_count_matrix(frame: pd.DataFrame, source: str, *, require_integer: bool) -> None:
    """Check a genes × samples count matrix; raise on the first problem found.

    Checks, in order: at least one gene and one sample; unique sample names; unique,
    non-empty gene IDs; every cell a number; no missing or infinite cell; no negative
    count; whole numbers when ``require_integer``; no sample whose counts are all zero.
    The R references accept some of these (edgeR takes non-integers and duplicate
    genes) or fail later with a less precise message; see docs/methods.md §7.

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
            raise InputError(f"{str(error).rstrip('.')}. {expectation}") from None
        raise


# --------------------------------------------------------------------------- matrix


def import_matrix(path: str | Path) -> ImportResult:
    """Read a genes × samples count table (TSV or CSV, optionally gzipped).

    The first column holds the gene IDs, the header names the samples; the IDs are read
    as text (``007`` stays ``007``). Excel's "CSV UTF-8" (byte-order mark, CRLF), R's
    quoted CSV, CR-only line ends and a tab ending every line are read as meant.

    Raises
    ------
    InputError
        Missing or unreadable file, a header one field short (R's ``write.table`` with
        row names), an unnamed column, a gene-ID column that is not first, a first
        column of numbers, or any problem :func:`validate_count_matrix` reports
        (integers required).
    """
    path = _require_file(Path(path), "count matrix")
    source = str(path)
    notes: list[str] = []
    lines = _first_lines(path, n=20)
    if not lines:
        raise InputError(f"{source}: the file is empty.")
    header = lines[0]
    if len(header) == 1 and header[0].count(";") >= 1:
        raise InputError(
            f"{source}: the columns are separated by semicolons (Excel's CSV in locales with "
            "a decimal comma). Save the sheet as tab-delimited text, or as CSV with commas "
            "between columns and decimal points."
        )
    trailing = len(header) > 2 and header[-1] == ""
    if len(lines) > 1 and len(lines[1]) == len(header) + 1:
        # One field too many on line 2: a trailing delimiter, a number cut at its
        # thousands separator (some lines only, unless every line has one), or row names.
        rows = lines[1:]
        every_row_longer = all(len(row) == len(header) + 1 for row in rows)
        every_row_split = all(split_thousands(row) for row in rows)
        if lines[1][-1] == "":
            raise InputError(
                f"{source}: line 2 ends with a tab or comma (an empty last field) that the "
                "header does not have. Remove the trailing delimiters from the rows (or end "
                "every line, the header too, with one)."
            )
        if split_thousands(lines[1]) and (every_row_split or not every_row_longer):
            raise InputError(
                f"{source}: line 2 has {len(lines[1])} comma-separated fields but the header "
                f"has {len(header)}; it looks like {split_thousands(lines[1])} is a number "
                "written with a thousands separator, which splits it into two fields. "
                "Thousands separators are not allowed: export the table without them (plain "
                "1000, not 1,000)."
            )
        raise InputError(
            f"{source}: the header has {len(header)} fields but the rows have {len(lines[1])}: "
            "the gene-ID column has no name (R's write.table with row names). Add a first "
            "header field such as gene_id (in R: write.table(..., col.names = NA))."
        )
    named = header[:-1] if trailing else header
    unnamed = [i for i, name in enumerate(named) if name == "" and i > 0]
    if unnamed:
        raise InputError(
            f"{source}: column {unnamed[0] + 1} of the header has no name. Name every sample "
            "column (the first line holds the sample names)."
        )
    if len(set(named)) != len(named):
        seen = pd.Index(named)
        duplicates = list(dict.fromkeys(seen[seen.duplicated()]))
        raise InputError(
            f"{source}: column name(s) appear more than once in the header: "
            f"{preview(duplicates)}. Give every sample a unique column name."
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
    notes += counts.attrs.pop("notes", [])
    validate_count_matrix(counts, source, require_integer=True)
    counts = _as_int64(counts, notes, source)
    sources = {str(name): str(name) for name in counts.columns}
    return ImportResult(counts=counts, notes=notes, sources=sources)


# --------------------------------------------------------------------------- featureCounts


# STAR's own endings follow the --outFileNamePrefix directly (S1Aligned.out.bam); the
# others must follow a ".", "_" or "-" so that "Unsorted.bam" keeps its name.
_STAR_STEMS = ("Aligned.sortedByCoord.out", "Aligned.toTranscriptome.out", "Aligned.out")


def bam_sample_name(column: str) -> str:
    """The sample name in a featureCounts BAM column: the file name without its
    directory and without one aligner ending from :data:`BAM_SUFFIXES`.

    ``/data/S1.bam``, ``star/S1_Aligned.sortedByCoord.out.bam``,
    ``star/S1.Aligned.sortedByCoord.out.bam``, ``S1.markdup.sorted.bam`` and
    ``star/S1/Aligned.sortedByCoord.out.bam`` (STAR in one directory per sample) all
    give ``S1``. The name is used as is: it must equal a sample-sheet name exactly.
    """
    parts = [part for part in column.strip().replace("\\", "/").split("/") if part]
    if not parts:
        return column
    base = parts[-1]
    for suffix in BAM_SUFFIXES:
        if not base.endswith(suffix):
            continue
        stem = base[: -len(suffix)]
        if stem and not suffix.startswith((".", *_STAR_STEMS)) and stem[-1] not in "._-":
            continue
        stem = stem.rstrip("._-")
        if stem:
            return stem
        if len(parts) > 1:  # the file is named by the aligner alone: its folder is the sample
            return parts[-2]
        return base
    return base


def _name_bam_columns(columns: Sequence[str], source: str) -> list[str]:
    """Sample names of the BAM columns; two columns giving one name stop the run."""
    names = [bam_sample_name(column) for column in columns]
    by_name: dict[str, list[str]] = {}
    for name, column in zip(names, columns, strict=True):
        by_name.setdefault(name, []).append(column)
    clashes = {name: cols for name, cols in by_name.items() if len(cols) > 1}
    if clashes:
        listing = "; ".join(
            f"{' and '.join(repr(c) for c in cols)} both give {name!r}"
            for name, cols in list(clashes.items())[:5]
        )
        raise InputError(
            f"{source}: BAM columns are ambiguous: {listing}. Sample names are the BAM file "
            "names without their directory and aligner ending, so each sample needs its own "
            "file name: count each BAM once, or rename the BAM files and run featureCounts "
            "again."
        )
    return names


def _match_to_sheet(
    names: Sequence[str], sources: Mapping[str, str], samples: Sequence[str], source: str
) -> None:
    """Every sheet sample must be exactly one of ``names``; else list both sides."""
    present = set(names)
    missing = [sample for sample in samples if sample not in present]
    if missing:
        raise InputError(
            f"{source}: {len(missing)} sample(s) of the sample sheet match no BAM column: "
            f"{preview(missing)}. A BAM column gives the sample name of its file, without "
            "the directory and the aligner ending (.bam, _Aligned.sortedByCoord.out.bam, "
            ".sorted.bam, …), and that name must equal the sheet's exactly (S1 is not "
            "S10). Rename the samples in the sheet to the names on the right, or fix the "
            "BAM file names:\n" + side_by_side(samples, names, sources)
        )


def import_featurecounts(path: str | Path, *, samples: Sequence[str] | None = None) -> ImportResult:
    """Read a featureCounts table; return its counts and its ``Length`` column.

    Each BAM column is named by :func:`bam_sample_name` (the file name without its
    directory and aligner ending). With ``samples`` (the sample sheet), every sample
    must equal one of those names exactly; there is no prefix or fuzzy matching, so a
    typo stops the run rather than picking another sample's column. Columns left over
    are returned; the caller decides (``counts.subset_samples``).

    Raises
    ------
    InputError
        Not a featureCounts table, two columns giving one sample name, a sheet sample
        without its column (both lists shown side by side), or any problem
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
    if len(bam_columns) > 1 and bam_columns[-1] == "":
        bam_columns = bam_columns[:-1]  # a tab ends every line: read_table drops it
    if len(set(bam_columns)) != len(bam_columns):
        index = pd.Index(bam_columns)
        raise InputError(
            f"{source}: BAM column(s) appear more than once: "
            f"{preview(list(dict.fromkeys(index[index.duplicated()])))}. Count each BAM once."
        )
    names = _name_bam_columns(bam_columns, source)
    sources = dict(zip(names, bam_columns, strict=True))
    if samples is not None:
        _match_to_sheet(names, sources, samples, source)
    frame = _read_or_explain(
        path,
        "featureCounts tables have the same number of tab-separated fields on every line.",
        comment="#",
        string_columns=["Geneid", "Chr", "Start", "End", "Strand"],
    )
    notes += frame.attrs.get("notes", [])
    genes = pd.Index(frame["Geneid"].astype(str), name="gene_id")
    if names != bam_columns:
        notes.append(f"{source}: sample names taken from the BAM file names ({preview(names)})")
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
    return ImportResult(counts=counts, lengths=lengths, notes=notes, sources=sources)


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
            f"dropped {len(dropped)} HTSeq/DEXSeq summary rows ({preview(list(dropped))}) "
            "from each file"
        )
    counts = _as_int64(counts, notes, "HTSeq files")
    sources = {sample: str(path) for sample, path in sample_paths.items()}
    return ImportResult(counts=counts, notes=notes, sources=sources)


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
    if star_strand not in STAR_STRANDS:
        raise InputError(
            f"star_strand={star_strand!r} is not one of {', '.join(STAR_STRANDS)} "
            "(STAR ReadsPerGene.out.tab columns 2, 3, 4)."
        )
    column = star_strand  # the name of its column in the frame read below
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
        f"{2 + STAR_STRANDS.index(star_strand)}); dropped the "
        f"{', '.join(_STAR_SUMMARY_ROWS)} rows"
    ]
    counts = _as_int64(counts, notes, "STAR files")
    sources = {sample: str(path) for sample, path in sample_paths.items()}
    return ImportResult(counts=counts, notes=notes, sources=sources)


# --------------------------------------------------------------------------- quantifiers


# Words of a tx2gene header (tximport's examples: TXNAME GENEID; biomaRt:
# ensembl_transcript_id ensembl_gene_id; and transcript_id, gene_id, target_id, …).
_TX2GENE_HEADER_WORDS = frozenset(
    {
        "transcript", "transcripts", "transcript_id", "transcriptid", "tx", "txid", "tx_id",
        "txname", "tx_name", "target", "target_id", "name", "id", "gene", "genes", "gene_id",
        "geneid", "gene_name", "genename", "symbol", "gene_symbol", "ensembl_transcript_id",
        "ensembl_gene_id", "enstxp", "ensgene", "ensembl", "stable", "version",
    }
)  # fmt: skip


def _looks_like_header(cells: Sequence[str]) -> bool:
    """Whether a first row names its columns: a cell is a header word, or splits into them."""
    for cell in cells:
        words = [w for w in re.split(r"[^0-9a-z]+", cell.lower()) if w]
        if cell.lower() in _TX2GENE_HEADER_WORDS or (
            words and all(w in _TX2GENE_HEADER_WORDS for w in words)
        ):
            return True
    return False


def read_tx2gene(path: str | Path, notes: list[str] | None = None) -> pd.Series:
    """Read a transcript → gene table (first column transcript ID, second gene ID).

    With or without a header line: the first row is a header when one of its first two
    cells is a column name such as ``transcript_id``, ``TXNAME``, ``target_id``,
    ``gene_id`` or ``GENEID`` (see ``_TX2GENE_HEADER_WORDS``); otherwise it is data, as
    ``ENST00000456328.2  ENSG00000223972.5`` is. Taking a header for data adds one
    mapping of a transcript that is not quantified, which changes nothing; the reverse
    would lose a transcript, so only header words make a header. What was decided is
    added to ``notes``. IDs are read as text.

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
            f"{path}: a tx2gene table needs two columns (transcript ID, gene ID) separated by "
            f"a tab or a comma; the first line has {len(lines[0]) if lines else 0}."
        )
    first = lines[0]
    width = len(first)
    if _looks_like_header(first[:2]):
        frame = read_table(path, string_positions=tuple(range(width)))
        detected = f"a header line ({first[0]}, {first[1]})"
    else:
        names = [f"column{i + 1}" for i in range(width)]
        frame = read_table(path, header=False, column_names=names, string_columns=names)
        detected = f"no header line (the first row, {first[0]} → {first[1]}, is a mapping)"
    if notes is not None:
        notes.append(f"{path}: tx2gene table read with {detected}")
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


def _read_quantifier_files(
    format_name: str, sample_paths: dict[str, Path], layout: _QuantifierLayout, level: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]:
    """Counts, abundance and lengths (features × samples) of a quantifier's files.

    The fourth value maps ``"rsem"`` to the isoforms files' gene of each transcript.
    """
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
    return counts, abundance, length, gene_of_transcript


def _rsem_gene_level_warnings(counts_from_abundance: str, tx2gene: object) -> list[str]:
    """Which transcript-level options RSEM genes.results files do not use."""
    warnings = []
    if counts_from_abundance != "no":
        warnings.append(
            f"counts.counts_from_abundance is {counts_from_abundance!r}, but RSEM "
            "genes.results files are gene level and rebuilding counts from abundance "
            "needs transcript-level input (tximport ignores it too): it was not applied. "
            "Give the isoforms.results files to use it, or set it to 'no'."
        )
    if tx2gene is not None:
        warnings.append(
            "counts.tx2gene is set, but RSEM genes.results files are already gene level: "
            "the table was not used."
        )
    return warnings


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
    counts, abundance, length, gene_of_transcript = _read_quantifier_files(
        format_name, sample_paths, layout, level
    )
    notes: list[str] = []
    warnings: list[str] = []
    sources = {sample: str(path) for sample, path in sample_paths.items()}
    if np.any(counts.to_numpy() != np.round(counts.to_numpy())):
        notes.append(f"{format_name}: estimated counts are fractional; the workflow rounds them")
    if level == "gene":
        warnings += _rsem_gene_level_warnings(counts_from_abundance, tx2gene)
        counts.index.name = abundance.index.name = length.index.name = "gene_id"
        return ImportResult(
            counts=counts,
            lengths=length,
            abundance=abundance,
            notes=notes,
            sources=sources,
            warnings=warnings,
        )
    if format_name == "rsem":
        short = length.to_numpy() < 1
        if short.any():
            length = length.clip(lower=1)
            notes.append(f"RSEM: {int(short.sum())} effective lengths below 1 set to 1 (tximport)")
    if tx_out:
        if counts_from_abundance != "no":
            counts = make_counts_from_abundance(counts, abundance, length, counts_from_abundance)
            notes.append(f"counts rebuilt from abundance ({counts_from_abundance})")
        return ImportResult(
            counts=counts, lengths=length, abundance=abundance, notes=notes, sources=sources
        )
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
    _check_characters(pd.Index(mapping.to_numpy()), [], "tx2gene")
    n_transcripts = len(counts)
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
        counts=gene_counts,
        lengths=gene_length,
        abundance=gene_abundance,
        notes=notes,
        sources=sources,
    )


# --------------------------------------------------------------------------- AnnData


# Layer names that usually hold the raw counts, tried first when X is not counts.
_COUNT_LAYER_NAMES = ("counts", "raw_counts", "raw", "count", "umi_counts", "spliced")


def import_salmon(paths: Mapping[str, Path] | Path | str, **options: object) -> ImportResult:
    """Salmon ``quant.sf`` files: :func:`import_quantifier` with ``"salmon"``."""
    return import_quantifier("salmon", paths, **options)  # type: ignore[arg-type]


def import_kallisto(paths: Mapping[str, Path] | Path | str, **options: object) -> ImportResult:
    """kallisto ``abundance.tsv`` files: :func:`import_quantifier` with ``"kallisto"``."""
    return import_quantifier("kallisto", paths, **options)  # type: ignore[arg-type]


def import_rsem(paths: Mapping[str, Path] | Path | str, **options: object) -> ImportResult:
    """RSEM ``*.results`` files: :func:`import_quantifier` with ``"rsem"``."""
    return import_quantifier("rsem", paths, **options)  # type: ignore[arg-type]


def _whole_number_layers(handle, skip: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """Layers of an open .h5ad holding only whole, non-negative numbers (likely counts)."""
    from anndata.io import read_elem

    layers = handle.get("layers")
    if layers is None:
        return []
    order = sorted(layers, key=lambda n: (n not in _COUNT_LAYER_NAMES, n.lower()))
    found = []
    for name in order:
        if name == skip:
            continue
        values = read_elem(layers[name])
        values = values.data if hasattr(values, "data") else np.asarray(values)
        values = np.asarray(values)
        if values.dtype.kind in "iub" or (
            values.dtype.kind == "f"
            and np.isfinite(values).all()
            and (values == np.floor(values)).all()
        ):
            if values.size == 0 or values.min() >= 0:
                found.append(name)
    return found


def _not_counts_message(  # type: ignore[no-untyped-def]
    source: str, handle, layer, matrix, fractional, samples, genes
) -> str:
    row, column = np.unravel_index(int(np.argmax(fractional)), fractional.shape)
    where = "X" if layer is None else f"layer {layer!r}"
    message = (
        f"{source}: {where} holds values that are not whole numbers (e.g. "
        f"{matrix[row, column]:.6g} for sample {samples[row]}, gene {genes[column]}; "
        f"{int(fractional.sum())} such cell(s)), so it is not raw read counts (normalized or "
        "log values?)."
    )
    candidates = _whole_number_layers(handle, layer)
    if candidates:
        listing = ", ".join(repr(name) for name in candidates)
        message += (
            f" The layer(s) {listing} hold whole numbers: to use the first, set "
            f"counts.h5ad_layer: {candidates[0]}"
        )
        if layer is not None and "X" in handle:
            message += " (or null for X)"
        return message + "."
    return message + (
        " No layer of this file holds whole numbers: store the raw counts in X or in a layer "
        "and set counts.h5ad_layer to its name."
    )


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

    path = _require_file(Path(path), "AnnData .h5ad file", text=False)
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
        if matrix.dtype.kind == "f" and matrix.shape == (len(samples), len(genes)):
            fractional = np.isfinite(matrix) & (matrix != np.floor(matrix))
            if fractional.any():
                raise InputError(
                    _not_counts_message(source, handle, layer, matrix, fractional, samples, genes)
                )
    if matrix.shape != (len(samples), len(genes)):
        raise InputError(
            f"{source}: the count matrix has shape {matrix.shape}, not samples × genes "
            f"({len(samples)} × {len(genes)})."
        )
    counts = pd.DataFrame(
        matrix.T, index=pd.Index(genes, name="gene_id"), columns=list(samples), copy=False
    )
    validate_count_matrix(counts, source, require_integer=True)
    sources = {str(sample): str(sample) for sample in samples}
    notes: list[str] = [
        f"{source}: read {'X' if layer is None else f'layer {layer!r}'} "
        f"({matrix.dtype}, {len(samples)} samples × {len(genes)} genes)"
    ]
    if matrix.dtype.kind != "i":
        # Validated whole numbers (h5ad stores counts as float32 more often than not).
        counts = pd.DataFrame(
            matrix.T.astype(np.int64), index=counts.index, columns=counts.columns, copy=False
        )
    return ImportResult(counts=counts, notes=notes, sources=sources)


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
        featureCounts only: the sample sheet's names, each of which must equal the
        name of one BAM column exactly (see :func:`import_featurecounts`).
    star_strand
        STAR only: ``unstranded``, ``forward`` or ``reverse``.
    tx2gene, counts_from_abundance, tx_out, ignore_missing_transcripts
        Quantifiers only; see :func:`import_quantifier`. Given to another format they
        are not used, and :attr:`ImportResult.warnings` says so.
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
    entry = FORMATS[name]
    given = {
        "samples": samples,
        "star_strand": star_strand,
        "tx2gene": tx2gene,
        "counts_from_abundance": counts_from_abundance,
        "tx_out": tx_out,
        "ignore_missing_transcripts": ignore_missing_transcripts,
        "h5ad_layer": h5ad_layer,
    }
    if entry.layout == "one_file" and isinstance(paths, Mapping):
        if len(paths) != 1:
            raise InputError(
                f"format {name!r} reads one table holding every sample: give one path, "
                f"not {len(paths)} files."
            )
        paths = next(iter(paths.values()))
    reader = load(entry.reader)
    result = reader(paths, **{keyword: given[option] for keyword, option in entry.options.items()})
    if entry.kind != "quantifier":
        result.warnings += _unused_quantifier_options(name, tx2gene, counts_from_abundance)
    if not result.sources:
        result.sources = {str(column): str(column) for column in result.counts.columns}
    return result


def _unused_quantifier_options(name: str, tx2gene: object, counts_from_abundance: str) -> list[str]:
    """Say which transcript-level options a gene-count format does not use, and why."""
    warnings = []
    what = f"format {name!r} reads gene-level read counts"
    if tx2gene is not None:
        warnings.append(
            f"counts.tx2gene is set, but {what}: the table was not used (it applies to "
            "salmon, kallisto and RSEM isoforms.results). Remove it from the config."
        )
    if counts_from_abundance != "no":
        warnings.append(
            f"counts.counts_from_abundance is {counts_from_abundance!r}, but {what}, which "
            "have no abundance to rebuild counts from: it was not applied (it applies to "
            "salmon, kallisto and RSEM isoforms.results). Set it to 'no'."
        )
    return warnings
