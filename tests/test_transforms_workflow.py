"""VST, rlog and limma removeBatchEffect through the real workflow, against DESeq2 and limma.

The R outputs are in tests/data (tests/data/README.md): VST and rlog of the filterByExpr
counts with DESeq2's ratio size factors (blind, and with the design ~batch + condition),
and removeBatchEffect of the TMM logCPM with batch and design ~condition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_workflow import DATA, base_config, run_snakemake

from cohortnorm.vst import variance_stabilizing_transformation

pytestmark = pytest.mark.e2e

REF = DATA / "pasilla" / "reference"
EXTRA = DATA / "rlog_limma_extra"


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")


def assert_matches(ours: pd.DataFrame, reference: pd.DataFrame, tolerance: float) -> None:
    """Every value of `reference` (its genes: some fixtures keep every 4th gene only)."""
    assert set(reference.index) <= set(ours.index)
    assert list(ours.columns) == list(reference.columns)
    ours = ours.loc[reference.index]
    assert np.abs(ours.to_numpy() - reference.to_numpy()).max() <= tolerance


@pytest.fixture(scope="module")
def design_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VST and rlog with blind: false (design ~batch + condition) and removeBatchEffect."""
    workdir = tmp_path_factory.mktemp("transforms")
    config = base_config(
        workdir,
        transforms={
            "vst": {"blind": False, "nsub": None},
            "rlog": {"enabled": True, "blind": False},
        },
        batch_correction={
            "method": "remove_batch_effect",
            "batch": "batch",
            "covariates": ["condition"],
        },
    )
    result = run_snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "results"


def test_vst_with_the_design_equals_deseq2(design_run: Path) -> None:
    # varianceStabilizingTransformation(blind=FALSE) after estimateDispersions(~batch + condition)
    assert_matches(
        read(design_run / "normalization" / "vst.tsv"),
        read(REF / "extra_deseq2_vst_design.tsv.gz"),
        1e-6,
    )


def test_rlog_with_the_design_equals_deseq2(design_run: Path) -> None:
    assert_matches(
        read(design_run / "normalization" / "rlog.tsv"),
        read(EXTRA / "rlog_design_pasilla.tsv.gz"),
        1e-6,
    )


def test_remove_batch_effect_equals_limma(design_run: Path) -> None:
    # removeBatchEffect(edger_logcpm_filtered_TMM, batch = batch, design = model.matrix(~condition))
    assert_matches(
        read(design_run / "batch" / "removebatch_logcpm.tsv"),
        read(REF / "extra_limma_removeBatchEffect.tsv.gz"),
        1e-9,
    )
    params = pd.read_csv(design_run / "batch" / "remove_batch_effect_params.tsv", sep="\t")
    assert list(params.columns) == ["batch", "gene_id", "removed"]
    assert sorted(params["batch"].unique()) == ["paired-end", "single-read"]


def test_vst_and_batch_stages_are_drawn(design_run: Path) -> None:
    metrics = pd.read_csv(design_run / "qc" / "metrics.tsv", sep="\t")
    assert list(metrics["stage"]) == ["raw", "normalized", "vst", "batch_corrected"]
    assert (design_run / "qc" / "vst" / "pca.png").is_file()
    log = (design_run / "logs" / "batch_correction.log").read_text()
    assert "not use it for differential expression" in log


