"""A chunked genes × samples count store (HDF5) for the sharded scatter–gather mode.

One HDF5 file holds the dataset ``counts`` (genes × samples, float64 or int64), the
gene IDs ``gene_ids`` and the sample IDs ``sample_ids`` (UTF-8 strings). Its chunks
are rectangles of :data:`GENE_CHUNK` genes × ``sample_chunk`` samples, so that a job
reading one sample shard (all genes × a column range) and a job reading one gene block
(a row range × all samples) both read whole chunks and little else; ``docs/sharding.md``
explains the choice of HDF5 over Zarr v3.

An AnnData ``.h5ad`` file (samples × genes, ``X`` or a layer, dense or CSR/CSC sparse)
is read in place through :class:`H5adSource`, which offers the same two reads, without a
text round trip. :func:`read_sample_shard` and :func:`read_gene_block` take either.

Memory: :func:`tsv_to_store` holds one row block of the text (``block_rows`` genes ×
all samples) plus the gene IDs; a sample shard costs ``n_genes × samples_per_shard``
cells, a gene block ``len(rows) × n_samples`` cells.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from cohortnorm.blocks import BLOCK_CELLS
from cohortnorm.errors import InputError, preview
from cohortnorm.io.importers import _check_count_values, _check_labels, _numeric_values
from cohortnorm.io.tables import (
    _first_line_fields,
    _line_width,
    atomic_output,
    check_input_file,
    explain_read_errors,
    sniff_delimiter,
)

#: Genes per chunk: with 16 samples per chunk, 256 KiB of float64 per chunk.
GENE_CHUNK = 2048
#: Default samples per chunk (a sample shard is best a multiple of it).
SAMPLE_CHUNK = 16

COUNTS, GENE_IDS, SAMPLE_IDS = "counts", "gene_ids", "sample_ids"
_STRINGS = h5py.string_dtype("utf-8")


def shard_columns(n_samples: int, shard_index: int, samples_per_shard: int) -> slice:
    """The columns of shard ``shard_index`` (0-based) of ``samples_per_shard`` samples.

    The last shard holds the remainder when ``samples_per_shard`` does not divide the
    sample count.
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    n_shards = n_shard_count(n_samples, samples_per_shard)
    if not 0 <= shard_index < n_shards:
        raise ValueError(
            f"shard {shard_index} does not exist: {n_samples} samples in shards of "
            f"{samples_per_shard} make shards 0 to {n_shards - 1}"
        )
    start = shard_index * samples_per_shard
    return slice(start, min(start + samples_per_shard, n_samples))


