"""Reading and writing the workflow's tables.

Tables are read with pyarrow's multithreaded CSV reader (gzip, CRLF and comma or tab
delimiters are handled) and written atomically: to a temporary file in the same
directory, then renamed, so that a killed job never leaves a half-written table under
its final name. Floats are written in the shortest form that round-trips exactly (a
float32 matrix in float32's shortest form, which reads back as the same float32 values),
so two runs of the same input give the same bytes.

Genes × samples matrices (:func:`read_matrix`, :func:`write_matrix`,
:class:`MatrixWriter`) are TSV, Parquet or Arrow IPC, chosen by the file's extension. All are
read into one numpy array without an intermediate pandas copy (each column is copied
once and its Arrow buffer released straight away) and written in blocks of genes, so
that a 60,000 × 17,000 cohort never needs more than one dense copy plus a block.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cohortnorm.blocks import cell_slices
from cohortnorm.errors import InputError
from cohortnorm.io.matrix_files import (  # noqa: F401  (re-exported)
    MATRIX_FORMATS,
    MatrixWriter,
    arrow_matrix,
    atomic_output,
    check_finite,
    columns_to_array,
    convert_matrix,
    damaged_arrow_matrix,
    matrix_format,
    matrix_writer,
)

#: Cells per written block (a row group in Parquet): 16 Mi cells, 128 MiB of float64.
BLOCK_CELLS = 1 << 24
# Text read per pyarrow CSV block: enough rows per block that a 17,000-column table
# is not cut into thousands of chunks per column, bounded so that blocks stay small.
_MIN_CSV_BLOCK = 1 << 24
_MAX_CSV_BLOCK = 1 << 28
_CSV_BLOCK_ROWS = 2048
# Uncompressed text matrices at least this large are parsed in parallel byte ranges.
_PARALLEL_MIN_BYTES = 1 << 26
# Text per batch of the matrix reader: small batches stay in cache and keep the reader's
# buffers small (measured on 60,000 × 1,000: 2 MiB is faster and 0.5 GB leaner than
# 16 MiB), but each batch costs a pass over its columns, so a wide file (thousands of
# samples) gets at least _MATRIX_CSV_ROWS lines per batch.
_MATRIX_CSV_BLOCK = 1 << 21
_MATRIX_CSV_ROWS = 256


_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


def is_gzip_name(path: str | Path) -> bool:
    """Whether the file name says gzip (``.gz``, any case)."""
    return str(path).lower().endswith(".gz")


def check_input_file(path: str | Path, what: str = "file", *, text: bool = True) -> Path:
    """Refuse, in one line naming the file, a path that cannot be read as ``what``.

    Checked without reading the file through: it exists, is not a directory, is not
    empty, a ``.gz`` name holds gzip data (and gzip data has a ``.gz`` name), and, for
    text tables, it is not a zip archive (an Excel ``.xlsx`` workbook). A gzip file cut
    short is found only when it is read to the end: :func:`explain_read_errors` turns
    that into a message too.

    Raises
    ------
    InputError
        Naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found. Check the path in the config.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file. Give the path of the {what} itself.")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except PermissionError:
        raise InputError(f"{path}: permission denied. Make the {what} readable.") from None
    if not head:
        raise InputError(f"{path}: the file is empty.")
    if is_gzip_name(path) and head[:2] != _GZIP_MAGIC:
        raise InputError(
            f"{path}: the name ends in .gz but the file is not gzip-compressed. Rename it "
            "without .gz, or compress it with gzip."
        )
    if text and not is_gzip_name(path) and head[:2] == _GZIP_MAGIC:
        raise InputError(
            f"{path}: the file is gzip-compressed but its name does not end in .gz. Add .gz "
            "to its name."
        )
    if text and head == _ZIP_MAGIC:
        raise InputError(
            f"{path}: is a zip archive (an Excel .xlsx workbook?), not a text table. Save the "
            "sheet as CSV or tab-delimited text."
        )
    return path


