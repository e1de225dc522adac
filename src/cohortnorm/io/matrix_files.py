"""Genes × samples matrix files without pandas: the atomic writer, the block writer
(TSV, Parquet, Arrow IPC) and the conversion of a hand-off file into a deliverable.

Kept apart from :mod:`cohortnorm.io.tables` (which re-exports every name here) so that a
job that only converts matrices (rule ``export_matrix``) does not import pandas: about
0.4 s of start-up per job.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cohortnorm.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: Extensions of the matrix formats :func:`read_matrix` and :func:`write_matrix` know.
#: ``.arrow`` (Arrow IPC, uncompressed) is the workflow's hand-off between rules: it is
#: memory-mapped and copied into numpy at memory speed, where a 60,000 × 1,000 TSV takes
#: several seconds to parse and to format.
MATRIX_FORMATS: dict[str, str] = {".tsv": "tsv", ".parquet": "parquet", ".arrow": "arrow"}


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, 0o644)
        os.replace(temporary_path, path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def _not_finite_message(path: str | Path, cells: list[tuple[str, str]], count: int) -> str:
    shown = "; ".join(f"{row} / {column}" for row, column in cells)
    more = f", and {count - len(cells)} more in the same rows" if count > len(cells) else ""
    return (
        f"{path} was not written: it would hold NaN or infinite values, at (gene or row / "
        f"sample or column) {shown}{more}. "
        "The workflow never writes NaN under a final name. The input of this step "
        "(or a setting in the config) produced them: check the samples and genes named "
        "here, and the warnings above in this log."
    )


def check_finite(
    values: np.ndarray,
    rows: Sequence[object] | np.ndarray,
    columns: Sequence[object],
    path: str | Path,
    *,
    limit: int = 5,
) -> None:
    """Raise :class:`InputError` if ``values`` holds NaN or ±inf, naming the cells.

    Parameters
    ----------
    values
        A 2-D block (rows × columns); integer blocks are always finite.
    rows, columns
        Names of the rows (genes, or a table's first column) and of the columns.
    path
        The output the values were meant for, for the message.
    limit
        How many (row / column) pairs the message names.
    """
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.size == 0:
        return
    bad = ~np.isfinite(values)
    count = int(bad.sum())
    if not count:
        return
    where = np.argwhere(bad)[:limit]
    cells = [(str(rows[i]), str(columns[j])) for i, j in where]
    raise InputError(_not_finite_message(path, cells, count))


def matrix_format(path: str | Path) -> str:
    """``"tsv"``, ``"parquet"`` or ``"arrow"``, from the extension of a matrix file."""
    suffix = Path(path).suffix.lower()
    if suffix not in MATRIX_FORMATS:
        raise InputError(
            f"{path}: a matrix file must end in {' or '.join(MATRIX_FORMATS)} (got {suffix!r})."
        )
    return MATRIX_FORMATS[suffix]


#: Rows formatted per thread and call: large enough that the per-call overhead is
#: negligible, small enough that every thread gets work on a 20,000-gene block.
_TSV_ROWS_PER_PART = 2048


def _format_tsv(table: pa.Table) -> pa.Buffer:
    """The TSV text of ``table`` (no header), shortest round-trip floats."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        table,
        sink,
        write_options=pacsv.WriteOptions(
            delimiter="\t", quoting_style="none", include_header=False
        ),
    )
    return sink.getvalue()


def _tsv_text(table: pa.Table) -> Iterator[pa.Buffer]:
    """The TSV text of ``table`` in row order, formatted by ``pyarrow.cpu_count()`` threads.

    pyarrow's CSV writer formats on one thread and releases the GIL, so consecutive row
    ranges formatted side by side and written in order give the same bytes as one call:
    formatting floats is most of a TSV deliverable's cost (about 1 s per 6 million
    float64 cells on one core), and two threads halve it.
    """
    threads = max(1, pa.cpu_count())
    parts = [
        table.slice(start, _TSV_ROWS_PER_PART)
        for start in range(0, table.num_rows, _TSV_ROWS_PER_PART)
    ]
    if threads == 1 or len(parts) <= 1:
        yield from map(_format_tsv, parts)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield from pool.map(_format_tsv, parts)


