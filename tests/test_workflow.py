"""End-to-end: the real ``snakemake`` on the pasilla cohort, checked against edgeR/DESeq2/sva.

The workflow runs once per module on the full pasilla matrix (14,599 genes × 7
samples, a few seconds). Every documented output is checked for existence and shape,
and its numbers against the R reference outputs in ``tests/data/pasilla/reference``.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import DATA, REPO, load_dataset

from cohortnorm import expression
from cohortnorm.io import tables

pytestmark = pytest.mark.e2e

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run_snakemake(
    workdir: Path, config: dict, *extra: str, config_path: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the real snakemake in `workdir`; `config` is written there unless `config_path`."""
    if config_path is None:
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
        "--nocolor",
        *extra,
    ]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def base_config(workdir: Path, **overrides) -> dict:
    config = {
        "samples": str(DATA / "pasilla" / "samples.tsv"),
        "counts": {"format": "matrix", "path": str(DATA / "pasilla" / "counts.tsv.gz")},
        "lengths": str(DATA / "pasilla" / "lengths.tsv.gz"),
        "outdir": str(workdir / "results"),
        "filter": {"method": "filterByExpr", "group": "condition"},
        "normalization": {"method": "TMM"},
        "batch_correction": {"method": "combat", "batch": "batch", "covariates": ["condition"]},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def pasilla_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("pasilla")
    result = run_snakemake(workdir, base_config(workdir))
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "results"


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")


def test_every_documented_output_exists(pasilla_run: Path) -> None:
    for name in [
        "counts/raw_counts.tsv",
        "counts/sample_columns.tsv",
        "counts/filtered_counts.tsv",
        "counts/filter_report.tsv",
        "normalization/size_factors.tsv",
        "normalization/logcpm.tsv",
        "normalization/cpm.tsv",
        "normalization/normalized_counts.tsv",
        "tpm/tpm.tsv",
        "batch/combat_logcpm.tsv",
        "batch/combat_params.tsv",
        "provenance.json",
    ]:
        path = pasilla_run / name
        assert path.exists() and path.stat().st_size > 0, name


def test_raw_counts_are_the_input_integers(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    raw = read(pasilla_run / "counts/raw_counts.tsv")
    assert raw.index.name == "gene_id"
    assert list(raw.columns) == pasilla.samples["sample"].tolist()
    assert (raw.dtypes == np.int64).all()
    pd.testing.assert_frame_equal(raw, pasilla.counts[raw.columns], check_names=False)


def test_filtered_genes_match_filterbyexpr(pasilla_run: Path) -> None:
    keep = load_dataset("pasilla").reference("edger_filterByExpr_keep")["keep"]
    filtered = read(pasilla_run / "counts/filtered_counts.tsv")
    assert filtered.index.tolist() == keep.index[keep.to_numpy()].tolist()


def test_size_factors_match_edger_and_deseq2(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    factors = read(pasilla_run / "normalization/size_factors.tsv")
    assert list(factors.columns) == [
        "lib_size",
        "norm_factor",
        "effective_lib_size",
        "size_factor",
        "normalized_counts_factor",
        "normalized_counts_factors",
    ]
    assert set(factors["normalized_counts_factors"]) == {"DESeq2 ratio"}
    np.testing.assert_array_equal(factors["normalized_counts_factor"], factors["size_factor"])
    edger = pasilla.reference("edger_norm_factors")
    deseq = pasilla.reference("deseq2_size_factors")
    np.testing.assert_array_equal(factors["lib_size"], edger["lib_size_filtered"])
    np.testing.assert_allclose(factors["norm_factor"], edger["TMM"], rtol=1e-9)
    np.testing.assert_allclose(
        factors["effective_lib_size"], edger["lib_size_filtered"] * edger["TMM"], rtol=1e-9
    )
    np.testing.assert_allclose(factors["size_factor"], deseq["size_factor_filtered"], rtol=1e-9)


def test_logcpm_and_cpm_match_edger(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    logcpm = read(pasilla_run / "normalization/logcpm.tsv")
    cpm = read(pasilla_run / "normalization/cpm.tsv")
    np.testing.assert_allclose(logcpm, pasilla.reference("edger_logcpm_filtered_TMM"), atol=1e-9)
    np.testing.assert_allclose(cpm, pasilla.reference("edger_cpm_filtered_TMM"), rtol=1e-9)


def test_normalized_counts_divide_by_deseq2_size_factors(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    normalized = read(pasilla_run / "normalization/normalized_counts.tsv")
    filtered = read(pasilla_run / "counts/filtered_counts.tsv")
    size_factor = pasilla.reference("deseq2_size_factors")["size_factor_filtered"]
    np.testing.assert_allclose(normalized, filtered / size_factor.to_numpy(), rtol=1e-12)


def test_tpm_follows_the_formula(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    tpm = read(pasilla_run / "tpm/tpm.tsv")
    filtered = read(pasilla_run / "counts/filtered_counts.tsv")
    lengths = pasilla.lengths.reindex(filtered.index)
    covered = lengths.notna() & (lengths > 0)
    assert tpm.index.tolist() == filtered.index[covered].tolist()
    rate = filtered[covered].div(lengths[covered], axis=0)
    np.testing.assert_allclose(tpm, rate / rate.sum() * 1e6, rtol=1e-12)


def test_combat_matches_sva(pasilla_run: Path) -> None:
    pasilla = load_dataset("pasilla")
    corrected = read(pasilla_run / "batch/combat_logcpm.tsv")
    np.testing.assert_allclose(corrected, pasilla.reference("combat_logcpm_parametric"), atol=1e-8)


def test_rerun_is_byte_identical(pasilla_run: Path, tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, base_config(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    for name in [
        "counts/filtered_counts.tsv",
        "normalization/logcpm.tsv",
        "tpm/tpm.tsv",
        "batch/combat_logcpm.tsv",
        "normalization/size_factors.tsv",
        "qc/metrics.tsv",
        "qc/verdict.tsv",
        "qc/sample_flags.tsv",
        "qc/normalized/pca.png",
        "qc/batch_corrected/correlation.png",
        "qc/batch_vs_condition.png",
    ]:
        assert (tmp_path / "results" / name).read_bytes() == (pasilla_run / name).read_bytes(), name


# ---------------------------------------------------------------- bad input


def _write_counts(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, sep="\t", index_label="gene_id")
    return str(path)


def _small_counts() -> pd.DataFrame:
    return load_dataset("pasilla").counts.iloc[:400].copy()


def _bad_counts(kind: str) -> pd.DataFrame:
    counts = _small_counts().astype(object)
    if kind == "negative":
        counts.iloc[3, 2] = -4
    elif kind == "non_integer":
        counts.iloc[5, 1] = 2.5
    elif kind == "missing":
        counts.iloc[7, 0] = np.nan
    elif kind == "duplicate_gene":
        counts.index = [counts.index[0], *counts.index[:-1]]
    elif kind == "all_zero_sample":
        counts["treated2"] = 0
    return counts


BAD_COUNTS = {
    "negative": ["negative", "treated"],
    "non_integer": ["integer"],
    "missing": ["untreated1"],
    "duplicate_gene": ["duplicate", "FBgn0000003"],
    "all_zero_sample": ["treated2", "zero"],
}


def assert_clean_failure(result: subprocess.CompletedProcess, workdir: Path, *needles: str) -> None:
    assert result.returncode != 0
    text = result.stdout + result.stderr
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, text[-3000:])
    # The user sees our message, not only a Python traceback.
    assert "ERROR" in text or "Error" in text
    assert not (workdir / "results" / "counts" / "raw_counts.tsv").exists()


@pytest.mark.parametrize("kind", sorted(BAD_COUNTS))
def test_bad_counts_give_a_clear_error_and_no_output(kind: str, tmp_path: Path) -> None:
    counts = _write_counts(tmp_path / "counts.tsv", _bad_counts(kind))
    config = base_config(tmp_path, counts={"format": "matrix", "path": counts})
    result = run_snakemake(tmp_path, config)
    assert_clean_failure(result, tmp_path, "counts.tsv", *BAD_COUNTS[kind])


def test_sample_missing_from_counts(tmp_path: Path) -> None:
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts().drop(columns="treated3"))
    config = base_config(tmp_path, counts={"format": "matrix", "path": counts})
    assert_clean_failure(run_snakemake(tmp_path, config), tmp_path, "treated3", "sample sheet")


def test_counts_column_without_sample_row(tmp_path: Path) -> None:
    frame = _small_counts()
    frame["stray_sample"] = frame["treated1"]
    counts = _write_counts(tmp_path / "counts.tsv", frame)
    config = base_config(tmp_path, counts={"format": "matrix", "path": counts})
    assert_clean_failure(run_snakemake(tmp_path, config), tmp_path, "stray_sample", "subset")


def test_unknown_method_names_the_key(tmp_path: Path) -> None:
    config = base_config(tmp_path, normalization={"method": "quantile"})
    assert_clean_failure(
        run_snakemake(tmp_path, config), tmp_path, "normalization.method", "quantile"
    )


def test_tpm_dtype_float32_runs_and_float16_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    config = base_config(tmp_path, tpm={"dtype": "float16"})
    assert_clean_failure(run_snakemake(tmp_path, config), tmp_path, "tpm.dtype", "float16")
    config["tpm"] = {"dtype": "float32"}
    filtered_file = tmp_path / "results/counts/filtered_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target), str(filtered_file))
    assert result.returncode == 0, result.stderr[-3000:]
    tpm = tables.read_matrix(target, dtype=np.float32)
    filtered = read(filtered_file).loc[tpm.index]
    lengths = load_dataset("pasilla").lengths.reindex(tpm.index).to_numpy()
    expected = expression.tpm(filtered.to_numpy(), lengths).astype(np.float32)
    np.testing.assert_array_equal(tpm.to_numpy(), expected)  # float64 TPM rounded once
    assert "(float32)" in (tmp_path / "results" / "logs" / "tpm.log").read_text()


def test_unknown_config_key_names_the_key(tmp_path: Path) -> None:
    config = base_config(tmp_path, normalisation={"method": "TMM"})
    assert_clean_failure(run_snakemake(tmp_path, config), tmp_path, "normalisation")


def test_gzipped_crlf_counts_just_work(tmp_path: Path) -> None:
    text = _small_counts().to_csv(sep="\t", index_label="gene_id").replace("\n", "\r\n")
    path = tmp_path / "counts.tsv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write(text)
    config = base_config(
        tmp_path,
        counts={"format": "matrix", "path": str(path)},
        batch_correction={"method": "none"},
    )
    result = run_snakemake(tmp_path, config, str(tmp_path / "results/counts/raw_counts.tsv"))
    assert result.returncode == 0, result.stderr[-3000:]
    raw = read(tmp_path / "results/counts/raw_counts.tsv")
    pd.testing.assert_frame_equal(raw, _small_counts(), check_names=False)


def test_dry_run_lists_the_rule_chain(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, base_config(tmp_path), "--dry-run", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in [
        "import_counts",
        "filter_counts",
        "size_factors",
        "normalized_values",
        "tpm",
        "batch_correction",
    ]:
        assert rule in result.stdout + result.stderr


def _sheet(tmp_path: Path, **columns: list[str]) -> str:
    sheet = pd.read_csv(DATA / "pasilla" / "samples.tsv", sep="\t", dtype=str)
    for name, values in columns.items():
        if values is None:
            sheet = sheet.drop(columns=name)
        else:
            sheet[name] = values
    path = tmp_path / "samples.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    return str(path)


def test_sample_sheet_missing_group_column(tmp_path: Path) -> None:
    config = base_config(tmp_path, samples=_sheet(tmp_path, condition=None))
    assert_clean_failure(run_snakemake(tmp_path, config), tmp_path, "samples.tsv", "condition")


def test_batch_confounded_with_condition(tmp_path: Path) -> None:
    confounded = ["site1"] * 4 + ["site2"] * 3  # exactly the untreated / treated split
    config = base_config(tmp_path, samples=_sheet(tmp_path, batch=confounded))
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    for needle in [
        "is confounded with the covariate(s) 'condition'",
        "batch site1: untreated (4); batch site2: treated (3)",
        "would remove the biology",
        "batch_correction.method: none",
    ]:
        assert needle in text, text[-3000:]
    # Refused before the first job: nothing was imported.
    assert not (tmp_path / "results" / "counts").exists()


def test_single_sample_batch_is_mean_only_with_a_warning(tmp_path: Path) -> None:
    lonely = ["a", "a", "a", "b", "b", "b", "c"]
    config = base_config(tmp_path, samples=_sheet(tmp_path, batch=lonely))
    target = str(tmp_path / "results" / "batch" / "combat_logcpm.tsv")
    result = run_snakemake(tmp_path, config, target)
    assert result.returncode == 0, result.stderr[-3000:]
    (log_file,) = (tmp_path / "results" / "logs").rglob("batch_correction.log")
    logged = log_file.read_text()
    assert "single sample" in logged and "mean.only" in logged


def test_invalid_gene_length_is_refused_at_import(tmp_path: Path) -> None:
    lengths = pd.read_csv(DATA / "pasilla" / "lengths.tsv.gz", sep="\t", index_col=0)
    lengths.loc["FBgn0000008", "length"] = 0
    lengths_path = tmp_path / "lengths.tsv"
    lengths.to_csv(lengths_path, sep="\t")
    config = base_config(tmp_path, lengths=str(lengths_path))
    assert_clean_failure(
        run_snakemake(tmp_path, config), tmp_path, "lengths.tsv", "FBgn0000008", "line 3"
    )


def test_kept_gene_without_length_is_reported_or_refused(tmp_path: Path) -> None:
    lengths = pd.read_csv(DATA / "pasilla" / "lengths.tsv.gz", sep="\t", index_col=0)
    lengths = lengths.drop(index="FBgn0000008")  # a gene filterByExpr keeps
    lengths_path = tmp_path / "lengths.tsv"
    lengths.to_csv(lengths_path, sep="\t")
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    config = base_config(tmp_path, lengths=str(lengths_path))
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FBgn0000008" not in read(target).index
    assert "left out of TPM" in result.stderr + result.stdout
    config["tpm"] = {"missing_lengths": "error"}
    target.unlink()
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode != 0
    assert "FBgn0000008" in result.stderr and "missing_lengths" in result.stderr
    assert not target.exists()


# ---------------------------------------------------------------- import: names and files


def _featurecounts_file(path: Path, counts: pd.DataFrame, columns: list[str]) -> str:
    """`counts` in featureCounts' layout, its sample columns named `columns` (BAM paths)."""
    lines = [
        '# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "dmel.gtf" "-o" "x.txt"',
        "\t".join(["Geneid", "Chr", "Start", "End", "Strand", "Length", *columns]),
    ]
    for gene, row in counts.iterrows():
        values = "\t".join(str(v) for v in row)
        lines.append(f"{gene}\tchr2L\t100\t1099\t+\t1000\t{values}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_featurecounts_columns_map_to_samples_exactly(tmp_path: Path) -> None:
    counts = _small_counts()
    samples = list(counts.columns)
    shuffled = samples[::-1]  # the BAM columns in another order than the sheet
    columns = [f"/data/run1/{s}_Aligned.sortedByCoord.out.bam" for s in shuffled]
    path = _featurecounts_file(tmp_path / "counts.txt", counts[shuffled], columns)
    config = base_config(
        tmp_path,
        counts={"format": "featurecounts", "path": path},
        batch_correction={"method": "none"},
    )
    table = tmp_path / "results/counts/sample_columns.tsv"
    raw_file = tmp_path / "results/counts/raw_counts.tsv"
    result = run_snakemake(tmp_path, config, str(table), str(raw_file))
    assert result.returncode == 0, result.stderr[-3000:]
    raw = read(raw_file)
    pd.testing.assert_frame_equal(raw, counts, check_names=False)
    mapping = pd.read_csv(table, sep="\t", dtype=str)
    assert list(mapping.columns) == ["sample", "source"]
    assert mapping["sample"].tolist() == samples
    assert mapping["source"].tolist() == [
        f"/data/run1/{s}_Aligned.sortedByCoord.out.bam" for s in samples
    ]
    (log_file,) = (tmp_path / "results" / "logs").rglob("import_counts.log")
    logged = log_file.read_text()
    assert "sample ← source of its counts:" in logged
    assert "treated1   ← /data/run1/treated1_Aligned.sortedByCoord.out.bam" in logged


def test_featurecounts_prefix_is_not_a_match_end_to_end(tmp_path: Path) -> None:
    # Sheet sample treated1 with no treated1 BAM but a treated11 BAM: once given
    # treated11's counts by prefix, now a stop that shows both lists.
    counts = _small_counts()
    columns = [f"/data/run1/{s}.bam" for s in counts.columns]
    columns[columns.index("/data/run1/treated1.bam")] = "/data/run1/treated11.bam"
    path = _featurecounts_file(tmp_path / "counts.txt", counts, columns)
    config = base_config(tmp_path, counts={"format": "featurecounts", "path": path})
    result = run_snakemake(tmp_path, config)
    assert_clean_failure(
        result,
        tmp_path,
        "1 sample(s) of the sample sheet match no BAM column: treated1.",
        "treated1 ",
        "(no column)",
        "/data/run1/treated11.bam → treated11",
    )


@pytest.mark.parametrize("kind", ["truncated", "not_gzip", "directory"])
def test_broken_count_file_gives_one_line(tmp_path: Path, kind: str) -> None:
    text = _small_counts().to_csv(sep="\t", index_label="gene_id")
    path = tmp_path / ("counts.tsv" if kind == "directory" else "counts.tsv.gz")
    if kind == "truncated":
        path.write_bytes(gzip.compress(text.encode())[:2000])
        expected = f"{path}: the gzip file is cut short"
    elif kind == "not_gzip":
        path.write_text(text)
        expected = f"{path}: the name ends in .gz but the file is not gzip-compressed."
    else:
        path.mkdir()
        expected = f"{path}: is a directory, not a file."
    config = base_config(tmp_path, counts={"format": "matrix", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert_clean_failure(result, tmp_path, expected)
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('"1,000"', "'1,000' is written with a thousands separator"),
        ("99999999999999999999", "1e+20 is too large for a read count"),
    ],
)
def test_unreadable_count_values_end_to_end(tmp_path: Path, cell: str, expected: str) -> None:
    text = _small_counts().to_csv(index_label="gene_id").splitlines()
    fields = text[3].split(",")
    fields[2] = cell
    text[3] = ",".join(fields)
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(text) + "\n")
    config = base_config(tmp_path, counts={"format": "matrix", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert_clean_failure(
        result, tmp_path, f"{path}: gene FBgn0000014, sample untreated2: {expected}"
    )


def test_options_that_do_not_apply_warn_in_the_import_log(tmp_path: Path) -> None:
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts())
    config = base_config(
        tmp_path,
        counts={"format": "matrix", "path": counts, "counts_from_abundance": "scaledTPM"},
    )
    result = run_snakemake(tmp_path, config, str(tmp_path / "results/counts/raw_counts.tsv"))
    assert result.returncode == 0, result.stderr[-3000:]
    (log_file,) = (tmp_path / "results" / "logs").rglob("import_counts.log")
    assert (
        "WARNING [import_counts] counts.counts_from_abundance is 'scaledTPM', but format "
        "'matrix' reads gene-level read counts" in log_file.read_text()
    )


def test_headerless_tx2gene_end_to_end(tmp_path: Path) -> None:
    salmon = DATA / "salmon_isoformswitch"
    lines = (salmon / "tx2gene.tsv").read_text().splitlines()
    headerless = tmp_path / "tx2gene.tsv"
    headerless.write_text("\n".join(lines[1:]) + "\n")  # its first row is a mapping
    outputs = {}
    for name, tx2gene in (("header", salmon / "tx2gene.tsv"), ("headerless", headerless)):
        workdir = tmp_path / name
        workdir.mkdir()
        config = base_config(
            workdir,
            samples=str(salmon / "samples.tsv"),
            counts={
                "format": "salmon",
                "path": str(salmon / "raw" / "{sample}" / "quant.sf.gz"),
                "tx2gene": str(tx2gene),
            },
            batch_correction={"method": "none"},
        )
        del config["lengths"]
        target = workdir / "results/counts/raw_counts.tsv"
        result = run_snakemake(workdir, config, str(target))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[name] = read(target)
        (log_file,) = (workdir / "results" / "logs").rglob("import_counts.log")
        found = "no header line" if name == "headerless" else "a header line"
        assert f"tx2gene table read with {found}" in log_file.read_text()
    pd.testing.assert_frame_equal(outputs["headerless"], outputs["header"])
    first_gene = lines[1].split("\t")[1]
    assert first_gene in outputs["headerless"].index


def test_h5ad_x_not_counts_names_the_layer_end_to_end(tmp_path: Path) -> None:
    import anndata

    counts = _small_counts()
    adata = anndata.AnnData(
        X=np.log1p(counts.T.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=list(counts.columns)),
        var=pd.DataFrame(index=list(counts.index)),
        layers={"raw_counts": counts.T.to_numpy(dtype=np.float32)},
    )
    path = tmp_path / "cohort.h5ad"
    adata.write_h5ad(path)
    config = base_config(tmp_path, counts={"format": "h5ad", "path": str(path)})
    assert_clean_failure(
        run_snakemake(tmp_path, config),
        tmp_path,
        f"{path}: X holds values that are not whole numbers",
        "set counts.h5ad_layer: raw_counts.",
    )


# ------------------------------------------------ TPM of quantifier (tximport) input

SALMON = DATA / "salmon_isoformswitch"


def salmon_config(workdir: Path, cfa: str, **overrides) -> dict:
    config = {
        "samples": str(SALMON / "samples.tsv"),
        "counts": {
            "format": "salmon",
            "path": str(SALMON / "raw" / "{sample}" / "quant.sf.gz"),
            "tx2gene": str(SALMON / "tx2gene.tsv"),
            "counts_from_abundance": cfa,
        },
        "outdir": str(workdir / "results"),
        "filter": {"method": "filterByExpr", "group": "condition"},
        "batch_correction": {"method": "none"},
    }
    config.update(overrides)
    return config


def tximport_reference(kind: str, cfa: str) -> pd.DataFrame:
    return read(SALMON / "reference" / f"tximport_gene_{kind}_cfa-{cfa}.tsv.gz")


@pytest.mark.parametrize("cfa", ["no", "scaledTPM", "lengthScaledTPM"])
def test_quantifier_tpm_is_tximport_abundance(cfa: str, tmp_path: Path) -> None:
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    others = [
        tmp_path / "results" / "counts" / f"{name}.tsv"
        for name in ("abundance_tpm", "filtered_counts")
    ]
    result = run_snakemake(tmp_path, salmon_config(tmp_path, cfa), str(target), *map(str, others))
    assert result.returncode == 0, result.stderr[-3000:]
    expected = tximport_reference("abundance", cfa)
    # The import keeps tximport's abundance for every gene ...
    abundance = read(tmp_path / "results" / "counts" / "abundance_tpm.tsv")
    pd.testing.assert_frame_equal(abundance, expected, check_exact=False, rtol=1e-14, atol=0)
    # ... and tpm/tpm is that abundance for the kept genes, not renormalized.
    tpm = read(target)
    kept = read(tmp_path / "results" / "counts" / "filtered_counts.tsv")
    assert tpm.index.tolist() == kept.index.tolist()
    assert 0 < len(kept) < len(expected)
    np.testing.assert_allclose(tpm, expected.loc[tpm.index, tpm.columns], rtol=1e-14, atol=0)
    assert "not renormalized" in (tmp_path / "results" / "logs" / "tpm.log").read_text()


@pytest.mark.parametrize(
    ("fmt", "pattern", "samples"),
    [
        ("kallisto", "kallisto/{sample}/abundance.tsv.gz", ["hESC_0", "iPS_0", "Fibroblasts_0"]),
        ("rsem", "rsem/{sample}.genes.results.gz", ["hESC_0", "Fibroblasts_0"]),
    ],
)
def test_kallisto_and_rsem_tpm_is_tximport_abundance(
    fmt: str, pattern: str, samples: list[str], tmp_path: Path
) -> None:
    # The fixtures hold the Salmon values (kallisto, transcripts) and tximport's gene-level
    # reference (RSEM genes.results) of these samples: see tests/data/importers/README.md.
    sheet = pd.read_csv(SALMON / "samples.tsv", sep="\t").set_index("sample").loc[samples]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t")
    counts = {"format": fmt, "path": str(DATA / "importers" / pattern)}
    if fmt == "kallisto":
        counts |= {"tx2gene": str(SALMON / "tx2gene.tsv"), "counts_from_abundance": "scaledTPM"}
    config = salmon_config(
        tmp_path,
        "no",
        samples=str(tmp_path / "samples.tsv"),
        counts=counts,
        filter={"method": "none"},
    )
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    tpm = read(target)
    expected = tximport_reference("abundance", "scaledTPM" if fmt == "kallisto" else "no")
    assert tpm.columns.tolist() == samples
    np.testing.assert_allclose(tpm, expected.loc[tpm.index, samples], rtol=1e-14, atol=0)
    assert set(tpm.index) == set(expected.index)


def test_quantifier_fpkm_comes_from_its_tpm_and_lengths_file_is_ignored(tmp_path: Path) -> None:
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    config = salmon_config(
        tmp_path,
        "lengthScaledTPM",
        tpm={"unit": "FPKM"},
        lengths=str(DATA / "pasilla" / "lengths.tsv.gz"),
    )
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    abundance = tximport_reference("abundance", "lengthScaledTPM")
    length = tximport_reference("length", "lengthScaledTPM")
    # FPKM = TPM · 1e9 / Σ(TPM · length), the sum over every gene tximport returns.
    expected = abundance * 1e9 / (abundance * length).sum()
    fpkm = read(target)
    np.testing.assert_allclose(fpkm, expected.loc[fpkm.index, fpkm.columns], rtol=1e-13, atol=0)
    (log_file,) = (tmp_path / "results" / "logs").rglob("import_counts.log")
    assert "lengths.tsv.gz) is not used" in log_file.read_text()


def test_quantifier_tpm_from_batch_corrected_counts_is_refused(tmp_path: Path) -> None:
    sheet = pd.read_csv(SALMON / "samples.tsv", sep="\t")
    sheet["batch"] = ["A", "B"] * 3
    sheet_path = tmp_path / "samples.tsv"
    sheet.to_csv(sheet_path, sep="\t", index=False)
    config = salmon_config(
        tmp_path,
        "no",
        samples=str(sheet_path),
        tpm={"source": "batch_corrected"},
        batch_correction={"method": "combat_seq", "batch": "batch", "covariates": ["condition"]},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "tpm.source is batch_corrected" in text and "quantifier's own TPM" in text
    assert "Set tpm.source to filtered" in text


# ----------------------------------------------------------- lengths matching


def gtex_config(workdir: Path, lengths: Path) -> dict:
    gtex = DATA / "gtex_lung_chr21"
    return {
        "samples": str(gtex / "samples.tsv"),
        "counts": {"format": "matrix", "path": str(gtex / "counts.tsv.gz")},
        "lengths": str(lengths),
        "outdir": str(workdir / "results"),
        "filter": {"method": "filterByExpr"},
        "batch_correction": {"method": "none"},
    }


def test_unversioned_lengths_match_versioned_counts(tmp_path: Path) -> None:
    original = pd.read_csv(DATA / "gtex_lung_chr21" / "lengths.tsv.gz", sep="\t", dtype={0: str})
    original = original.set_index("gene_id")["length"]
    stripped = original.copy()
    stripped.index = [gene.split(".")[0] for gene in original.index]
    # One gene's stem twice in the table (two versions): which length is meant is unclear.
    ambiguous = original.index[1]
    stem = ambiguous.split(".")[0]
    stripped = stripped.drop(index=stem)
    extra = pd.Series([1000, 2000], index=[f"{stem}.1", f"{stem}.2"])
    lengths_path = tmp_path / "unversioned_lengths.tsv"
    pd.concat([stripped, extra]).rename("length").to_csv(
        lengths_path, sep="\t", index_label="gene_id"
    )
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    filtered_file = tmp_path / "results" / "counts" / "filtered_counts.tsv"
    config = gtex_config(tmp_path, lengths_path)
    result = run_snakemake(tmp_path, config, str(target), str(filtered_file))
    assert result.returncode == 0, result.stderr[-3000:]
    report = read(tmp_path / "results" / "counts" / "length_report.tsv")["value"]
    n = len(original)
    assert report["lengths_source"] == str(lengths_path)
    assert report["count_gene_ids"] == str(n)
    assert report["with_length"] == str(n - 1)
    assert report["matched_exactly"] == "0"
    assert report["matched_ignoring_ensembl_version"] == str(n - 1)
    assert report["ambiguous_ensembl_version"] == "1"
    (log_file,) = (tmp_path / "results" / "logs").rglob("import_counts.log")
    logged = log_file.read_text()
    assert f"{n - 1} of {n} count gene IDs found a length in {lengths_path}" in logged
    assert "ignoring the Ensembl version suffix" in logged and ambiguous in logged
    # Same TPM as with the versioned lengths, over the genes that have one.
    tpm = read(target)
    filtered = read(filtered_file)
    assert ambiguous not in tpm.index
    covered = filtered.drop(index=ambiguous, errors="ignore")
    rate = covered.div(original.loc[covered.index], axis=0)
    np.testing.assert_allclose(tpm.loc[covered.index], rate / rate.sum() * 1e6, rtol=1e-12)


def test_no_count_id_in_lengths_file_names_file_ids_and_fix(tmp_path: Path) -> None:
    lengths = pd.read_csv(DATA / "pasilla" / "lengths.tsv.gz", sep="\t", dtype={0: str})
    lengths["gene_id"] = "gene" + lengths["gene_id"].str.slice(4)  # another annotation's IDs
    lengths_path = tmp_path / "other_release.tsv"
    lengths.to_csv(lengths_path, sep="\t", index=False)
    target = tmp_path / "results" / "tpm" / "tpm.tsv"
    result = run_snakemake(tmp_path, base_config(tmp_path, lengths=str(lengths_path)), str(target))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"{lengths_path}: none of the" in text
    assert "FBgn0000008" in text and lengths["gene_id"].iloc[0] in text
    assert "same annotation" in text and "remove `lengths` from the config to skip TPM" in text
    assert "missing_lengths: drop" not in text
    assert not target.exists()
    report = read(tmp_path / "results" / "counts" / "length_report.tsv")["value"]
    assert report["with_length"] == "0"


# ------------------------------------------------ normalized counts and provenance


def test_normalized_counts_with_the_method_factors(tmp_path: Path) -> None:
    target = tmp_path / "results" / "normalization" / "normalized_counts.tsv"
    config = base_config(
        tmp_path, normalization={"method": "TMM", "normalized_counts_factors": "method"}
    )
    filtered_file = tmp_path / "results" / "counts" / "filtered_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target), str(filtered_file))
    assert result.returncode == 0, result.stderr[-3000:]
    edger = load_dataset("pasilla").reference("edger_norm_factors")
    effective = (edger["lib_size_filtered"] * edger["TMM"]).to_numpy()
    divisor = effective / np.exp(np.mean(np.log(effective)))
    filtered = read(filtered_file)
    np.testing.assert_allclose(read(target), filtered / divisor, rtol=1e-9)
    factors = read(tmp_path / "results" / "normalization" / "size_factors.tsv")
    np.testing.assert_allclose(factors["normalized_counts_factor"], divisor, rtol=1e-9)
    assert set(factors["normalized_counts_factors"]) == {"TMM"}


def test_provenance_records_anndata_and_h5py(pasilla_run: Path) -> None:
    import json
    from importlib import metadata

    packages = json.loads((pasilla_run / "provenance.json").read_text())["packages"]
    assert packages["anndata"] == metadata.version("anndata")
    assert packages["h5py"] == metadata.version("h5py")


# ------------------------------------------------- the user's config decides the run


def said(result: subprocess.CompletedProcess) -> str:
    """Everything snakemake printed (its errors go to stdout or stderr by phase)."""
    return result.stdout + result.stderr


def test_no_config_names_the_fix(tmp_path: Path) -> None:
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--nocolor"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "No config given" in said(result) and "--configfile my.yaml" in said(result)
    assert "make demo" in said(result)


def test_run_without_outdir_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    del config["outdir"]
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert "`outdir` is not set" in said(result), said(result)[-2000:]
    assert not (tmp_path / "results").exists()
    assert not (REPO / "results" / "demo" / "counts" / "gene_lengths.tsv").exists() or (
        (REPO / "results" / "demo" / "counts" / "gene_lengths.tsv").stat().st_mtime
        < (tmp_path / "config.yaml").stat().st_mtime
    )


def _featurecounts(path: Path, counts: pd.DataFrame) -> pd.Series:
    """A featureCounts table of `counts` whose Length column is not the demo's lengths."""
    lengths = pd.Series(np.arange(len(counts)) * 7 + 500, index=counts.index, name="Length")
    table = pd.DataFrame(
        {"Chr": "chr1", "Start": 1, "End": 2, "Strand": "+", "Length": lengths}, index=counts.index
    ).join(counts)
    with path.open("w") as handle:
        handle.write("# Program:featureCounts v2.0.1\n")
        table.to_csv(handle, sep="\t", index_label="Geneid")
    return lengths


def test_featurecounts_lengths_are_not_replaced_by_the_demo_lengths(tmp_path: Path) -> None:
    lengths = _featurecounts(tmp_path / "fc.txt", _small_counts())
    config = base_config(
        tmp_path,
        counts={"format": "featurecounts", "path": str(tmp_path / "fc.txt")},
        batch_correction={"method": "none"},
    )
    del config["lengths"]
    target = tmp_path / "results" / "counts" / "gene_lengths.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    written = pd.read_csv(target, sep="\t", index_col=0).iloc[:, 0]
    np.testing.assert_array_equal(written.loc[lengths.index].to_numpy(), lengths.to_numpy())
    settings = yaml.safe_load((tmp_path / "results/.cohortnorm/settings/import.json").read_text())
    assert settings["lengths"] is None


@pytest.mark.parametrize(
    ("outdir", "needle"),
    [
        ("", "`outdir` is not set"),
        ("   ", "`outdir` is empty"),
        ("/", "root of the file system"),
        (".", "the directory snakemake runs in"),
        ("{name}", "curly brace"),
    ],
)
def test_unusable_outdir_is_refused(tmp_path: Path, outdir: str, needle: str) -> None:
    result = run_snakemake(tmp_path, base_config(tmp_path, outdir=outdir), "-n")
    assert result.returncode != 0
    assert needle in said(result), said(result)[-2000:]


def test_outdir_equal_to_the_workflow_or_input_folder_is_refused(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, base_config(tmp_path, outdir=str(REPO)), "-n")
    assert "the workflow's own folder" in said(result), said(result)[-2000:]
    result = run_snakemake(tmp_path, base_config(tmp_path, outdir=str(DATA / "pasilla")), "-n")
    assert "the folder holding input" in said(result), said(result)[-2000:]


def test_absolute_outdir_keeps_logs_beside_the_outputs(tmp_path: Path) -> None:
    config = base_config(tmp_path, batch_correction={"method": "none"})
    target = tmp_path / "results" / "counts" / "raw_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "results" / "logs" / "import_counts.log").exists()
    assert (tmp_path / "results" / "benchmarks" / "import_counts.tsv").exists()
    assert not (tmp_path / "logs").exists()
    assert "//" not in said(result).replace("://", "")


# ----------------------------------------------------- the sample sheet, before any rule


@pytest.mark.parametrize("value", ["NA", "", "NaN", "N/A"])
@pytest.mark.parametrize(
    ("column", "key", "overrides"),
    [
        ("condition", "filter.group", {"batch_correction": {"method": "none"}}),
        ("batch", "batch_correction.batch", {}),
        (
            "sex",
            "batch_correction.covariates",
            {
                "batch_correction": {
                    "method": "combat",
                    "batch": "batch",
                    "covariates": ["condition", "sex"],
                }
            },
        ),
    ],
)
def test_missing_cell_stops_before_any_rule(tmp_path, value, column, key, overrides) -> None:
    sex = ["f", "m", "f", "m", "f", "m", "m"]
    sheet = pd.read_csv(DATA / "pasilla" / "samples.tsv", sep="\t", dtype=str)
    sheet["sex"] = sex
    sheet.loc[3, column] = value  # untreated4
    path = tmp_path / "samples.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    config = base_config(tmp_path, samples=str(path), **overrides)
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    text = said(result)
    for needle in [f"column {column!r}", key, "'untreated4'", "Fill in", "remove those samples"]:
        assert needle in text, text[-3000:]
    assert not (tmp_path / "results" / "counts").exists()


@pytest.mark.parametrize(
    ("name", "needle"),
    [("untreated1 ", "space or tab at its start or end"), ("untreated{1}", "curly brace")],
)
def test_bad_sample_name_is_explained(tmp_path: Path, name: str, needle: str) -> None:
    sheet = pd.read_csv(DATA / "pasilla" / "samples.tsv", sep="\t", dtype=str)
    sheet.loc[0, "sample"] = name
    path = tmp_path / "samples.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    per_sample = {"format": "htseq", "path": str(tmp_path / "{sample}.txt")}
    config = base_config(tmp_path, samples=str(path), counts=per_sample)
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert needle in said(result) and "line 2" in said(result), said(result)[-2000:]
    assert "WildcardError" not in said(result) and "Traceback" not in said(result)


def test_combat_seq_one_sample_batch_in_plain_words(tmp_path: Path) -> None:
    lonely = ["a", "a", "a", "b", "b", "b", "c"]
    config = base_config(
        tmp_path,
        samples=_sheet(tmp_path, batch=lonely),
        batch_correction={"method": "combat_seq", "batch": "batch", "covariates": ["condition"]},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "batch(es) c" in said(result) and "single sample" in said(result)
    assert "confounded" not in said(result)


def test_combat_without_residual_degrees_of_freedom_is_refused(tmp_path: Path) -> None:
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts()[["untreated1", "treated1"]])
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample\tcondition\tbatch\nuntreated1\tu\tA\ntreated1\tt\tB\n")
    config = base_config(
        tmp_path,
        samples=str(sheet),
        counts={"format": "matrix", "path": counts},
        filter={"method": "none"},
        batch_correction={"method": "combat", "batch": "batch", "covariates": []},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "0 residual degrees of freedom" in said(result), said(result)[-2000:]


# ----------------------------------------- one outdir, two working directories


def test_settings_changed_from_another_directory_rerun_the_jobs(tmp_path: Path) -> None:
    outdir = tmp_path / "shared"
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts())
    config = base_config(
        tmp_path,
        outdir=str(outdir),
        counts={"format": "matrix", "path": counts},
        batch_correction={"method": "none"},
        transforms={"vst": {"nsub": None}},  # a few hundred genes: the full VST
    )
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    target = str(outdir / "provenance.json")
    result = run_snakemake(first, config, target)
    assert result.returncode == 0, result.stderr[-3000:]
    config["normalization"] = {"method": "upperquartile"}
    result = run_snakemake(second, config, target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" not in result.stdout + said(result)
    factors = read(outdir / "normalization" / "size_factors.tsv")
    filtered = read(outdir / "counts" / "filtered_counts.tsv")
    from cohortnorm import edger

    expected = edger.calc_norm_factors(filtered.to_numpy(dtype=float), method="upperquartile")
    np.testing.assert_allclose(factors["norm_factor"].to_numpy(), expected, rtol=1e-12)
    provenance = (outdir / "provenance.json").read_text()
    assert '"method": "upperquartile"' in provenance and '"method": "TMM"' not in provenance
    # The same settings from the first directory again: nothing reruns.
    result = run_snakemake(second, config, target, "-n")
    assert "Nothing to be done" in result.stdout + said(result)


def test_a_running_lock_on_the_outdir_refuses_a_second_run(tmp_path: Path) -> None:
    import json
    import socket

    lock = tmp_path / "results" / ".cohortnorm" / "lock"
    lock.parent.mkdir(parents=True)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "workdir": "/elsewhere"}
    lock.write_text(json.dumps(holder))
    result = run_snakemake(tmp_path, base_config(tmp_path))
    assert result.returncode != 0
    assert "in use by another cohortnorm run" in said(result) and "/elsewhere" in said(result)
    # A lock left by a run that no longer exists is taken over.
    holder["pid"] = 2**22 + 12345
    lock.write_text(json.dumps(holder))
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts())
    config = base_config(
        tmp_path, counts={"format": "matrix", "path": counts}, batch_correction={"method": "none"}
    )
    result = run_snakemake(tmp_path, config, str(tmp_path / "results/counts/raw_counts.tsv"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not lock.exists()


# ------------------------------------------------------- from the user's own project


def test_module_import_from_another_project(tmp_path: Path) -> None:
    """`module cohortnorm: snakefile: <clone>/Snakefile` in the user's own Snakefile."""
    counts = _write_counts(tmp_path / "counts.tsv", _small_counts())
    config = base_config(
        tmp_path,
        outdir="results/mine",
        counts={"format": "matrix", "path": "counts.tsv"},  # relative to the project
        batch_correction={"method": "none"},
    )
    del config["lengths"]
    assert Path(counts).exists()
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(
        'configfile: "my.yaml"\n\n\n'
        "module cohortnorm:\n"
        f'    snakefile:\n        "{REPO / "Snakefile"}"\n'
        "    config:\n        config\n\n\n"
        "use rule * from cohortnorm as cohortnorm_*\n"
    )
    command = [SNAKEMAKE, "--cores", "2", "--nocolor", "results/mine/normalization/logcpm.tsv"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logcpm = read(tmp_path / "results/mine/normalization/logcpm.tsv")
    assert list(logcpm.columns) == list(_small_counts().columns)
    assert (tmp_path / "results/mine/logs/import_counts.log").exists()


def test_dry_run_sizes_jobs_from_the_h5ad_metadata(tmp_path: Path) -> None:
    """A 20,000 × 6,000 .h5ad: the requests come from its shape, not its bytes on disk."""
    anndata = pytest.importorskip("anndata")
    from scipy import sparse

    from cohortnorm import resources

    samples = [f"S{i}" for i in range(6000)]
    matrix = sparse.random(6000, 20_000, density=1e-4, format="csr", random_state=0)
    adata = anndata.AnnData(matrix.astype(np.float32))
    adata.obs_names = samples
    adata.var_names = [f"G{i}" for i in range(20_000)]
    adata.write_h5ad(tmp_path / "counts.h5ad")
    sheet = pd.DataFrame({"sample": samples, "condition": ["a", "b"] * 3000})
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    config = base_config(
        tmp_path,
        samples=str(tmp_path / "samples.tsv"),
        counts={"format": "h5ad", "path": str(tmp_path / "counts.h5ad")},
        batch_correction={"method": "none"},
    )
    del config["lengths"]
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, said(result)[-3000:]
    requests = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:)", said(result), flags=re.M):
        name = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"mem_mb=(\d+)", block)
        if name and found:
            requests[name.group(1)] = int(found.group(1))
    for rule in ("import_counts", "filter_counts", "normalized_values"):
        expected = resources.mem_mb(resources.RULE_COSTS[rule], 20_000, 6000)
        assert requests[rule] == expected > 2000, (rule, requests)


def test_every_rule_name_in_the_docs_exists(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, base_config(tmp_path), "--list-rules")
    assert result.returncode == 0, said(result)[-2000:]
    rules = set(result.stdout.split())
    assert {"import_counts", "batch_correction_combat", "batch_correction_combat_seq"} <= rules
    named = set()
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| step | rule |") : readme.index("Every run also writes")]
    for row in table.splitlines()[2:]:
        if row.startswith("|"):
            named |= set(re.findall(r"`(\w+)`", row.split("|")[2]))
    slurm = (REPO / "docs" / "slurm.md").read_text()
    costs = slurm[slurm.index("| rule | m") : slurm.index("The measured peaks")]
    named |= {re.findall(r"`(\w+)`", row)[0] for row in costs.splitlines()[2:] if "`" in row}
    for text in (readme, slurm, (REPO / "config" / "README.md").read_text()):
        named |= set(re.findall(r"--forcerun (\w+)", text))
        named |= set(re.findall(r"\(rule `(\w+)`", text))
    assert "batch_correction_combat" in named and "provenance" in named
    assert named <= rules, named - rules


def test_two_concurrent_runs_from_different_directories(tmp_path: Path) -> None:
    """While one run writes an outdir, a second one from elsewhere stops at once."""
    import time

    outdir = tmp_path / "shared"
    config = base_config(tmp_path, outdir=str(outdir))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "config.yaml").write_text(yaml.safe_dump(config))
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(first), "--cores", "1"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    running = subprocess.Popen(
        [*command, "--configfile", str(first / "config.yaml"), "--nocolor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lock = outdir / ".cohortnorm" / "lock"
    try:
        deadline = time.time() + 120
        while not lock.exists() and running.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert lock.exists(), "the first run never took the lock"
        config["normalization"] = {"method": "upperquartile"}
        result = run_snakemake(second, config)
        assert result.returncode != 0
        assert "in use by another cohortnorm run" in said(result), said(result)[-2000:]
        assert str(first) in said(result)
    finally:
        output, _ = running.communicate(timeout=600)
    assert running.returncode == 0, output[-3000:]
    assert not lock.exists()
    provenance = (outdir / "provenance.json").read_text()
    assert '"method": "TMM"' in provenance
