"""End-to-end: the real ``snakemake`` on the pasilla cohort, checked against edgeR/DESeq2/sva.

The workflow runs once per module on the full pasilla matrix (14,599 genes × 7
samples, a few seconds). Every documented output is checked for existence and shape,
and its numbers against the R reference outputs in ``tests/data/pasilla/reference``.
"""

from __future__ import annotations

import gzip
import os
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
    ]
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
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    tpm = tables.read_matrix(target, dtype=np.float32)
    filtered = read(tmp_path / "results/counts/filtered_counts.tsv").loc[tpm.index]
    lengths = load_dataset("pasilla").lengths.reindex(tpm.index).to_numpy()
    expected = expression.tpm(filtered.to_numpy(), lengths).astype(np.float32)
    np.testing.assert_array_equal(tpm.to_numpy(), expected)  # float64 TPM rounded once
    (log_file,) = (tmp_path / "logs").rglob("tpm.log")
    assert "(float32)" in log_file.read_text()


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
    assert "confounded with batch" in text and "conditionuntreated" in text, text[-3000:]
    assert not (tmp_path / "results" / "batch" / "combat_logcpm.tsv").exists()


def test_single_sample_batch_is_mean_only_with_a_warning(tmp_path: Path) -> None:
    lonely = ["a", "a", "a", "b", "b", "b", "c"]
    config = base_config(tmp_path, samples=_sheet(tmp_path, batch=lonely))
    target = str(tmp_path / "results" / "batch" / "combat_logcpm.tsv")
    result = run_snakemake(tmp_path, config, target)
    assert result.returncode == 0, result.stderr[-3000:]
    (log_file,) = (tmp_path / "logs").rglob("batch_correction.log")
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
