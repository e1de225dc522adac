"""Scale I/O: Parquet matrices, AnnData .h5ad input/output and blocked processing.

The Parquet path must give the same numbers as the TSV path, the blocked code the
same numbers as the unblocked one (block sizes are shrunk so that a small matrix is
cut into many blocks), and an .h5ad file must round-trip through anndata.
"""

from __future__ import annotations

import platform
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATA, load_dataset
from test_workflow import base_config, run_snakemake

from cohortnorm import edger, runner
from cohortnorm.io import matrix_files, tables
from cohortnorm.io.h5ad import write_h5ad_layers
from cohortnorm.io.importers import import_counts

anndata = pytest.importorskip("anndata")


@pytest.fixture
def matrix() -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(203, 11)) * 10.0 ** rng.integers(-3, 8, size=(203, 11))
    values[4, 2] = np.nan
    genes = [f"ENSG{i:05d}" for i in range(203)]
    return values, genes, [f"S{j}" for j in range(11)]


@pytest.mark.parametrize("kind", ["float", "int"])
def test_parquet_and_blocked_tsv_match_write_table(tmp_path, monkeypatch, matrix, kind) -> None:
    values, genes, samples = matrix
    if kind == "int":
        values = np.random.default_rng(1).poisson(50, size=values.shape).astype(np.int64)
    frame = pd.DataFrame(values, index=pd.Index(genes, name="gene_id"), columns=samples)
    tables.write_table(frame, tmp_path / "whole.tsv", index_label="gene_id")
    monkeypatch.setattr(tables, "BLOCK_CELLS", 7 * len(samples))  # 7 genes per block
    tables.write_matrix(values, genes, samples, tmp_path / "blocked.tsv")
    tables.write_matrix(values, genes, samples, tmp_path / "blocked.parquet")
    # The blocked TSV is byte-identical to the one-shot writer.
    assert (tmp_path / "blocked.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    for name in ("blocked.tsv", "blocked.parquet"):
        back = tables.read_matrix(tmp_path / name)
        assert back.index.name == "gene_id"
        assert list(back.index) == genes and list(back.columns) == samples
        assert back.to_numpy().dtype == values.dtype
        np.testing.assert_array_equal(back.to_numpy(), values)
        as_float = tables.read_matrix(tmp_path / name, dtype=np.float64).to_numpy()
        assert as_float.dtype == np.float64 and as_float.flags.f_contiguous
        np.testing.assert_array_equal(as_float, values.astype(np.float64))


@pytest.mark.parametrize("kind", ["float64", "float32", "int"])
def test_arrow_handoff_and_exported_deliverables_equal_direct_writes(
    tmp_path, monkeypatch, matrix, kind
) -> None:
    # The workflow's hand-off (.arrow) reads back the same values and dtype, and the
    # deliverable export_matrix writes from it has the bytes of a direct write, whatever
    # the number of formatting threads (small TSV parts: many parts per block).
    values, genes, samples = matrix
    if kind == "int":
        values = np.random.default_rng(1).poisson(50, size=values.shape).astype(np.int64)
    values = values.astype(np.float32) if kind == "float32" else values
    monkeypatch.setattr(tables, "BLOCK_CELLS", 7 * len(samples))
    monkeypatch.setattr(matrix_files, "_TSV_ROWS_PER_PART", 3)
    tables.write_matrix(values, genes, samples, tmp_path / "m.arrow")
    back = tables.read_matrix(tmp_path / "m.arrow", dtype=values.dtype)
    assert back.to_numpy().dtype == values.dtype and back.to_numpy().flags.f_contiguous
    np.testing.assert_array_equal(back.to_numpy(), values)
    assert list(back.index) == genes and list(back.columns) == samples
    threads = pa.cpu_count()
    try:
        for count in (1, 3):
            pa.set_cpu_count(count)
            for suffix in ("tsv", "parquet"):
                tables.write_matrix(values, genes, samples, tmp_path / f"direct{count}.{suffix}")
                shape = tables.convert_matrix(tmp_path / "m.arrow", tmp_path / f"x{count}.{suffix}")
                assert shape == values.shape
            assert (tmp_path / f"x{count}.tsv").read_bytes() == (
                tmp_path / f"direct{count}.tsv"
            ).read_bytes()
            parquet = tables.read_matrix(tmp_path / f"x{count}.parquet").to_numpy()
            np.testing.assert_array_equal(parquet, values)
    finally:
        pa.set_cpu_count(threads)
    assert (tmp_path / "x1.tsv").read_bytes() == (tmp_path / "x3.tsv").read_bytes()


def test_exported_deliverable_with_gene_names(tmp_path, matrix) -> None:
    values, genes, samples = matrix
    tables.write_matrix(values[:4], genes[:4], samples, tmp_path / "m.arrow")
    names = {genes[0]: "TARDBP", genes[2]: "MAPT"}
    tables.convert_matrix(tmp_path / "m.arrow", tmp_path / "named.tsv", names)
    lines = (tmp_path / "named.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["gene_id", "gene_name", "S0"]
    assert [line.split("\t")[1] for line in lines[1:]] == ["TARDBP", "", "MAPT", ""]
    text = pd.read_csv(tmp_path / "named.tsv", sep="\t", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(text.iloc[:, 1:].to_numpy(), values[:4])
    tables.write_matrix(values[:0], [], samples, tmp_path / "empty.arrow")
    tables.convert_matrix(tmp_path / "empty.arrow", tmp_path / "empty.parquet", names)
    assert pq.read_schema(tmp_path / "empty.parquet").names[:2] == ["gene_id", "gene_name"]


def test_float32_matrix_round_trips_as_float32(tmp_path, monkeypatch, matrix) -> None:
    # tpm.dtype float32: float32 Parquet columns, float32's shortest text in TSV.
    values, genes, samples = matrix
    narrow = values.astype(np.float32)
    narrow[0, 0] = np.float32(0.1)
    monkeypatch.setattr(tables, "BLOCK_CELLS", 7 * len(samples))
    for suffix in ("tsv", "parquet"):
        tables.write_matrix(narrow, genes, samples, tmp_path / f"f32.{suffix}")
        tables.write_matrix(narrow.astype(np.float64), genes, samples, tmp_path / f"f64.{suffix}")
        path = tmp_path / f"f32.{suffix}"
        back = tables.read_matrix(path, dtype=np.float32).to_numpy()
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, narrow)  # NaN included
        widened = tables.read_matrix(path).to_numpy()
        np.testing.assert_array_equal(widened.astype(np.float32), narrow)
        assert path.stat().st_size < (tmp_path / f"f64.{suffix}").stat().st_size
    first_row = (tmp_path / "f32.tsv").read_text().splitlines()[1].split("\t")
    assert first_row[1] == "0.1"  # float64 would write 0.10000000149011612
    schema = pq.read_schema(tmp_path / "f32.parquet")
    assert {schema.field(name).type for name in samples} == {pa.float32()}
    tables.write_matrix(narrow[:0], [], samples, tmp_path / "empty.parquet")
    empty = pq.read_schema(tmp_path / "empty.parquet")
    assert {empty.field(name).type for name in samples} == {pa.float32()}


def test_write_matrix_rows_selects_without_changing_values(tmp_path, monkeypatch, matrix) -> None:
    values, genes, samples = matrix
    monkeypatch.setattr(tables, "BLOCK_CELLS", 5 * len(samples))
    keep = np.arange(len(genes)) % 3 != 1
    for suffix in ("tsv", "parquet"):
        tables.write_matrix(values, genes, samples, tmp_path / f"rows.{suffix}", rows=keep)
        back = tables.read_matrix(tmp_path / f"rows.{suffix}")
        np.testing.assert_array_equal(back.to_numpy(), values[keep])
        assert list(back.index) == list(np.asarray(genes)[keep])


@pytest.mark.parametrize(
    "variant", ["int", "float", "crlf", "no_final_newline", "blank_line", "text_cell", "csv"]
)
def test_parallel_text_reader_equals_one_stream(tmp_path, monkeypatch, variant) -> None:
    rng = np.random.default_rng(7)
    values = rng.poisson(30, size=(997, 9)).astype(np.int64)
    frame = pd.DataFrame(
        values,
        index=pd.Index([f"g{i}" for i in range(997)], name="gene_id"),
        columns=[f"S{j}" for j in range(9)],
    )
    if variant == "float":
        frame = frame.astype(float)
        frame.iloc[500, 3] = 2.5  # far from the first block: the int64 parse fails late
    text = frame.to_csv(sep="," if variant == "csv" else "\t", lineterminator="\n")
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "no_final_newline":
        text = text.rstrip("\n")
    elif variant == "blank_line":
        lines = text.splitlines(keepends=True)
        text = "".join([*lines[:600], "\n", *lines[600:]])
    elif variant == "text_cell":
        lines = text.splitlines(keepends=True)
        fields = lines[801].split("\t")
        lines[801] = "\t".join([fields[0], "many", *fields[2:]])  # gene g800
        text = "".join(lines)
    path = tmp_path / ("counts.csv" if variant == "csv" else "counts.tsv")
    path.write_text(text)
    monkeypatch.setattr(tables, "_PARALLEL_MIN_BYTES", 1 << 62)
    one_stream = tables.read_text_matrix(path)
    monkeypatch.setattr(tables, "_PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(tables, "_MATRIX_CSV_BLOCK", 4096)  # many batches per range
    parallel = tables.read_text_matrix(path)
    pd.testing.assert_frame_equal(parallel, one_stream)
    if variant in {"int", "crlf", "no_final_newline", "blank_line", "csv"}:
        assert parallel.to_numpy().dtype == np.int64
        np.testing.assert_array_equal(parallel.to_numpy(), values)
        assert list(parallel.index) == list(frame.index)


def test_unknown_matrix_extension_is_refused(tmp_path, matrix) -> None:
    values, genes, samples = matrix
    with pytest.raises(Exception, match=r"\.tsv or \.parquet"):
        tables.write_matrix(values, genes, samples, tmp_path / "matrix.csv")


def test_blocked_filter_by_expr_equals_unblocked(monkeypatch) -> None:
    counts = load_dataset("pasilla").counts.to_numpy()
    group = load_dataset("pasilla").condition.to_numpy()
    whole = edger.filter_by_expr_details(counts, group=group)
    reference = load_dataset("pasilla").reference("edger_filterByExpr_keep")["keep"].to_numpy()
    np.testing.assert_array_equal(whole.keep, reference)
    monkeypatch.setattr(edger, "BLOCK_CELLS", 3 * counts.shape[1])  # 3 genes per block
    blocked = edger.filter_by_expr_details(counts, group=group)
    np.testing.assert_array_equal(blocked.keep, whole.keep)
    assert (blocked.cutoff_cpm, blocked.min_sample_size) == (
        whole.cutoff_cpm,
        whole.min_sample_size,
    )
    sizes = counts.sum(axis=0).astype(float)
    np.testing.assert_array_equal(
        edger.samples_reaching_cpm(counts, sizes, 2.5),
        (edger.cpm(counts, sizes) >= 2.5).sum(axis=1),
    )


def _pasilla_anndata(layer: str | None, sparse: bool):
    from scipy import sparse as sp

    pasilla = load_dataset("pasilla")
    counts = pasilla.counts
    x = counts.to_numpy().T.astype(np.float32)
    data = sp.csr_matrix(x) if sparse else x
    obs = pd.DataFrame(index=list(counts.columns))
    var = pd.DataFrame(index=list(counts.index))
    if layer is None:
        return anndata.AnnData(X=data, obs=obs, var=var), counts
    noise = np.full_like(x, 0.5)
    return anndata.AnnData(X=noise, obs=obs, var=var, layers={layer: data}), counts


@pytest.mark.parametrize(("layer", "sparse"), [(None, False), ("counts", True)])
def test_h5ad_input_round_trip(tmp_path, layer, sparse) -> None:
    adata, counts = _pasilla_anndata(layer, sparse)
    adata.write_h5ad(tmp_path / "in.h5ad")
    result = import_counts("h5ad", tmp_path / "in.h5ad", h5ad_layer=layer)
    assert result.counts.to_numpy().dtype == np.int64
    pd.testing.assert_frame_equal(result.counts, counts, check_names=False)


def test_h5ad_input_errors_name_the_layer(tmp_path) -> None:
    adata, _ = _pasilla_anndata(None, False)
    adata.write_h5ad(tmp_path / "in.h5ad")
    with pytest.raises(Exception, match="no layer 'raw'"):
        import_counts("h5ad", tmp_path / "in.h5ad", h5ad_layer="raw")
    adata.X = adata.X + 0.5
    adata.write_h5ad(tmp_path / "fractional.h5ad")
    with pytest.raises(Exception, match="X holds values that are not whole numbers"):
        import_counts("h5ad", tmp_path / "fractional.h5ad")


def test_h5ad_output_round_trip(tmp_path, matrix) -> None:
    values, genes, samples = matrix
    counts = np.arange(values.size, dtype=np.int64).reshape(values.shape)
    obs = pd.DataFrame({"batch": ["a", "b"] * 5 + ["a"], "lib_size": np.arange(11.0)})
    obs.index = samples
    write_h5ad_layers(
        tmp_path / "out.h5ad",
        obs,
        genes,
        iter([("counts", counts), ("logcpm", values)]),
        x_layer="logcpm",
    )
    back = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert list(back.obs_names) == samples and list(back.var_names) == genes
    np.testing.assert_array_equal(back.layers["counts"], counts.T)
    np.testing.assert_array_equal(back.layers["logcpm"], values.T)
    np.testing.assert_array_equal(back.X, values.T)
    assert list(back.obs["batch"]) == list(obs["batch"])


CORE = [
    "counts/raw_counts",
    "counts/filtered_counts",
    "normalization/logcpm",
    "normalization/cpm",
    "normalization/normalized_counts",
    "tpm/tpm",
    "batch/combat_logcpm",
]


@pytest.mark.e2e
def test_parquet_and_h5ad_workflow_match_tsv(tmp_path) -> None:
    """One TSV run from the pasilla matrix; one Parquet run from the same counts as .h5ad."""
    tsv_dir, pq_dir = tmp_path / "tsv", tmp_path / "parquet"
    tsv_dir.mkdir()
    pq_dir.mkdir()
    tsv_config = base_config(tsv_dir)
    targets = [str(tsv_dir / "results" / f"{stem}.tsv") for stem in CORE]
    result = run_snakemake(tsv_dir, tsv_config, *targets)
    assert result.returncode == 0, result.stderr[-4000:]

    adata, _ = _pasilla_anndata("counts", True)
    adata.write_h5ad(pq_dir / "pasilla.h5ad")
    pq_config = base_config(
        pq_dir,
        counts={"format": "h5ad", "path": str(pq_dir / "pasilla.h5ad"), "h5ad_layer": "counts"},
        io={"matrix_format": "parquet", "write_h5ad": True},
    )
    outputs = [f"{stem}.parquet" for stem in CORE] + ["normalization/normalized.h5ad"]
    targets = [str(pq_dir / "results" / name) for name in outputs]
    result = run_snakemake(pq_dir, pq_config, *targets)
    assert result.returncode == 0, result.stderr[-4000:]

    for stem in CORE:
        from_tsv = tables.read_matrix(tsv_dir / "results" / f"{stem}.tsv")
        from_parquet = tables.read_matrix(pq_dir / "results" / f"{stem}.parquet")
        pd.testing.assert_frame_equal(from_parquet, from_tsv, check_exact=True, obj=stem)
    assert not (pq_dir / "results" / "counts" / "raw_counts.tsv").exists()

    written = anndata.read_h5ad(pq_dir / "results" / "normalization" / "normalized.h5ad")
    logcpm = tables.read_matrix(tsv_dir / "results" / "normalization" / "logcpm.tsv")
    counts = tables.read_matrix(tsv_dir / "results" / "counts" / "filtered_counts.tsv")
    assert list(written.obs_names) == list(logcpm.columns)
    assert list(written.var_names) == list(logcpm.index)
    np.testing.assert_array_equal(written.X, logcpm.to_numpy().T)
    np.testing.assert_array_equal(written.layers["counts"], counts.to_numpy().T)
    for name in ("cpm", "normalized_counts", "tpm", "batch_corrected"):
        assert name in written.layers, name
    assert {"size_factor", "norm_factor", "condition"} <= set(written.obs.columns)
    assert DATA.exists()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_scripts_keep_freed_block_memory_for_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every script's run() sets glibc's malloc thresholds before its work starts."""
    calls: list[str] = []
    real = runner.reuse_freed_memory
    monkeypatch.setattr(runner, "reuse_freed_memory", lambda: calls.append("set") or real())
    smk = SimpleNamespace(log=[], rule="probe", threads=1)
    runner.run(lambda _smk, _logger: calls.append("main"), smk)
    assert calls == ["set", "main"]
    assert real() is True