@contextlib.contextmanager
def explain_read_errors(path: str | Path) -> Iterator[None]:
    """Turn the low-level errors of reading ``path`` into one :class:`InputError` line.

    A gzip file cut short (Python's ``EOFError``, pyarrow's "Truncated compressed
    stream"), corrupt gzip data, a directory, or bytes that are not UTF-8 text.
    """
    path = Path(path)
    truncated = (
        f"{path}: the gzip file is cut short (it ends before gzip's end marker), so it was "
        "truncated while copying or downloading. Copy it again (`gzip -t` checks a copy)."
    )
    corrupt = (
        f"{path}: the gzip data is corrupt or this is not a gzip file. Copy it again, or "
        "rename it without .gz if it is plain text."
    )
    try:
        yield
    except EOFError:
        raise InputError(truncated) from None
    except (gzip.BadGzipFile, zlib.error):
        raise InputError(corrupt) from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file. Give the file itself.") from None
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: byte {error.start} is not UTF-8 text, so this is not a text table (or "
            "it is in another encoding). Save it as UTF-8 text (CSV UTF-8 in Excel)."
        ) from None
    except OSError as error:
        message = str(error).lower()
        if "truncated" in message:
            raise InputError(truncated) from None
        if "zlib" in message or "gzip" in message or "inflate" in message:
            raise InputError(corrupt) from None
        raise


def open_text(path: str | Path):  # type: ignore[no-untyped-def]
    """Open a text table (``.gz`` decompressed) for reading: a UTF-8 byte-order mark
    (Excel's "CSV UTF-8") is dropped, and lines end at LF, CRLF or a lone CR (old Mac
    exports), their ends kept (``newline=""``)."""
    if is_gzip_name(path):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def split_line(line: str, delimiter: str) -> list[str]:
    """The fields of one line, quotes handled as CSV does (``"a,b"`` is one field)."""
    text = line.rstrip("\r\n")
    if '"' not in text:
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter), [""])


def split_thousands(fields: list[str]) -> str | None:
    """``"1,000"`` when two neighbouring fields read like one number cut at its thousands
    separator (an unquoted ``1,000`` in a CSV line), else ``None``."""
    for left, right in itertools.pairwise(field.strip() for field in fields[1:]):
        if 1 <= len(left) <= 3 and left.isdigit() and len(right) == 3 and right.isdigit():
            return f"{left},{right}"
    return None


def sniff_delimiter(path: str | Path) -> str:
    """Return ``","`` for a comma-separated file and ``"\\t"`` otherwise.

    The first non-comment line decides: a tab anywhere in it means TSV.
    """
    with explain_read_errors(path), open_text(path) as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            if "\t" in line:
                return "\t"
            return "," if "," in line else "\t"
    return "\t"


def _line_width(path: Path) -> int:
    """Bytes in the longer of the file's first two lines (at least 1)."""
    opener = gzip.open if is_gzip_name(path) else open
    with opener(path, "rb") as handle:
        first = handle.readline(_MAX_CSV_BLOCK)
        second = handle.readline(_MAX_CSV_BLOCK)
    return max(len(first), len(second), 1)


def _csv_block_size(path: Path) -> int:
    """A CSV block size holding about ``_CSV_BLOCK_ROWS`` rows of this file."""
    return int(min(_MAX_CSV_BLOCK, max(_MIN_CSV_BLOCK, _line_width(path) * _CSV_BLOCK_ROWS)))


_DELIMITER_NAMES = {"\t": "tab", ",": "comma"}


def _stray_quote(fields: list[str]) -> str | None:
    """The first field holding a double quote that is not a whole quoted field."""
    for value in fields:
        if '"' not in value:
            continue
        inner = value[1:-1].replace('""', "")
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"' and '"' not in inner:
            continue
        return value
    return None