class MatrixWriter:
    """Appends row blocks of a genes × samples matrix to an open TSV, Parquet or Arrow file.

    Made by :func:`matrix_writer`, which handles the atomic rename. The TSV is
    byte-identical to :func:`write_table` of the whole matrix; its text is formatted by
    ``pyarrow.cpu_count()`` threads (the rule's ``threads``, see
    :func:`cohortnorm.runner.limit_threads`), each on its own consecutive rows, and
    written in row order, so the bytes do not depend on the thread count. The Parquet
    file holds a string column ``gene_id`` then one column per sample, one row group per
    block, Snappy-compressed, without dictionary pages or statistics (fast for 17,000
    columns). The Arrow IPC file holds the same columns, one uncompressed record batch
    per block.
    """

    def __init__(
        self, temporary: Path, file_format: str, names: list[str], text_columns: int = 1
    ) -> None:
        self.format = file_format
        self.names = names
        # The leading text columns: gene_id, and gene_name when the deliverable has it.
        self.text_columns = text_columns
        self._temporary = temporary
        self._handle = None
        self._parquet: pq.ParquetWriter | None = None
        self._arrow: pa.ipc.RecordBatchFileWriter | None = None
        self._arrow_schema: pa.Schema | None = None
        if file_format == "tsv":
            self._handle = open(temporary, "wb")  # closed in close()
            self._handle.write(("\t".join(names) + "\n").encode())

    def _table(
        self, values: np.ndarray, genes: pd.Index | list[str] | np.ndarray, *text: Sequence[str]
    ) -> pa.Table:
        values = np.asarray(values)
        n_samples = len(self.names) - self.text_columns
        if values.ndim != 2 or values.shape[1] != n_samples:
            raise ValueError(f"a block of shape {values.shape} does not fit {n_samples} samples")
        if len(text) != self.text_columns - 1:
            raise ValueError(f"{self.text_columns - 1} text column(s) expected, got {len(text)}")
        if values.dtype.kind not in "iuf":
            values = values.astype(str)
        # Column slices of a Fortran-ordered block are contiguous: pyarrow takes them as is.
        values = np.asfortranarray(values)
        columns = [
            pa.array(np.asarray(column).astype(str), type=pa.string()) for column in (genes, *text)
        ]
        columns += [values[:, j] for j in range(values.shape[1])]
        return pa.Table.from_arrays(columns, names=self.names)

    def write(
        self, values: np.ndarray, genes: pd.Index | list[str] | np.ndarray, *text: Sequence[str]
    ) -> None:
        """Append the rows ``values`` (genes × samples) named ``genes``; ``text``: the
        other leading text columns of these rows (e.g. gene names)."""
        table = self._table(values, genes, *text)
        if self._handle is not None:
            for text in _tsv_text(table):
                self._handle.write(text)
            return
        if self.format == "arrow":
            if self._arrow is None:
                self._arrow_schema = table.schema
                self._arrow = pa.ipc.new_file(self._temporary, table.schema)
            elif table.schema != self._arrow_schema:
                table = table.cast(self._arrow_schema)
            self._arrow.write_table(table, max_chunksize=max(table.num_rows, 1))
            return
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(
                self._temporary,
                table.schema,
                compression="snappy",
                use_dictionary=False,
                write_statistics=False,
            )
        elif table.schema != self._parquet.schema:
            table = table.cast(self._parquet.schema)
        self._parquet.write_table(table, row_group_size=max(table.num_rows, 1))

    def close(self) -> None:
        """Flush and close the file (an empty matrix still gets its columns)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        elif self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        elif self._arrow is not None:
            self._arrow.close()
            self._arrow = None
        elif self.format in ("parquet", "arrow"):
            empty = [[] for _ in range(self.text_columns - 1)]
            self.write(np.empty((0, len(self.names) - self.text_columns)), [], *empty)
            self.close()


@contextlib.contextmanager
def matrix_writer(
    path: str | Path,
    samples: list[str] | pd.Index,
    index_label: str = "gene_id",
    text_labels: Sequence[str] = (),
) -> Iterator[MatrixWriter]:
    """Open ``path`` (``.tsv``, ``.parquet`` or ``.arrow``) for writing a matrix block by block.

    The file appears under its final name only when the ``with`` block ends without
    error (see :func:`atomic_output`)::

        with matrix_writer("logcpm.parquet", samples) as writer:
            for rows in blocks:
                writer.write(values[rows], genes[rows])
    """
    names = [index_label, *text_labels, *(str(sample) for sample in samples)]
    file_format = matrix_format(path)
    with atomic_output(path) as temporary:
        writer = MatrixWriter(temporary, file_format, names, 1 + len(text_labels))
        try:
            yield writer
        finally:
            writer.close()


def damaged_arrow_matrix(path: str | Path, error: Exception) -> InputError:
    """The error for a hand-off matrix that cannot be read: what it is and how to get it
    written again."""
    return InputError(
        f"{path} is not a complete Arrow matrix file ({error}). It is a hand-off file "
        "between the workflow's rules, damaged after it was written (a full disk, a "
        "copy cut short, or an edit). Delete it and run snakemake again: the step that "
        "writes it runs again."
    )


@contextlib.contextmanager
def arrow_matrix(path: str | Path) -> Iterator[pa.ipc.RecordBatchFileReader]:
    """The memory-mapped Arrow IPC reader of a matrix file; :class:`InputError` when the
    file is missing or damaged (:func:`damaged_arrow_matrix`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
        except (pa.ArrowInvalid, OSError) as error:
            raise damaged_arrow_matrix(path, error) from None
        yield reader


def _stored_dtype(schema: pa.Schema) -> type | None:
    """float32 when every value column is float32 (tpm.dtype: float32), else ``None``
    (int64 for integers, else float64), so that a conversion keeps float32's text."""
    types = [schema.field(i).type for i in range(1, len(schema.names))]
    return np.float32 if types and all(t == pa.float32() for t in types) else None


def convert_matrix(
    source: str | Path, target: str | Path, gene_names: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """Write the Arrow IPC matrix ``source`` as ``target`` (TSV, Parquet or Arrow), block
    by block, so that only one block is held in memory.

    The deliverables are written this way from the workflow's hand-off files; the bytes
    equal :func:`write_matrix` of the whole matrix. With ``gene_names`` (gene ID → name)
    a text column ``gene_name`` follows ``gene_id`` (an empty cell for an unnamed gene).

    Returns
    -------
    tuple of int
        The genes × samples of the matrix.
    """
    source = Path(source)
    if matrix_format(source) != "arrow":
        raise InputError(f"{source}: the source of a conversion must be an .arrow matrix.")
    rows = 0
    with arrow_matrix(source) as reader:
        names = reader.schema.names
        labels = ["gene_name"] if gene_names is not None else []
        with matrix_writer(target, names[1:], names[0], labels) as writer:
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                genes = batch.column(0).to_numpy(zero_copy_only=False)
                columns = [pa.chunked_array([column]) for column in batch.columns[1:]]
                values = columns_to_array(columns, batch.num_rows, _stored_dtype(reader.schema))
                if values is None:
                    raise InputError(f"{source}: a matrix column is not numeric.")
                text = [[gene_names.get(str(g), "") for g in genes]] if labels else []
                writer.write(values, genes, *text)
                rows += batch.num_rows
            if reader.num_record_batches == 0 or rows == 0:
                dtype = np.float64
                if len(names) > 1:
                    dtype = reader.schema.field(1).type.to_pandas_dtype()
                empty = [[] for _ in labels]
                writer.write(np.empty((0, len(names) - 1), dtype=dtype), [], *empty)
    return rows, len(names) - 1


def columns_to_array(
    columns: list[pa.ChunkedArray], n_rows: int, dtype: np.dtype | type | None, out=None
) -> np.ndarray | None:
    """Copy Arrow columns into one Fortran-ordered array, releasing each column after use.

    Returns ``None`` when a column is not numeric (the caller falls back to pandas).
    """
    types = [column.type for column in columns]
    if not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return None
    if dtype is None:
        has_nulls = any(column.null_count for column in columns)
        dtype = np.int64 if all(pa.types.is_integer(t) for t in types) and not has_nulls else None
        dtype = dtype or np.float64
    values = np.empty((n_rows, len(columns)), dtype=dtype, order="F") if out is None else out
    for j in range(len(columns)):
        start = 0
        for chunk in columns[j].chunks:
            stop = start + len(chunk)
            values[start:stop, j] = chunk.to_numpy(zero_copy_only=False)
            start = stop
        columns[j] = None  # type: ignore[call-overload]  # free the Arrow buffers now
    return values