def n_shard_count(n_samples: int, samples_per_shard: int) -> int:
    """How many shards of ``samples_per_shard`` samples cover ``n_samples`` samples."""
    return -(-n_samples // samples_per_shard)


class CountStore:
    """An open chunked store (read-only, or writable through :func:`create_store`).

    Attributes
    ----------
    genes, samples
        The gene and sample IDs, as pandas Indexes.
    shape
        ``(n_genes, n_samples)``.
    """

    def __init__(self, handle: h5py.File, source: str) -> None:
        for name in (COUNTS, GENE_IDS, SAMPLE_IDS):
            if name not in handle:
                raise InputError(
                    f"{source}: no {name!r} dataset; is this a count store written by "
                    "cohortnorm (tsv_to_store or h5ad_to_store)?"
                )
        self.handle = handle
        self.source = source
        self.counts = handle[COUNTS]
        self.genes = pd.Index(handle[GENE_IDS].asstr()[...], dtype=object, name="gene_id")
        self.samples = pd.Index(handle[SAMPLE_IDS].asstr()[...], dtype=object)
        self.shape = (len(self.genes), len(self.samples))

    def read_columns(self, columns: slice) -> np.ndarray:
        """All genes × the samples ``columns`` (float64)."""
        return np.asarray(self.counts[:, columns], dtype=np.float64)

    def read_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        """The genes ``rows`` (a slice, or increasing indices) × all samples (float64)."""
        return np.asarray(self.counts[rows, :], dtype=np.float64)

    def write_columns(self, start: int, values: np.ndarray) -> None:
        """Write a genes × k block into the columns from ``start`` on."""
        self.counts[:, start : start + values.shape[1]] = values

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> CountStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class H5adSource:
    """An AnnData ``.h5ad`` count matrix read in place, genes × samples.

    AnnData is samples × genes (``obs_names`` the samples, ``var_names`` the genes), so a
    sample shard is a row range of ``X`` and a gene block a column range, transposed on
    reading. Every read is checked as :func:`~cohortnorm.io.importers.import_h5ad` checks
    the whole matrix (whole non-negative counts; a sample shard also has no empty sample),
    so a bad value stops the shard's job with the gene and sample named. Dense ``X`` is
    read as HDF5 hyperslabs; sparse CSR/CSC through anndata's backed sparse datasets (a
    shard of a CSR matrix and a gene block of a CSC matrix read only their own entries;
    the other way round reads the index arrays too).
    """

    def __init__(self, path: str | Path, layer: str | None = None) -> None:
        from anndata.io import read_elem, sparse_dataset

        path = check_input_file(path, "AnnData .h5ad file", text=False)
        self.source = str(path)
        try:
            self.handle = h5py.File(path, "r")
        except OSError as error:
            raise InputError(f"{self.source}: not an HDF5/AnnData file ({error}).") from None
        for key in ("obs", "var"):
            if key not in self.handle:
                self.handle.close()
                raise InputError(f"{self.source}: no {key!r} group; is this an AnnData .h5ad file?")
        self.samples = pd.Index(read_elem(self.handle["obs"]).index.astype(str), dtype=object)
        self.genes = pd.Index(
            read_elem(self.handle["var"]).index.astype(str), dtype=object, name="gene_id"
        )
        layers = self.handle.get("layers")
        if layer is not None and (layers is None or layer not in layers):
            available = sorted(layers) if layers is not None else []
            self.handle.close()
            raise InputError(
                f"{self.source}: no layer {layer!r} (layers: {available or 'none'}). Set "
                "counts.h5ad_layer to the layer holding raw counts, or null for X."
            )
        if layer is None and "X" not in self.handle:
            self.handle.close()
            raise InputError(
                f"{self.source}: X is empty; name the layer holding the raw counts with "
                "counts.h5ad_layer."
            )
        element = self.handle["X"] if layer is None else layers[layer]  # type: ignore[index]
        self._matrix = element if isinstance(element, h5py.Dataset) else sparse_dataset(element)
        self.shape = (len(self.genes), len(self.samples))
        if tuple(self._matrix.shape) != (self.shape[1], self.shape[0]):
            shape = tuple(self._matrix.shape)
            self.handle.close()
            raise InputError(
                f"{self.source}: the count matrix has shape {shape}, not samples × genes "
                f"({self.shape[1]} × {self.shape[0]})."
            )
        _check_labels(self.genes, list(self.samples), self.source)

    def _dense(self, part: object) -> np.ndarray:
        if hasattr(part, "toarray"):
            part = part.toarray()
        return np.asarray(part, dtype=np.float64).T

    def read_columns(self, columns: slice | np.ndarray) -> np.ndarray:
        """All genes × the samples ``columns`` (float64), checked as the importer checks
        raw counts (whole, non-negative, no sample without reads)."""
        values = self._dense(self._matrix[columns])
        samples = list(self.samples[columns])
        _check_count_values(values, self.genes, samples, self.source, require_integer=True)
        return values

    def read_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        """The genes ``rows`` × all samples (float64), checked as raw counts."""
        values = self._dense(self._matrix[:, rows])
        _check_count_values(
            values,
            self.genes[rows],
            list(self.samples),
            self.source,
            require_integer=True,
            allow_all_zero=True,
        )
        return values

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> H5adSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


Source = CountStore | H5adSource


class MatrixSource(Protocol):
    """What the sharded steps read from: a store, an ``.h5ad`` file or an array."""

    shape: tuple[int, int]

    def read_columns(self, columns: slice | np.ndarray) -> np.ndarray: ...

    def read_rows(self, rows: slice | np.ndarray) -> np.ndarray: ...


def open_store(path: str | Path, *, layer: str | None = None) -> Source:
    """Open a count store (``.h5``) or an AnnData file (``.h5ad``) for shard reads."""
    if str(path).endswith(".h5ad"):
        return H5adSource(path, layer)
    checked = check_input_file(path, "count store", text=False)
    try:
        handle = h5py.File(checked, "r")
    except OSError as error:
        raise InputError(f"{checked}: not an HDF5 count store ({error}).") from None
    return CountStore(handle, str(checked))


def read_sample_shard(store: Source, shard_index: int, samples_per_shard: int) -> np.ndarray:
    """All genes × the samples of shard ``shard_index`` (float64)."""
    return store.read_columns(shard_columns(store.shape[1], shard_index, samples_per_shard))


def read_gene_block(store: Source, rows: slice | np.ndarray) -> np.ndarray:
    """The genes ``rows`` (a slice or increasing indices) × all samples (float64)."""
    return store.read_rows(rows)


def _chunks(n_genes: int, n_samples: int, sample_chunk: int) -> tuple[int, int] | None:
    if n_genes == 0 or n_samples == 0:
        return None
    return (min(GENE_CHUNK, n_genes), min(max(sample_chunk, 1), n_samples))


def _write_ids(handle: h5py.File, name: str, ids: Sequence[object]) -> None:
    handle.create_dataset(
        name, data=np.asarray([str(i) for i in ids], dtype=object), dtype=_STRINGS
    )


@contextlib.contextmanager
def create_store(
    path: str | Path,
    genes: Sequence[object],
    samples: Sequence[object],
    *,
    dtype: np.dtype | type = np.float64,
    sample_chunk: int = SAMPLE_CHUNK,
) -> Iterator[CountStore]:
    """Create a store of known shape, to be filled shard by shard with ``write_columns``.

    The file appears under ``path`` only when the ``with`` block ends without error.
    """
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        _write_ids(handle, GENE_IDS, genes)
        _write_ids(handle, SAMPLE_IDS, samples)
        handle.create_dataset(
            COUNTS,
            shape=(len(genes), len(samples)),
            dtype=dtype,
            chunks=_chunks(len(genes), len(samples), sample_chunk),
        )
        yield CountStore(handle, str(path))


@contextlib.contextmanager
def opened_shards(
    shards: Sequence[str | Path], fix: str
) -> Iterator[tuple[list[Source], pd.Index, list[str]]]:
    """The per-shard stores of one result, open, with their common genes and their
    samples in shard order; closed on leaving.

    Raises
    ------
    InputError
        A shard's genes differ from the first shard's (``fix`` says what to do).
    """
    opened = [open_store(shard) for shard in shards]
    try:
        genes = opened[0].genes
        for part in opened[1:]:
            if not part.genes.equals(genes):
                raise InputError(
                    f"{part.source}: its genes differ from those of {opened[0].source}; {fix}"
                )
        yield opened, genes, [s for part in opened for s in part.samples]
    finally:
        for part in opened:
            part.close()


def gather_shards(shards: Sequence[str | Path], path: str | Path) -> None:
    """Concatenate per-shard stores (same genes, consecutive samples) into one store.

    Reads one shard at a time; the genes of every shard must be the first shard's.
    """
    fix = "every shard of one result must hold the same genes in the same order."
    with opened_shards(shards, fix) as (opened, genes, samples):
        dtype = opened[0].counts.dtype if isinstance(opened[0], CountStore) else np.float64
        with create_store(path, genes, samples, dtype=dtype) as out:
            start = 0
            for part in opened:
                out.write_columns(start, part.read_columns(slice(None)))
                start += part.shape[1]


def write_shard_store(
    path: str | Path, values: np.ndarray, genes: Sequence[object], samples: Sequence[object]
) -> None:
    """Write one shard's result (genes × its samples) as a store of its own."""
    with create_store(path, genes, samples, dtype=values.dtype) as out:
        out.write_columns(0, values)


def _bad_block_message(path: Path, header: list[str], delimiter: str, first_row: int) -> None:
    """Re-read the text as strings and raise naming the first bad cell from ``first_row`` on.

    Only on the error path: the blocks before ``first_row`` are parsed (pyarrow cannot
    start in the middle of a file) but not checked again.
    """
    source = str(path)
    types = dict.fromkeys(header, pa.string())
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
    )
    row = 0
    for batch in reader:
        row += batch.num_rows
        if row <= first_row:
            continue
        frame = batch.to_pandas().set_index(header[0])
        frame.columns = header[1:]
        _numeric_values(frame, source)  # raises naming gene, sample and cell
    raise InputError(f"{source}: a value from data row {first_row + 1} on could not be read.")