def _describe_bad_line(
    path: Path, delimiter: str, skip_rows: int, expected: int | None
) -> str | None:
    """Say in words why a table did not parse: the first line whose fields are wrong.

    Only run after a parse failed, so reading the file again in Python costs nothing
    in a good run. ``expected`` is the number of fields per line when the caller names
    the columns (headerless files); otherwise line ``skip_rows + 1`` sets it.
    """
    name = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    first_line, first_trailing = skip_rows + 1, False
    with explain_read_errors(path), open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip_rows or not line.strip("\r\n"):
                continue
            text = line.rstrip("\r\n")
            stray = _stray_quote(text.split(delimiter))
            if stray is not None:
                return (
                    f'line {number}: the field {stray!r} holds a double quote ("), which '
                    "starts or ends a quoted field, so the line cannot be split into columns. "
                    "Remove the quote characters from gene IDs and sample names."
                )
            fields = split_line(text, delimiter)
            if expected is None:
                expected, first_line = len(fields), number
                first_trailing = len(fields) > 1 and fields[-1] == ""
                continue
            if len(fields) == expected:
                continue
            if len(fields) == expected - 1 and first_trailing:
                return (
                    f"line {first_line} ends with a {name} (an empty last field) but line "
                    f"{number} does not. Remove the trailing {name}s from every line."
                )
            if len(fields) == expected + 1 and fields[-1] == "":
                return (
                    f"line {number} ends with a {name} (an empty last field) that line "
                    f"{first_line} does not have. Remove the trailing {name}s."
                )
            hint = ""
            if delimiter == "," and split_thousands(fields):
                hint = (
                    f"; it looks like {split_thousands(fields)} is a number written with a "
                    "thousands separator, which splits it into two fields. Thousands "
                    "separators are not allowed: export the table without them"
                )
            return (
                f"line {number} has {len(fields)} {name}-separated fields but line "
                f"{first_line} has {expected}. Every line needs the same number of "
                f"fields{hint}."
            )
    return None


def _comment_lines(path: Path, comment: str | None) -> int:
    if comment is None:
        return 0
    skip_rows = 0
    with explain_read_errors(path), open_text(path) as handle:
        for line in handle:
            if not line.startswith(comment):
                break
            skip_rows += 1
    return skip_rows


def _first_fields(path: Path, delimiter: str, skip_rows: int) -> list[str]:
    with explain_read_errors(path), open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number > skip_rows and line.strip("\r\n"):
                return split_line(line, delimiter)
    return []


def _drop_trailing_empty(table: pa.Table, path: Path, delimiter: str) -> tuple[pa.Table, str]:
    """Drop the empty last column that a delimiter at the end of every line makes."""
    name = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    column = table.column(table.num_columns - 1)
    if pa.types.is_null(column.type):
        filled = np.zeros(len(column), dtype=bool)
    else:
        values = column.to_numpy(zero_copy_only=False)
        filled = np.array([v is not None and str(v).strip() != "" for v in values], dtype=bool)
        if column.null_count:
            filled &= ~column.is_null().to_numpy(zero_copy_only=False)
    if filled.any():
        row = int(np.argmax(filled))
        raise InputError(
            f"{path}: the first line ends with a {name} (an empty last column name), but "
            f"data row {row + 1} has {column[row].as_py()!r} in that last column. Give that "
            f"column a name in the first line, or remove the trailing {name}s."
        )
    note = f"{path}: every line ends with a {name}; the empty last column this makes was ignored"
    return table.remove_column(table.num_columns - 1), note


