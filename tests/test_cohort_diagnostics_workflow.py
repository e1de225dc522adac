"""scran, ComBat-ref, the design diagnostics, the biomarker panel, the MultiQC export and
the low-input flag where the user meets them: through the workflow (real snakemake).

The numbers are R's: scran's calculateSumFactors and the ComBat-ref authors' script run
with batch labels 1..k (tests/data/<dataset>/reference/extra_*, made by
tests/data/scran_extra/scran_extra_fixtures.R and combat_ref_extra/combat_ref_fixtures.R
from the reference scripts).
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from scipy.stats import fisher_exact
from test_workflow import base_config, run_snakemake

from cohortnorm.io import tables

pytestmark = pytest.mark.e2e

MARIONI = DATA / "marioni"
GTEX = DATA / "gtex_lung_chr21"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")


def _log(outdir: Path, name: str) -> str:
    return (outdir / "logs" / f"{name}.log").read_text()


@pytest.fixture(scope="module")
def marioni(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """marioni (10 samples, 2 batches): scran with sizes 2..10, ComBat-ref keeping condition."""
    workdir = tmp_path_factory.mktemp("marioni")
    config = base_config(
        workdir,
        samples=str(MARIONI / "samples.tsv"),
        counts={"format": "matrix", "path": str(MARIONI / "counts.tsv.gz")},
        lengths=str(MARIONI / "lengths.tsv.gz"),
        normalization={
            "method": "TMM",
            "size_factor_type": "scran",
            "scran": {"sizes": list(range(2, 11))},
        },
        batch_correction={"method": "combat_ref", "batch": "batch", "covariates": ["condition"]},
        tpm={"source": "batch_corrected"},
        qc={"gpca_permutations": 100},
    )
    result = run_snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "results"


def test_scran_size_factors_equal_scrans(marioni: Path) -> None:
    table = _read(marioni / "normalization" / "size_factors.tsv")
    # scran: calculateSumFactors(counts[keep, ], sizes = 2:10)
    ref = _read(MARIONI / "reference" / "extra_scran_sumfactors_sizes2toN.tsv.gz")["size_factor"]
    assert list(table.index) == list(ref.index)
    assert np.max(np.abs(table["size_factor"] / ref - 1)) <= 1e-9
    # normalized_counts divide by the scran factors (normalized_counts_factors: deseq2)
    assert set(table["normalized_counts_factors"]) == {"scran pooled"}
    np.testing.assert_array_equal(table["normalized_counts_factor"], table["size_factor"])
    counts = _read(marioni / "counts" / "filtered_counts.tsv")
    normalized = _read(marioni / "normalization" / "normalized_counts.tsv")
    np.testing.assert_allclose(normalized, counts / ref.to_numpy(), rtol=1e-12)
    assert "WARNING" not in _log(marioni, "size_factors")


def test_combat_ref_counts_equal_the_authors_script(marioni: Path) -> None:
    ours = _read(marioni / "batch" / "combat_ref_counts.tsv")
    ref = _read(MARIONI / "reference" / "extra_combat_ref_intbatch.tsv.gz")
    assert list(ours.index) == list(ref.index)
    assert list(ours.columns) == list(ref.columns)
    diff = ours.to_numpy(dtype=np.int64) - ref.to_numpy(dtype=np.int64)
    assert np.abs(diff).max() <= 1
    assert np.mean(diff == 0) >= 0.999
    params = pd.read_csv(marioni / "batch" / "combat_ref_params.tsv", sep="\t")
    assert params["batch"].tolist() == ["R1", "R2"]
    assert params["reference"].tolist() == [False, True]
    # the script's per-batch common dispersions (extra_INFO); see test_combat_ref.DISP_RTOL
    np.testing.assert_allclose(
        params["dispersion"], [8.8783160343061169e-05, 6.4212100513179622e-05], rtol=5e-4
    )
    assert params["n_samples"].tolist() == [7, 3]
    log = _log(marioni, "batch_correction")
    assert "ComBat-ref over 2 batches, group condition" in log
    assert "reference batch (kept as given): R2" in log
    # tpm.source: batch_corrected takes the ComBat-ref counts
    assert (marioni / "tpm" / "tpm.tsv").exists()


def test_design_table_gpca_and_variance_explained(marioni: Path) -> None:
    design = pd.read_csv(marioni / "qc" / "design.tsv", sep="\t", keep_default_na=False)
    assert design["covariate"].tolist() == ["condition"]
    # marioni: R1 has 3 Kidney and 4 Liver, R2 2 Kidney and 1 Liver; a sparse 2 x 2
    # table is tested with Fisher's exact test.
    expected = fisher_exact([[3, 4], [2, 1]])[1]
    assert float(design.loc[0, "p_value"]) == pytest.approx(expected, rel=1e-12)
    assert design.loc[0, "samples_per_batch_and_level"] == (
        "R1/Kidney: 3; R1/Liver: 4; R2/Kidney: 2; R2/Liver: 1"
    )
    metrics = pd.read_csv(marioni / "qc" / "metrics.tsv", sep="\t")
    assert metrics["stage"].tolist() == ["raw", "normalized", "vst", "batch_corrected"]
    assert metrics["gpca_delta"].between(0, 1).all()
    # 100 permutations: the p-value is a multiple of 1/100
    p = metrics["gpca_p_value"].to_numpy()
    np.testing.assert_allclose(p * 100, np.round(p * 100), atol=1e-9)
    assert not metrics["low_input"].any()
    assert (marioni / "qc" / "variance_explained.png").stat().st_size > 10_000
    # the per-gene R² of batch at the normalized stage, recomputed here
    table = pd.read_csv(marioni / "qc" / "normalized" / "variance_explained.tsv", sep="\t")
    logcpm = _read(marioni / "normalization" / "logcpm.tsv")
    sheet = pd.read_csv(MARIONI / "samples.tsv", sep="\t", index_col=0).loc[logcpm.columns]
    gene = table.loc[table["factor"] == "batch", "gene_id"].iloc[0]
    y = logcpm.loc[gene]
    fitted = y.groupby(sheet["batch"].to_numpy()).transform("mean")
    r2 = 1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    row = table[(table["factor"] == "batch") & (table["gene_id"] == gene)]
    assert row["r2"].iloc[0] == pytest.approx(r2, rel=1e-9)


@pytest.mark.skipif(
    importlib.util.find_spec("multiqc") is None,
    reason="multiqc is not installed (pip install -r requirements-dev.txt)",
)
def test_multiqc_picks_up_the_workflows_files(marioni: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in (marioni / "qc" / "multiqc").iterdir()) == [
        "cohortnorm_general_stats_mqc.tsv",
        "cohortnorm_sample_qc_mqc.tsv",
        "cohortnorm_verdict_mqc.tsv",
    ]
    out = tmp_path / "report"
    options = ["--data-format", "tsv", "--no-version-check", "--no-ai", "--force"]
    run = subprocess.run(
        [sys.executable, "-m", "multiqc", str(marioni), "--outdir", str(out), *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    general = pd.read_csv(out / "multiqc_data" / "multiqc_general_stats.txt", sep="\t", index_col=0)
    with gzip.open(MARIONI / "counts.tsv.gz", "rt") as handle:
        raw = pd.read_csv(handle, sep="\t", index_col=0)
    column = "custom_content_cohortnorm-lib_size"
    assert general.loc[raw.columns, column].tolist() == raw.sum(axis=0).tolist()
    verdict = pd.read_csv(
        out / "multiqc_data" / "multiqc_cohortnorm_verdict_table.txt", sep="\t", index_col=0
    )
    assert sorted(verdict.index) == ["batch_corrected", "normalized", "raw", "vst"]


def _gtex_config(workdir: Path, genes: list[str]) -> dict:
    return base_config(
        workdir,
        samples=str(GTEX / "samples.tsv"),
        counts={"format": "matrix", "path": str(GTEX / "counts.tsv.gz")},
        lengths=str(GTEX / "lengths.tsv.gz"),
        batch_correction={"method": "none", "batch": "batch_synthetic"},
        # 191 genes: fewer than vst()'s nsub, so the full transformation
        transforms={"vst": {"nsub": None}},
        qc={
            "genes_of_interest": genes,
            "annotation": str(GTEX / "gencode.v26.annotation.chr21.gtf.gz"),
            "gpca_permutations": 20,
        },
    )


def test_genes_of_interest_panel_and_gene_symbols(tmp_path: Path) -> None:
    config = _gtex_config(tmp_path, ["APP", "ENSG00000142168"])
    # Two corrections side by side: the panel has a column for each of them.
    config["batch_correction"] = {
        "method": ["combat", "remove_batch_effect"],
        "batch": "batch_synthetic",
        "covariates": [],
    }
    config["io"] = {"gene_name_column": True}
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-4000:]
    outdir = tmp_path / "results"
    assert (outdir / "qc" / "genes_of_interest.png").stat().st_size > 10_000
    log = _log(outdir, "qc_genes_of_interest")
    # gencode v26: APP is ENSG00000142192.20, SOD1 ENSG00000142168.14
    assert "gene of interest APP: ENSG00000142192.20 (APP, by gene_name)" in log
    assert "gene of interest ENSG00000142168: ENSG00000142168.14 (SOD1, by ensembl_stem)" in log
    assert "panel stages: raw, normalized, vst, combat, remove_batch_effect" in log
    symbols = pd.read_csv(outdir / "counts" / "gene_symbols.tsv", sep="\t", index_col=0)
    raw = _read(outdir / "counts" / "raw_counts.tsv")
    assert list(symbols.index) == list(raw.index)
    assert symbols.loc["ENSG00000142192.20", "gene_name"] == "APP"
    # io.gene_name_column: every matrix deliverable carries the name after gene_id, and
    # the values are those of the hand-off the rules read.
    for stem in ["counts/raw_counts", "normalization/logcpm", "batch/combat_logcpm"]:
        named = pd.read_csv(
            outdir / f"{stem}.tsv", sep="\t", index_col=0, float_precision="round_trip"
        )
        assert list(named.columns[:1]) == ["gene_name"], stem
        assert named.loc["ENSG00000142192.20", "gene_name"] == "APP"
        assert named.loc["ENSG00000142168.14", "gene_name"] == "SOD1"
        handoff = tables.read_matrix(outdir / ".cohortnorm" / "handoff" / f"{stem}.arrow")
        np.testing.assert_array_equal(named.iloc[:, 1:].to_numpy(), handoff.to_numpy())


def test_gene_name_column_without_annotation_stops_before_any_job(tmp_path: Path) -> None:
    config = _gtex_config(tmp_path, [])
    del config["qc"]["annotation"]
    config["lengths"] = str(GTEX / "lengths.tsv.gz")
    config["io"] = {"gene_name_column": True}
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "io.gene_name_column is true" in output and "Set qc.annotation" in output
    assert not (tmp_path / "results").exists()


def test_unknown_gene_of_interest_stops_with_the_names_it_knows(tmp_path: Path) -> None:
    config = _gtex_config(tmp_path, ["APP", "TDP43"])
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    log = _log(tmp_path / "results", "qc_genes_of_interest")
    assert "TDP43" in log and "ERROR" in log


def test_missing_annotation_stops_before_any_job(tmp_path: Path) -> None:
    config = _gtex_config(tmp_path, ["APP"])
    config["qc"]["annotation"] = str(tmp_path / "nowhere.gtf")
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"qc.annotation {str(tmp_path / 'nowhere.gtf')!r} does not exist" in output
    assert not (tmp_path / "results").exists()


def test_low_input_counts_are_flagged(tmp_path: Path) -> None:
    # pasilla thinned to 1 read in 400 (binomial, seeded): median library size ~3e4
    with gzip.open(DATA / "pasilla" / "counts.tsv.gz", "rt") as handle:
        counts = pd.read_csv(handle, sep="\t", index_col=0)
    rng = np.random.default_rng(7)
    thinned = pd.DataFrame(
        rng.binomial(counts.to_numpy(), 1 / 400), index=counts.index, columns=counts.columns
    )
    path = tmp_path / "thin.tsv"
    thinned.to_csv(path, sep="\t", index_label="gene_id")
    median = float(np.median(thinned.sum(axis=0)))
    assert median < 1e5
    config = base_config(
        tmp_path,
        counts={"format": "matrix", "path": str(path)},
        lengths=None,
        batch_correction={"method": "none"},
        # VST stops on so thin a cohort (fewer than nsub genes with mean > 5, as DESeq2's
        # vst() does); this test is about the low-input flag.
        transforms={"vst": {"enabled": False}},
        qc={"gpca_permutations": 20, "gpca_top_genes": 50},
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = pd.read_csv(tmp_path / "results" / "qc" / "metrics.tsv", sep="\t")
    assert metrics["low_input"].all()
    assert f"(here {median:.4g} and" in metrics["low_input_rule"].iloc[0]
    log = _log(tmp_path / "results", "qc_summary")
    assert "WARNING" in log and "the counts look low-input" in log
    # without batch correction QC still tests the sheet's batch, on the 50 most variable genes
    assert "normalized: gPCA delta" in _log(tmp_path / "results", "qc_normalized")
    assert "(20 permutations, 50 genes)" in _log(tmp_path / "results", "qc_normalized")