def tsv_to_store(
    path: str | Path,
    store_path: str | Path,
    *,
    block_rows: int | None = None,
    sample_chunk: int = SAMPLE_CHUNK,
    dtype: np.dtype | type = np.float64,
) -> None:
    """Convert a genes × samples TSV/CSV count matrix to a chunked store in one pass.

    The text is parsed about ``block_rows`` genes at a time (default:
    :data:`~cohortnorm.blocks.BLOCK_CELLS` cells' worth) by pyarrow's streaming CSV reader
    and each block appended to the store, so memory is one block (its text and its values)
    plus the gene IDs, whatever the number of genes. The checks are the importer's:
    unique non-empty gene IDs and sample names, every cell a number (the first bad cell is
    named), no missing, infinite or negative count, no sample whose counts are all zero.

    Raises
    ------
    InputError
        Naming the file and the gene, sample or cell at fault.
    """
    path = check_input_file(path)
    source = str(path)
    with explain_read_errors(path):
        header, _ = _first_line_fields(path)
        header = [name.strip() for name in header]
        samples = header[1:]
        if not samples:
            raise InputError(f"{source}: no sample columns found. Check the file's delimiter.")
        _check_labels(pd.Index(["?"]), samples, source)  # sample names, before any parsing
        delimiter = sniff_delimiter(path)
        types = {header[0]: pa.string()} | dict.fromkeys(samples, pa.float64())
        if block_rows is None:
            block_rows = max(1, BLOCK_CELLS // len(samples))
        # pyarrow refuses a row longer than a block: at least four first-line widths (and
        # 1 MiB), so that a later, longer line still fits.
        width = _line_width(path)
        block_size = max(1 << 20, 4 * width, width * block_rows)
        try:  # the reader parses its first block on opening
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    column_names=header, skip_rows=1, block_size=block_size, use_threads=False
                ),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
            )
        except pa.ArrowInvalid:
            _bad_block_message(path, header, delimiter, 0)
        genes: list[np.ndarray] = []
        expressed = np.zeros(len(samples), dtype=bool)
        with atomic_output(store_path) as temporary, h5py.File(temporary, "w") as handle:
            counts = handle.create_dataset(
                COUNTS,
                shape=(0, len(samples)),
                maxshape=(None, len(samples)),
                dtype=dtype,
                chunks=(GENE_CHUNK, min(sample_chunk, len(samples))),
            )
            start = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid:
                    _bad_block_message(path, header, delimiter, start)
                ids = batch.column(0).to_numpy(zero_copy_only=False).astype(object)
                values = np.asarray(
                    batch.select(range(1, batch.num_columns)).to_tensor(
                        row_major=False, null_to_nan=True
                    )
                )
                # An integer store must not truncate a fractional count silently.
                _check_count_values(
                    values,
                    ids,
                    samples,
                    source,
                    require_integer=np.dtype(dtype).kind in "iu",
                    allow_all_zero=True,
                )
                expressed |= values.any(axis=0)
                counts.resize(start + len(ids), axis=0)
                counts[start:] = values
                genes.append(ids)
                start += len(ids)
            gene_index = pd.Index(
                np.concatenate(genes) if genes else np.empty(0, object), dtype=object
            )
            _check_labels(gene_index, samples, source)
            if not expressed.all():
                names = [samples[i] for i in np.flatnonzero(~expressed)]
                raise InputError(
                    f"{source}: sample(s) {preview(names)} have 0 for every gene. Remove them "
                    "from the sample sheet or check the counting step."
                )
            _write_ids(handle, GENE_IDS, gene_index)
            _write_ids(handle, SAMPLE_IDS, samples)


def h5ad_to_store(
    path: str | Path,
    store_path: str | Path,
    *,
    layer: str | None = None,
    samples_per_read: int = 256,
    sample_chunk: int = SAMPLE_CHUNK,
) -> None:
    """Copy an ``.h5ad`` count matrix into a chunked store, ``samples_per_read`` at a time."""
    with H5adSource(path, layer) as source:
        with create_store(
            store_path, source.genes, source.samples, sample_chunk=sample_chunk
        ) as out:
            for start in range(0, source.shape[1], samples_per_read):
                columns = slice(start, min(start + samples_per_read, source.shape[1]))
                out.write_columns(start, source.read_columns(columns))
