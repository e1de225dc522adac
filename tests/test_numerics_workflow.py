"""The numerics fixes where the user meets them: through the workflow (snakemake).

ComBat-seq gets batch_correction.covariates as sva's group and covar_mod, and its counts
equal sva's (tests/data/combat_seq_design, made by the R script there); genes zero in a
whole group are listed; samples without reads and designs without residual degrees of
freedom stop the run with a message naming them, and nothing NaN is written.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from test_workflow import base_config, run_snakemake

from cohortnorm.edger import filter_by_expr

pytestmark = pytest.mark.e2e

DESIGN = DATA / "combat_seq_design"
SHEET = DATA / "pasilla" / "samples.tsv"


def _pasilla() -> tuple[pd.DataFrame, pd.DataFrame]:
    with gzip.open(DATA / "pasilla" / "counts.tsv.gz", "rt") as handle:
        counts = pd.read_csv(handle, sep="\t", index_col=0)
    return counts, pd.read_csv(SHEET, sep="\t")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0)


def test_combat_seq_keeps_the_covariates_as_sva_group_and_covar_mod(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        batch_correction={
            "method": "combat_seq",
            "batch": "batch",
            "covariates": ["condition", "n_lanes"],
        },
    )
    target = tmp_path / "results" / "batch" / "combat_seq_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-4000:]
    # sva: ComBat_seq(counts[keep, ], batch, group = sheet$condition,
    #                 covar_mod = model.matrix(~n_lanes)[, -1])
    expected = _read(DESIGN / "group_covar_sorted_levels.tsv.gz")
    ours = _read(target)
    assert list(ours.index) == list(expected.index)
    np.testing.assert_array_equal(ours.to_numpy(), expected.to_numpy())
    log = next((tmp_path / "results" / "logs").rglob("batch_correction.log")).read_text()
    assert "group condition, covar_mod ['n_lanes']" in log
    assert "INFO [batch_correction_combat_seq] Using full model in ComBat-seq." in log
    assert "INFO [batch_correction_combat_seq] Adjusting for 2 covariate(s)" in log
    assert "WARNING" not in log


def test_combat_seq_lists_genes_zero_in_a_whole_group(tmp_path: Path) -> None:
    counts, sheet = _pasilla()
    keep = filter_by_expr(counts.to_numpy(), group=sheet["condition"].to_numpy())
    zeroed = counts[keep].copy()
    genes = (DESIGN / "zero_group_genes.txt").read_text().split()
    zeroed.loc[genes, (sheet["condition"] == "treated").to_numpy()] = 0
    path = tmp_path / "zeroed.tsv"
    zeroed.to_csv(path, sep="\t", index_label="gene_id")
    config = base_config(
        tmp_path,
        counts={"format": "matrix", "path": str(path)},
        filter={"method": "none"},
        batch_correction={"method": "combat_seq", "batch": "batch", "covariates": ["condition"]},
    )
    target = tmp_path / "results" / "batch" / "combat_seq_counts.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode == 0, result.stderr[-4000:]
    # sva's own result for these genes (the fit stops at edgeR's iteration limits).
    expected = _read(DESIGN / "zero_group_sorted_levels.tsv.gz")
    np.testing.assert_array_equal(_read(target).to_numpy(), expected.to_numpy())
    params = pd.read_csv(tmp_path / "results" / "batch" / "combat_params.tsv", sep="\t")
    flagged = params.loc[params["all_zero_in"] != "none"]
    assert sorted(set(flagged["gene_id"])) == sorted(genes)
    assert set(flagged["all_zero_in"]) == {"group=treated"}
    log = next((tmp_path / "results" / "logs").rglob("batch_correction.log")).read_text()
    assert "WARNING" in log and "5 gene(s) are zero in every sample of a model level" in log
    assert "FBgn0000556 (group=treated)" in log


def test_a_sample_without_reads_stops_the_size_factor_step(tmp_path: Path) -> None:
    # The importer refuses a sample with no reads at all; this one has 3 reads, in genes
    # that no other sample has, and the expression filter removes them all.
    counts, _ = _pasilla()
    counts["treated2"] = 0
    counts.loc[counts.index[counts.sum(axis=1) == 0][:3], "treated2"] = 1
    path = tmp_path / "counts.tsv"
    counts.to_csv(path, sep="\t", index_label="gene_id")
    config = base_config(
        tmp_path,
        counts={"format": "matrix", "path": str(path)},
        batch_correction={"method": "none"},
    )
    target = tmp_path / "results" / "normalization" / "size_factors.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode != 0
    assert "sample(s) treated2 have no reads (library size 0)" in result.stderr
    assert "Remove them from the sample sheet, or relax the filter" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize(
    ("samples", "covariates", "expected"),
    [
        (["untreated1", "treated2"], [], "2 samples, 2 batch(es)"),
        (["untreated1", "treated1", "treated2"], ["condition"], "3 samples, 2 batch(es)"),
    ],
)
def test_combat_without_residual_df_stops(
    tmp_path: Path, samples: list[str], covariates: list[str], expected: str
) -> None:
    sheet = pd.read_csv(SHEET, sep="\t")
    sheet = sheet.loc[sheet["sample"].isin(samples)]
    sheet_path = tmp_path / "samples.tsv"
    sheet.to_csv(sheet_path, sep="\t", index=False)
    config = base_config(
        tmp_path,
        samples=str(sheet_path),
        counts={
            "format": "matrix",
            "path": str(DATA / "pasilla" / "counts.tsv.gz"),
            "subset_samples": True,
        },
        filter={"method": "filterByExpr", "group": None},
        batch_correction={"method": "combat", "batch": "batch", "covariates": covariates},
    )
    target = tmp_path / "results" / "batch" / "combat_logcpm.tsv"
    result = run_snakemake(tmp_path, config, str(target))
    assert result.returncode != 0
    assert expected in result.stderr
    assert "0 residual degrees of freedom" in result.stderr
    assert not target.exists()