def test_blind_vst_and_rlog_equal_deseq2_and_the_covariate_run(tmp_path: Path) -> None:
    # Marioni, blind (design ~1): vst with nsub 1000 (the default), rlog with our
    # dispersion trend, removeBatchEffect with a numeric covariate (scaled log2 library
    # size, as the reference script computes it, written into a copy of the sheet).
    ref = DATA / "marioni" / "reference"
    info = pd.read_csv(ref / "extra_INFO.tsv", sep="\t", header=None, index_col=0)[1]
    covariate = dict(item.split("=") for item in info["removeBatchEffect_covariate_cov"].split())
    sheet = pd.read_csv(DATA / "marioni" / "samples.tsv", sep="\t", dtype=str)
    sheet["log_lib"] = [covariate[s] for s in sheet["sample"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    config = base_config(
        tmp_path,
        samples=str(tmp_path / "samples.tsv"),
        counts={"format": "matrix", "path": str(DATA / "marioni" / "counts.tsv.gz")},
        lengths=str(DATA / "marioni" / "lengths.tsv.gz"),
        transforms={"rlog": {"enabled": True}},
        batch_correction={
            "method": "remove_batch_effect",
            "batch": "batch",
            "covariates": ["condition"],
            "remove_batch_effect": {"covariates": ["log_lib"]},
        },
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "results"
    assert_matches(
        read(out / "normalization" / "vst.tsv"),
        read(ref / "extra_deseq2_vst_nsub1000.tsv.gz"),
        1e-6,
    )
    assert_matches(
        read(out / "normalization" / "rlog.tsv"), read(ref / "extra_deseq2_rlog_blind.tsv.gz"), 1e-6
    )
    assert_matches(
        read(out / "batch" / "removebatch_logcpm.tsv"),
        read(ref / "extra_limma_removeBatchEffect_covariate.tsv.gz"),
        1e-9,
    )


def test_too_few_genes_for_nsub_stops_when_asked_and_says_how_to_run_the_full_vst(
    tmp_path: Path,
) -> None:
    config = base_config(
        tmp_path,
        transforms={"vst": {"nsub": 100000, "too_few_genes": "stop"}},
        batch_correction={"method": "none"},
    )
    result = run_snakemake(tmp_path, config, str(tmp_path / "results/normalization/vst.tsv"))
    assert result.returncode != 0
    text = " ".join((result.stdout + result.stderr).split())
    assert "vst with nsub=100000 needs at least 100000 genes, but there are 7919" in text
    assert "Set transforms.vst.nsub: null to run the full varianceStabilizingTransformation" in text
    assert not (tmp_path / "results" / "normalization" / "vst.tsv").exists()


def test_too_few_genes_for_nsub_runs_the_full_vst_by_default_and_says_so(
    tmp_path: Path,
) -> None:
    config = base_config(
        tmp_path, transforms={"vst": {"nsub": 100000}}, batch_correction={"method": "none"}
    )
    target = tmp_path / "results/normalization/vst.tsv"
    filtered_file = tmp_path / "results/counts/filtered_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target), str(filtered_file))
    assert result.returncode == 0, result.stderr[-3000:]
    log = " ".join((tmp_path / "results/logs/transform_vst.log").read_text().split())
    assert "vst with nsub=100000 needs at least 100000 genes, but there are 7919" in log
    assert "ran varianceStabilizingTransformation instead" in log
    filtered = pd.read_csv(filtered_file, sep="\t", index_col=0)
    expected = variance_stabilizing_transformation(filtered.to_numpy(dtype=float))
    ours = pd.read_csv(target, sep="\t", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(ours.to_numpy(), expected)


def test_fit_type_local_stops_before_any_job(tmp_path: Path) -> None:
    config = base_config(tmp_path, transforms={"vst": {"fit_type": "local"}})
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert (
        "transforms.vst.fit_type is local, which needs DESeq2's locfit regression; it is not "
        "implemented here. Use fit_type: parametric (DESeq2's default) or fit_type: mean."
    ) in " ".join((result.stdout + result.stderr).split())


def test_unblind_transform_needs_its_design_columns(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        transforms={"rlog": {"enabled": True, "blind": False}},
        batch_correction={"method": "none", "batch": "lane", "covariates": ["condition"]},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    text = " ".join((result.stdout + result.stderr).split())
    assert "transforms.rlog.blind is false, which uses the design ~ lane + condition" in text
    assert "has no column lane (its columns: sample, condition, batch, n_lanes)" in text


def test_combat_and_combat_seq_cannot_be_listed_together(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        batch_correction={"method": ["combat", "combat_seq"], "batch": "batch"},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert (
        "batch_correction.method lists both combat and combat_seq, which write the same "
        "parameter table batch/combat_params.tsv"
    ) in " ".join((result.stdout + result.stderr).split())


def test_tpm_from_a_list_needs_exactly_one_counts_method(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        batch_correction={
            "method": ["combat", "remove_batch_effect"],
            "batch": "batch",
            "covariates": ["condition"],
        },
        tpm={"source": "batch_corrected"},
    )
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert (
        "tpm.source is batch_corrected, which needs exactly one method of "
        "batch_correction.method (combat, remove_batch_effect) to give counts; 0 do"
    ) in " ".join((result.stdout + result.stderr).split())


def test_remove_batch_effect_covariate_must_be_numeric(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        transforms={"vst": {"enabled": False}},
        batch_correction={
            "method": "remove_batch_effect",
            "batch": "batch",
            "covariates": ["condition"],
            "remove_batch_effect": {"covariates": ["batch"]},
        },
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    text = " ".join((result.stdout + result.stderr).split())
    assert (
        "batch_correction.remove_batch_effect.covariates column 'batch' must hold numbers" in text
    )
