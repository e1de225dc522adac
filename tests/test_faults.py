"""Interrupted and corrupted runs: a killed job leaves nothing under a final name, the
rerun gives the bytes of a clean run, and a corrupt intermediate is caught loudly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import DATA, REPO
from test_workflow import base_config, run_snakemake

pytestmark = pytest.mark.e2e

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TABLES = [
    "counts/raw_counts.tsv",
    "counts/filtered_counts.tsv",
    "normalization/size_factors.tsv",
    "normalization/logcpm.tsv",
    "normalization/cpm.tsv",
    "normalization/normalized_counts.tsv",
    "batch/combat_logcpm.tsv",
    "batch/combat_params.tsv",
]


def airway_config(workdir: Path) -> dict:
    """The airway cohort (64,102 genes): jobs last long enough to be killed mid-run."""
    return base_config(
        workdir,
        samples=str(DATA / "airway" / "samples.tsv"),
        counts={"format": "matrix", "path": str(DATA / "airway" / "counts.tsv.gz")},
        lengths=None,
    )


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("clean")
    result = run_snakemake(workdir, airway_config(workdir), "--cores", "1")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "results"


def running_rule(workdir: Path) -> str | None:
    """The rule whose log says it started but not yet finished, if any."""
    for log in (workdir / "results" / "logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        if "started" in text and "finished" not in text:
            return log.stem
    return None


def test_sigkill_mid_rule_then_rerun_gives_clean_bytes(clean_run: Path, tmp_path: Path) -> None:
    config = airway_config(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--cores",
        "1",
        "--nocolor",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    killed_in = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        killed_in = running_rule(tmp_path)
        if killed_in and killed_in not in {"import_counts", "provenance"}:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert killed_in, "no rule was caught running; the workflow finished too fast"
    results = tmp_path / "results"
    # Nothing half-written under a final name: every table present parses completely.
    for name in TABLES:
        path = results / name
        if path.exists():
            assert path.read_bytes() == (clean_run / name).read_bytes(), name
    # The whole run was killed (as a cluster time limit does), so snakemake's own lock
    # is left behind: a user unlocks, then reruns the incomplete jobs.
    config_path = tmp_path / "config.yaml"
    unlock = run_snakemake(tmp_path, config, "--unlock", config_path=config_path)
    assert unlock.returncode == 0, unlock.stderr[-4000:]
    rerun = run_snakemake(
        tmp_path, config, "--cores", "1", "--rerun-incomplete", config_path=config_path
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    for name in TABLES:
        assert (results / name).read_bytes() == (clean_run / name).read_bytes(), name


def test_corrupt_intermediate_fails_loudly(clean_run: Path, tmp_path: Path) -> None:
    config = airway_config(tmp_path)
    first = run_snakemake(tmp_path, config, "--cores", "2")
    assert first.returncode == 0, first.stderr[-4000:]
    # The rules read the hand-off file, not the deliverable: cut it short.
    filtered = tmp_path / "results" / ".cohortnorm" / "handoff" / "counts" / "filtered_counts.arrow"
    data = filtered.read_bytes()
    filtered.write_bytes(data[: len(data) // 2])
    rerun = run_snakemake(tmp_path, config, "--cores", "2", config_path=tmp_path / "config.yaml")
    text = " ".join((rerun.stdout + rerun.stderr).split())
    # The newer intermediate triggers the downstream jobs, which refuse the broken file.
    assert rerun.returncode != 0
    assert "filtered_counts.arrow is not a complete Arrow matrix file" in text
    assert "Delete it and run snakemake again" in text
    assert "size_factors" in text
