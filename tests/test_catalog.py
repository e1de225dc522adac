"""Snakemake workflow catalog conventions: licence, catalog file, and the .test config run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
import yaml
from test_workflow import SNAKEMAKE

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"


def test_licence_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_catalog_file_names_the_mandatory_config_flag() -> None:
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["mandatory-flags"]["flags"] == "--configfile my.yaml"
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True
    assert catalog["usage"]["report"] is True


def test_min_version_is_in_the_snakefile() -> None:
    assert 'min_version("8.0")' in (REPO / "Snakefile").read_text()


@pytest.mark.e2e
def test_the_test_config_runs_end_to_end(tmp_path: Path) -> None:
    """`.test/config/config.yaml`, run from another folder: every output, all finite."""
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    command += ["--configfile", str(TEST_CONFIG), "--cores", "2", "--nocolor"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "test"
    corrected = pd.read_csv(out / "batch" / "combat_seq_counts.tsv", sep="\t", index_col=0)
    filtered = pd.read_csv(out / "counts" / "filtered_counts.tsv", sep="\t", index_col=0)
    assert corrected.shape == filtered.shape
    assert list(corrected.columns) == list(filtered.columns)
    values = corrected.to_numpy()
    assert np.isfinite(values).all() and (values == np.round(values)).all()
    params = pd.read_csv(out / "batch" / "combat_params.tsv", sep="\t")
    assert sorted(set(params["batch"])) == ["paired-end", "single-read"]
    factors = pd.read_csv(out / "normalization" / "size_factors.tsv", sep="\t")
    assert set(factors["normalized_counts_factors"]) == {"DESeq2 poscounts"}
    for stage in ("raw", "normalized", "batch_corrected"):
        assert (out / "qc" / stage / "pca.png").stat().st_size > 0
    assert (out / "provenance.json").exists()
