"""Several cohorts in one config: outputs per cohort, and a change reruns only its cohort."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import DATA, load_dataset
from test_workflow import run_snakemake

pytestmark = pytest.mark.e2e


def small_cohort(root: Path, name: str, genes: int) -> dict:
    """Write a cohort's counts (first `genes` genes) and sample sheet under root/name."""
    dataset = load_dataset(name)
    folder = root / name
    folder.mkdir()
    dataset.counts.iloc[:genes].to_csv(folder / "counts.tsv", sep="\t", index_label="gene_id")
    dataset.samples[["sample", "condition", "batch"]].to_csv(
        folder / "samples.tsv", sep="\t", index=False
    )
    return {
        # Relative to the config file, which lives in root.
        "samples": f"{name}/samples.tsv",
        "counts": {"format": "matrix", "path": f"{name}/counts.tsv"},
    }


def planned_jobs(result) -> dict[str, int]:
    text = result.stdout + result.stderr
    table = text[text.index("Job stats:") :] if "Job stats:" in text else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def planned_outputs(result) -> list[str]:
    """The output files of every planned job but `all` (whose inputs name every cohort)."""
    text = result.stdout + result.stderr
    outputs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:)", text, flags=re.M):
        if block.startswith(("rule all:", "localrule all:")):
            continue
        outputs += [
            name.strip()
            for line in re.findall(r"^\s+output: (.*)$", block, re.M)
            for name in line.split(",")
        ]
    return outputs


@pytest.fixture(scope="module")
def two_cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cohorts")
    config = {
        "outdir": "results",
        "filter": {"method": "filterByExpr", "group": "condition"},
        "normalization": {"method": "TMM"},
        "cohorts": {
            "marioni": small_cohort(root, "marioni", 3000),
            "pasilla": {
                **small_cohort(root, "pasilla", 3000),
                "lengths": str(DATA / "pasilla" / "lengths.tsv.gz"),
                "normalization": {"method": "RLE"},
            },
        },
    }
    workdir = root / "run"
    workdir.mkdir()
    # The config file sits in root; snakemake runs in root/run: paths resolve via the config.
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake_with(workdir, root / "config.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, config


def run_snakemake_with(workdir: Path, config_path: Path, *extra: str):
    # Reuse the harness, but keep the config file where the test put it.
    return run_snakemake(
        workdir, yaml.safe_load(config_path.read_text()), *extra, config_path=config_path
    )


def test_each_cohort_gets_its_own_outputs(two_cohorts: tuple[Path, dict]) -> None:
    workdir, _ = two_cohorts
    for name in ["marioni", "pasilla"]:
        for table in [
            "counts/raw_counts.tsv",
            "normalization/size_factors.tsv",
            "normalization/logcpm.tsv",
            "provenance.json",
        ]:
            assert (workdir / "results" / name / table).exists(), (name, table)
    assert (workdir / "results/pasilla/tpm/tpm.tsv").exists()
    assert not (workdir / "results/marioni/tpm/tpm.tsv").exists()  # no lengths given
    provenance = (workdir / "results/pasilla/provenance.json").read_text()
    assert '"method": "RLE"' in provenance


def test_nothing_to_do_after_a_complete_run(two_cohorts: tuple[Path, dict]) -> None:
    workdir, _ = two_cohorts
    result = run_snakemake_with(workdir, workdir.parent / "config.yaml", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_sample_sheet_reruns_only_that_cohort(
    two_cohorts: tuple[Path, dict],
) -> None:
    workdir, _ = two_cohorts
    sheet = workdir.parent / "marioni" / "samples.tsv"
    # A real edit: snakemake 9 ignores a newer mtime when the checksum is unchanged.
    lines = sheet.read_text().splitlines()
    edited = [lines[0] + "\tnote"] + [line + "\trechecked" for line in lines[1:]]
    sheet.write_text("\n".join(edited) + "\n")
    later = time.time() + 5
    os.utime(sheet, (later, later))
    result = run_snakemake_with(workdir, workdir.parent / "config.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    jobs = planned_jobs(result)
    assert jobs.get("import_counts") == 1 and jobs.get("filter_counts") == 1, text[-3000:]
    outputs = planned_outputs(result)
    assert any(name.startswith("results/marioni/") for name in outputs), text[-3000:]
    assert not [name for name in outputs if name.startswith("results/pasilla/")], text[-3000:]
