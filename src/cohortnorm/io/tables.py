"""Reading and writing the workflow's tables.

Tables are read with pyarrow's multithreaded CSV reader (gzip, CRLF and comma or tab
delimiters are handled) and written atomically: to a temporary file in the same
directory, then renamed, so that a killed job never leaves a half-written table under
its final name. Floats are written in the shortest form that round-trips exactly, so
two runs of the same input give the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from cohortnorm.errors import InputError


def sniff_delimiter(path: str | Path) -> str:
    """Return ``","`` for a comma-separated file and ``"\\t"`` otherwise.

    The first non-comment line decides: a tab anywhere in it means TSV.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            if "\t" in line:
                return "\t"
            return "," if "," in line else "\t"
    return "\t"


def read_table(
    path: str | Path,
    *,
    comment: str | None = None,
    string_columns: list[str] | None = None,
    header: bool = True,
    column_names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a TSV/CSV (optionally gzipped, CRLF or LF) into a DataFrame.

    Parameters
    ----------
    path
        The file; ``.gz`` is decompressed on the fly.
    comment
        Lines starting with this prefix are skipped (featureCounts writes a ``#`` line).
    string_columns
        Columns read as strings whatever they look like (identifiers).
    header
        Whether the first line holds column names.
    column_names
        Names to give the columns when ``header`` is false.

    Raises
    ------
    InputError
        When the file is missing, empty or not a delimited table.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path in the config.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty.")
    delimiter = sniff_delimiter(path)
    skip_rows = 0
    if comment is not None:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as handle:
            for line in handle:
                if not line.startswith(comment):
                    break
                skip_rows += 1
    read_options = pacsv.ReadOptions(
        skip_rows=skip_rows,
        autogenerate_column_names=not header and column_names is None,
        column_names=column_names if not header else None,
        use_threads=True,
        block_size=1 << 24,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in (string_columns or [])},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(
            path,
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert_options,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"{path}: could not be parsed as a delimited table: {error}") from None
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame


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


def write_table(frame: pd.DataFrame, path: str | Path, *, index_label: str | None = None) -> None:
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
    """
    if index_label is not None:
        frame = frame.rename_axis(index_label).reset_index()
    columns = {}
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype == object or values.dtype.kind in "OUSb":
            values = values.astype(str)
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


def write_matrix(
    matrix: np.ndarray, genes: pd.Index | list[str], samples: list[str], path: str | Path
) -> None:
    """Write a genes × samples matrix as a TSV whose first column is ``gene_id``."""
    frame = pd.DataFrame(matrix, index=pd.Index(genes, name="gene_id"), columns=samples, copy=False)
    write_table(frame, path, index_label="gene_id")


def read_matrix(path: str | Path) -> pd.DataFrame:
    """Read a matrix written by :func:`write_matrix` back, indexed by ``gene_id``."""
    frame = read_table(path, string_columns=["gene_id"])
    return frame.set_index("gene_id")