def _read_arrow_table(
    path: str | Path,
    *,
    comment: str | None = None,
    string_columns: list[str] | None = None,
    string_positions: tuple[int, ...] = (),
    header: bool = True,
    column_names: list[str] | None = None,
) -> tuple[pa.Table, list[str]]:
    path = check_input_file(path)
    delimiter = sniff_delimiter(path)
    skip_rows = _comment_lines(path, comment)
    first = _first_fields(path, delimiter, skip_rows)
    if not first:
        raise InputError(f"{path}: the file is empty.")
    trailing = len(first) > 1 and first[-1] == ""
    names = list(column_names) if column_names is not None and not header else None
    if names is not None and trailing and len(first) == len(names) + 1:
        names.append("")
    types = {name: pa.string() for name in (string_columns or [])}
    if header:
        types |= {first[i].strip(): pa.string() for i in string_positions if i < len(first)}
        types |= {first[i]: pa.string() for i in string_positions if i < len(first)}
    read_options = pacsv.ReadOptions(
        skip_rows=skip_rows,
        autogenerate_column_names=not header and column_names is None,
        column_names=names,
        use_threads=True,
        block_size=_csv_block_size(path),
    )
    convert_options = pacsv.ConvertOptions(
        column_types=types,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with explain_read_errors(path):
            table = pacsv.read_csv(
                path,
                read_options=read_options,
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=convert_options,
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        expected = len(names) if names is not None else None
        reason = _describe_bad_line(path, delimiter, skip_rows, expected)
        if reason is None:
            reason = str(error).splitlines()[0].rstrip(".") + "."
        raise InputError(f"{path}: could not be parsed as a delimited table: {reason}") from None
    notes: list[str] = []
    if trailing and table.num_columns > 1 and (names is None or names[-1] == ""):
        table, note = _drop_trailing_empty(table, path, delimiter)
        notes.append(note)
    return table, notes


def read_arrow_table(
    path: str | Path,
    *,
    comment: str | None = None,
    string_columns: list[str] | None = None,
    string_positions: tuple[int, ...] = (),
    header: bool = True,
    column_names: list[str] | None = None,
) -> pa.Table:
    """Read a TSV/CSV into a pyarrow Table (see :func:`read_table` for the options)."""
    table, _ = _read_arrow_table(
        path,
        comment=comment,
        string_columns=string_columns,
        string_positions=string_positions,
        header=header,
        column_names=column_names,
    )
    return table


def read_table(
    path: str | Path,
    *,
    comment: str | None = None,
    string_columns: list[str] | None = None,
    string_positions: tuple[int, ...] = (),
    header: bool = True,
    column_names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a TSV/CSV (optionally gzipped, CRLF, LF or CR) into a DataFrame.

    A delimiter at the end of every line (an empty last column, unnamed in the header)
    is dropped and said in ``frame.attrs["notes"]``; a line whose fields do not fit is
    described in words (line number, trailing delimiter, stray double quote).

    Parameters
    ----------
    path
        The file; ``.gz`` is decompressed on the fly.
    comment
        Lines starting with this prefix are skipped (featureCounts writes a ``#`` line).
    string_columns
        Columns read as strings whatever they look like (identifiers).
    string_positions
        Columns, by position in the header, read as strings (``(0,)`` for IDs in the
        first column: ``007`` stays ``007``, ``1.10`` is not ``1.1``).
    header
        Whether the first line holds column names.
    column_names
        Names to give the columns when ``header`` is false.

    Raises
    ------
    InputError
        When the file is missing, empty or not a delimited table.
    """
    table, notes = _read_arrow_table(
        path,
        comment=comment,
        string_columns=string_columns,
        string_positions=string_positions,
        header=header,
        column_names=column_names,
    )
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    frame.columns = [str(column).strip() for column in frame.columns]
    frame.attrs["notes"] = notes
    return frame


def write_table(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    index_label: str | None = None,
    finite: bool = False,
    missing_as_empty: bool = False,
) -> None:
    """Write ``frame`` as a TSV atomically, with exact, deterministic float text.

    Parameters
    ----------
    frame
        The table. When ``index_label`` is given the index is written as the first
        column under that name.
    path
        The final path (a ``.gz`` suffix is not supported: outputs are plain TSV).
    index_label
        Name of the first column holding the index, or ``None`` to drop the index.
    finite
        Refuse (:class:`InputError`, nothing written) when a float column holds NaN or
        ±inf; the message names the rows by the first column's values.
    missing_as_empty
        Write missing values (NaN, None) as empty cells, which R's ``read.delim`` and
        pandas read back as NA, instead of the text ``nan`` or ``None``.
    """
    if index_label is not None:
        frame = frame.rename_axis(index_label).reset_index()
    if finite and len(frame.columns):
        floats = [name for name in frame.columns if frame[name].dtype.kind == "f"]
        if floats:
            check_finite(
                frame[floats].to_numpy(), frame.iloc[:, 0].astype(str).to_numpy(), floats, path
            )
    columns = {}
    for name in frame.columns:
        values = frame[name].to_numpy()
        missing = pd.isna(frame[name]).to_numpy() if missing_as_empty else None
        if values.dtype == object or values.dtype.kind in "OUSb":
            values = values.astype(str)
        if missing is not None and missing.any():
            values = pa.array(values, mask=missing)  # nulls are written as empty cells
        columns[str(name)] = values
    table = pa.table(columns)
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        # pyarrow quotes header names; write the header ourselves to keep plain TSV.
        handle.write(("\t".join(columns) + "\n").encode())
        pacsv.write_csv(
            table,
            handle,
            write_options=pacsv.WriteOptions(
                delimiter="\t", quoting_style="none", include_header=False
            ),
        )


def row_blocks(n_rows: int, n_columns: int) -> list[slice]:
    """Consecutive row slices of about :data:`BLOCK_CELLS` cells each."""
    return cell_slices(n_rows, n_columns, BLOCK_CELLS)


def write_matrix(
    matrix: np.ndarray,
    genes: pd.Index | list[str],
    samples: list[str],
    path: str | Path,
    *,
    rows: np.ndarray | None = None,
    dtype: np.dtype | type | None = None,
    finite: bool = False,
) -> None:
    """Write a genes × samples matrix, first column ``gene_id``, as TSV or Parquet.

    With ``finite``, a block holding NaN or ±inf stops the write with an
    :class:`InputError` naming the genes and samples, and nothing appears under ``path``.

    The format follows the extension (``.tsv``, ``.parquet`` or ``.arrow``). ``rows`` (a boolean
    mask or row indices) writes only those rows, without copying the selection whole;
    ``dtype`` converts block by block (int64 counts held as float64 are written as
    integers, as large whole floats would be written as ``1e+15``). The values keep
    their dtype: a float32 matrix gives float32 Parquet columns (also with no rows) and
    TSV text in float32's shortest round-trip form (``0.1``, not ``0.10000000149011612``).
    """
    matrix = np.asarray(matrix)
    genes = np.asarray(genes, dtype=object)
    selected = np.arange(matrix.shape[0]) if rows is None else np.asarray(rows)
    if selected.dtype == bool:
        selected = np.flatnonzero(selected)
    with matrix_writer(path, samples) as writer:
        if selected.size == 0:  # no block below: give Parquet the columns' dtype
            writer.write(np.empty((0, matrix.shape[1]), dtype=dtype or matrix.dtype), [])
        for block in row_blocks(selected.size, matrix.shape[1]):
            index = selected[block]
            part = matrix[block] if rows is None else matrix[index]
            if dtype is not None:
                part = part.astype(dtype, copy=False)
            if finite:
                check_finite(part, genes[index], samples, path)
            writer.write(part, genes[index])


def read_matrix(path: str | Path, *, dtype: np.dtype | type | None = None) -> pd.DataFrame:
    """Read a matrix written by :func:`write_matrix` back, indexed by ``gene_id``.

    TSV, Parquet or Arrow IPC by extension. The values are one Fortran-ordered numpy array (the
    frame's single block, so ``frame.to_numpy()`` does not copy): int64 when every
    column holds integers, else float64, or ``dtype`` when given (e.g. float64 counts
    read straight from the text, without an int64 copy).
    """
    path = Path(path)
    if matrix_format(path) == "arrow":
        return _read_arrow_matrix(path, dtype)
    if matrix_format(path) == "parquet":
        if not path.exists():
            raise InputError(f"{path}: file not found.")
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        n_rows = parquet.metadata.num_rows
        schema = parquet.schema_arrow
        value_types = [schema.field(name).type for name in names[1:]]
        numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in value_types)
        if not numeric:
            frame = parquet.read().to_pandas()
            return frame.set_index(names[0]).rename_axis("gene_id")
        if dtype is None:
            dtype = np.int64 if all(pa.types.is_integer(t) for t in value_types) else np.float64
        values = np.empty((n_rows, len(names) - 1), dtype=dtype, order="F")
        genes: list[np.ndarray] = []
        start = 0
        # One row group at a time: beyond the result only one block is ever in memory.
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, use_threads=True)
            stop = start + table.num_rows
            genes.append(table.column(0).to_numpy(zero_copy_only=False))
            columns = table.columns[1:]
            del table
            columns_to_array(columns, stop - start, dtype, out=values[start:stop])
            start = stop
        index = pd.Index(np.concatenate(genes) if genes else [], dtype=object, name="gene_id")
        return pd.DataFrame(values, index=index, columns=names[1:], copy=False)
    return read_text_matrix(path, dtype=dtype)


def _read_arrow_matrix(path: Path, dtype: np.dtype | type | None) -> pd.DataFrame:
    """Read an Arrow IPC matrix written by :class:`MatrixWriter` (memory-mapped)."""
    with arrow_matrix(path) as reader:
        try:
            table = reader.read_all()
        except pa.ArrowInvalid as error:
            raise damaged_arrow_matrix(path, error) from None
        names = table.column_names
        genes = table.column(0).to_numpy(zero_copy_only=False).astype(object)
        columns = table.columns[1:]
        del table
        values = columns_to_array(columns, len(genes), dtype)
        if values is None:  # text cells: not a matrix the workflow writes
            raise InputError(f"{path}: a matrix column is not numeric.")
    index = pd.Index(genes, dtype=object, name="gene_id")
    return pd.DataFrame(values, index=index, columns=names[1:], copy=False)


def _count_lines(path: Path) -> int:
    """Number of lines (a last line without a newline counts), reading 16 MiB at a time."""
    opener = gzip.open if is_gzip_name(path) else open
    lines, last = 0, b"\n"
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _stream_numeric(
    path: Path, header: list[str], dtype: np.dtype | type | None
) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """Parse a numeric genes × samples text matrix batch by batch into one array.

    pyarrow's streaming reader parses one block of rows at a time; each batch is copied
    into its rows of a preallocated Fortran-ordered array and dropped. A large
    uncompressed file is cut into one byte range per core (at line ends), each parsed
    by its own stream into its own rows. Peak memory is the result plus a few blocks,
    where reading the whole table first would hold the matrix twice. Returns
    ``(gene IDs, column names, values)``, or ``None`` when a column is not numeric.
    """
    # pyarrow's CPU count: the rule's threads once cohortnorm.runner.limit_threads has run.
    workers = min(pa.cpu_count(), 8)
    ranges = None
    if path.suffix != ".gz" and path.stat().st_size >= _PARALLEL_MIN_BYTES and workers > 1:
        ranges = _line_ranges(path, workers)  # counts the lines too
        n_rows = sum(lines for _, _, lines in ranges)
    else:
        n_rows = max(_count_lines(path) - 1, 0)
    # Without a dtype, int64 is tried first (counts are integers, and declared types parse
    # about twice as fast as inferred ones); a cell that is not an integer restarts the
    # parse with float64, and one that is not a number gives None.
    attempts = (
        [np.dtype(dtype)] if dtype is not None else [np.dtype(np.int64), np.dtype(np.float64)]
    )
    for attempt in attempts:
        try:
            return _stream_numeric_typed(path, header, attempt, n_rows, ranges)
        except pa.ArrowInvalid:
            continue
    return None


class _ByteRange(io.RawIOBase):
    """A read-only view of bytes [start, stop) of a file, read with ``os.pread``.

    pyarrow's CSV reader takes it as a stream; ``pread`` keeps the pages out of this
    process's memory, where a memory map would count them in its resident size.
    """

    def __init__(self, path: Path, start: int, stop: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._position, self._stop = start, stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = min(len(buffer), self._stop - self._position)
        if size <= 0:
            return 0
        data = os.pread(self._fd, size, self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _line_ranges(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """Split the lines after the header into ``parts`` byte ranges ending at newlines.

    Returns ``(start, stop, lines)`` per non-empty range, ``lines`` counting a last
    line without its newline.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.readline()
        start = handle.tell()
        cuts = [start]
        for k in range(1, parts):
            handle.seek(max(start + (size - start) * k // parts, cuts[-1]))
            handle.readline()  # to the end of the line the cut falls in
            cuts.append(min(handle.tell(), size))
        cuts.append(size)
        ranges = []
        for begin, end in itertools.pairwise(cuts):
            if end <= begin:
                continue
            handle.seek(begin)
            lines, remaining, last = 0, end - begin, b"\n"
            while remaining:
                chunk = handle.read(min(remaining, 1 << 24))
                lines += chunk.count(b"\n")
                remaining -= len(chunk)
                last = chunk[-1:]
            ranges.append((begin, end, lines + (last != b"\n")))
    return ranges


def _parse_rows(
    source,  # type: ignore[no-untyped-def]
    options: tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions],
    values: np.ndarray,
    offset: int,
) -> tuple[list[np.ndarray], int, list[str]]:
    """Stream-parse ``source`` into ``values[offset:]``; return gene IDs, rows, names."""
    read_options, parse_options, convert_options = options
    reader = pacsv.open_csv(
        source,
        read_options=read_options,
        parse_options=parse_options,
        convert_options=convert_options,
    )
    value_types = reader.schema.types[1:]
    if not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in value_types):
        raise _NotNumeric
    if len(value_types) != values.shape[1]:
        raise pa.ArrowInvalid("the header and the rows have different numbers of fields")
    genes: list[np.ndarray] = []
    start = offset
    for batch in reader:
        stop = start + batch.num_rows
        if stop > values.shape[0]:
            raise _RowsMiscounted
        genes.append(batch.column(0).to_numpy(zero_copy_only=False))
        # The whole batch in one column-major tensor: one C++ copy, not a loop over
        # thousands of columns holding the GIL.
        floats = values.dtype.kind == "f"
        try:
            block = batch.select(range(1, batch.num_columns)).to_tensor(
                row_major=False, null_to_nan=floats
            )
        except pa.ArrowTypeError:  # an empty cell in an integer column
            raise pa.ArrowInvalid("missing values in an integer column") from None
        values[start:stop] = np.asarray(block)
        start = stop
    return genes, start - offset, [str(name).strip() for name in reader.schema.names]


class _NotNumeric(Exception):
    """A value column is not numeric: the caller reads the table as text instead."""


class _RowsMiscounted(Exception):
    """Parsed rows and counted lines differ (blank lines): read in one stream instead."""


def _stream_numeric_typed(
    path: Path,
    header: list[str],
    dtype: np.dtype,
    n_rows: int,
    ranges: list[tuple[int, int, int]] | None,
) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    types: dict[str, pa.DataType] = {header[0]: pa.string()}
    types |= {name: pa.from_numpy_dtype(dtype) for name in header[1:]}
    parse_options = pacsv.ParseOptions(delimiter=sniff_delimiter(path))
    convert_options = pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    values = np.empty((n_rows, len(header) - 1), dtype=dtype, order="F")
    block_size = min(_MAX_CSV_BLOCK, max(_MATRIX_CSV_BLOCK, _MATRIX_CSV_ROWS * _line_width(path)))
    if ranges:
        # One stream per core over consecutive byte ranges, each filling its own rows.
        offsets = np.concatenate([[0], np.cumsum([lines for _, _, lines in ranges])])
        options = (
            pacsv.ReadOptions(use_threads=False, block_size=block_size, column_names=header),
            parse_options,
            convert_options,
        )

        def parse_range(index: int) -> tuple[list[np.ndarray], int, list[str]]:
            start, stop, _ = ranges[index]
            with _ByteRange(path, start, stop) as source:
                return _parse_rows(source, options, values, int(offsets[index]))

        try:
            with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
                parts = list(pool.map(parse_range, range(len(ranges))))
            if all(rows == r[2] for (_, rows, _), r in zip(parts, ranges, strict=True)):
                genes = [ids for part, _, _ in parts for ids in part]
                return np.concatenate(genes), header, values
        except _RowsMiscounted:
            pass
        except _NotNumeric:
            return None
    options = (
        pacsv.ReadOptions(use_threads=True, block_size=block_size),
        parse_options,
        convert_options,
    )
    try:
        genes, rows, names = _parse_rows(str(path), options, values, 0)
    except _NotNumeric:
        return None
    if rows < values.shape[0]:  # blank lines were skipped
        values = np.asfortranarray(values[:rows])
    ids = np.concatenate(genes) if genes else np.empty(0, dtype=object)
    return ids, names, values


def read_text_matrix(path: str | Path, *, dtype: np.dtype | type | None = None) -> pd.DataFrame:
    """Read a genes × samples TSV/CSV (any extension, ``.gz`` too), first column the IDs.

    As :func:`read_matrix`: one Fortran-ordered array when every value column is
    numeric. Otherwise the frame :func:`read_table` gives (columns of mixed types),
    indexed by the first column, so that the caller can say which cell is wrong. The
    IDs are always text. A UTF-8 byte-order mark, CRLF or CR-only line ends and a
    delimiter ending every line are accepted; what was done is listed in
    ``frame.attrs["notes"]``.
    """
    path = check_input_file(path)
    with explain_read_errors(path):
        return _read_text_matrix(path, dtype)


def _read_text_matrix(path: Path, dtype: np.dtype | type | None) -> pd.DataFrame:
    header, line_end = _first_line_fields(path)
    notes: list[str] = []
    parsed = None
    if line_end == "\r":
        # Old Mac (CR-only) line ends: the line counting of the fast path needs LF; the
        # general reader splits lines at CR too.
        notes.append(f"{path}: lines end in CR only (old Mac export); read as lines")
    elif len(header) > 1:
        try:
            parsed = _stream_numeric(path, header, dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, _RowsMiscounted):
            parsed = None
        # The parser's buffers are free by now, but pyarrow's allocator keeps them
        # mapped; hand them back, so that later steps in this process have the memory.
        pa.default_memory_pool().release_unused()
    if parsed is not None:
        genes, names, values = parsed
        index = pd.Index(genes, dtype=object, name="gene_id")
        columns = [str(name).strip() for name in names[1:]]
        if len(header) > 2 and header[-1].strip() == "":
            delimiter = _DELIMITER_NAMES.get(sniff_delimiter(path), "delimiter")
            filled = ~np.isnan(values[:, -1]) if values.dtype.kind == "f" else None
            if filled is None or filled.any():
                row = 0 if filled is None else int(np.argmax(filled))
                raise InputError(
                    f"{path}: the first line ends with a {delimiter} (an empty last column "
                    f"name), but data row {row + 1} has {values[row, -1]:g} in that last "
                    f"column. Give that column a name in the first line, or remove the "
                    f"trailing {delimiter}s."
                )
            values, columns = np.asfortranarray(values[:, :-1]), columns[:-1]
            # The empty column's blanks made the parse fall back to float64; whole
            # numbers are what the int64 parse would have given.
            if dtype is None and _whole_int64(values):
                values = values.astype(np.int64, order="F")
            notes.append(
                f"{path}: every line ends with a {delimiter}; the empty last column this "
                "makes was ignored"
            )
        frame = pd.DataFrame(values, index=index, columns=columns, copy=False)
        frame.attrs["notes"] = notes
        return frame
    frame = read_table(path, string_positions=(0,))
    frame.attrs["notes"] = notes + frame.attrs.get("notes", [])
    return frame.set_index(frame.columns[0]).rename_axis("gene_id")


def _whole_int64(values: np.ndarray) -> bool:
    """Whether float ``values`` are all whole numbers that int64 holds exactly."""
    if values.dtype.kind != "f":
        return False
    finite = np.isfinite(values).all()
    return bool(finite and (values == np.floor(values)).all() and (np.abs(values) < 2**63).all())


def _first_line_fields(path: Path) -> tuple[list[str], str]:
    """The first line's fields (quotes removed as CSV does) and how the line ends."""
    delimiter = sniff_delimiter(path)
    with open_text(path) as handle:
        line = handle.readline()
    text = line.rstrip("\r\n")
    if not text:
        raise InputError(f"{path}: the file is empty.")
    ending = line[len(text) :]
    return split_line(text, delimiter), ending
