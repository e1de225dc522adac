"""MultiQC custom content (cohortnorm.multiqc), read back by the real MultiQC.

The QC tables come from ``cohortnorm.qc`` on a small count matrix with one near-empty
sample, as ``scripts/qc_summary.py`` builds them; MultiQC (requirements-dev.txt) is run
on the folder and its data directory must hold our sections with our numbers.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from cohortnorm import multiqc, qc
from cohortnorm.errors import InputError

SAMPLES = ["ctl_1", "ctl_2", "als_1", "als_2", "ctl_3", "als_3"]


@pytest.fixture(scope="module")
def tables() -> dict:
    rng = np.random.default_rng(1)
    counts = rng.poisson(5, (200, 6))
    counts[:, 5] = 0
    counts[:3, 5] = 4  # als_3: 12 reads on 3 genes, flagged
    summary = qc.count_summary(counts)
    summary.index = pd.Index(SAMPLES, name="sample")
    stage = qc.stage_qc(
        np.log2(counts + 1.0),
        SAMPLES,
        condition=["ctl", "ctl", "als", "als", "ctl", "als"],
        batch=["s1", "s2", "s1", "s2", "s1", "s2"],
        stage="normalized",
    )
    flags = qc.sample_flags(summary, stage.per_sample)
    verdict = qc.verdict_table(qc.metrics_frame([stage.metrics], cohort="exo"))
    return {"counts": counts, "flags": flags, "verdict": verdict, "stage": stage}


def _split(text: str) -> tuple[dict, pd.DataFrame]:
    header = "\n".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    body = [line.split("\t") for line in text.splitlines() if not line.startswith("#")]
    return yaml.safe_load(header), pd.DataFrame(body[1:], columns=body[0])


def test_general_stats_text(tables):
    config, body = _split(multiqc.general_stats_content(tables["flags"]))
    assert config["plot_type"] == "generalstats"
    assert [next(iter(column)) for column in config["pconfig"]] == [
        "lib_size",
        "detected_genes",
        "dropout_percent",
        "n_flags",
    ]
    counts = tables["counts"]
    assert body["Sample"].tolist() == SAMPLES
    assert body["lib_size"].tolist() == [str(v) for v in counts.sum(axis=0)]
    assert body["detected_genes"].tolist() == [str(v) for v in (counts > 0).sum(axis=0)]
    dropout = 100 * (counts == 0).mean(axis=0)
    np.testing.assert_allclose(body["dropout_percent"].astype(float), dropout, rtol=1e-12)
    assert body.loc[5, "dropout_percent"] == "98.5"
    assert int(body.loc[5, "n_flags"]) >= 1


def test_sample_table_text(tables):
    stage = tables["stage"]
    config, body = _split(
        multiqc.sample_qc_content(tables["flags"], {"normalized": stage.per_sample})
    )
    assert config["id"] == "cohortnorm_sample_qc"
    assert config["plot_type"] == "table"
    assert "normalized_PC2" in config["headers"]
    np.testing.assert_allclose(
        body["normalized_PC1"].astype(float), stage.pca.scores[:, 0], rtol=1e-15
    )
    flagged = body.set_index("Sample")["flagged"]
    assert "lib_size" in flagged["als_3"]
    assert flagged["ctl_1"] == "none"


def test_verdict_text_names_stages_and_cohorts(tables):
    verdict = tables["verdict"]
    config, body = _split(multiqc.verdict_content(verdict))
    assert config["pconfig"]["col1_header"] == "Stage"
    assert body["Stage"].tolist() == ["normalized"]
    assert body["verdict"].tolist() == verdict["verdict"].tolist()
    assert float(body.loc[0, "batch_r2"]) == float(verdict.loc[0, "batch_r2"])
    two = pd.concat([verdict, verdict.assign(cohort="blood")], ignore_index=True)
    _, body = _split(multiqc.verdict_content(two))
    assert body["Stage"].tolist() == ["exo normalized", "blood normalized"]


def test_missing_values_are_empty_cells(tables):
    verdict = tables["verdict"].copy()
    verdict["batch_r2"] = None
    _, body = _split(multiqc.verdict_content(verdict))
    assert body.loc[0, "batch_r2"] == ""


def test_refuses_tables_it_cannot_read(tables):
    with pytest.raises(InputError, match="sample_flags has no column n_flags"):
        multiqc.general_stats_content(tables["flags"].drop(columns="n_flags"))
    with pytest.raises(InputError, match="repeats a stage"):
        multiqc.verdict_content(pd.concat([tables["verdict"]] * 2))
    tabbed = tables["flags"].rename(index={"ctl_1": "ctl\t1"})
    with pytest.raises(InputError, match="tab or a line break"):
        multiqc.general_stats_content(tabbed)


@pytest.mark.skipif(
    importlib.util.find_spec("multiqc") is None,
    reason="multiqc is not installed (pip install -r requirements-dev.txt)",
)
def test_multiqc_picks_up_our_sections(tables, tmp_path):
    folder = tmp_path / "results" / "qc" / "multiqc"
    written = multiqc.write_multiqc(
        folder,
        flags=tables["flags"],
        verdict=tables["verdict"],
        stage_samples={"normalized": tables["stage"].per_sample},
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(multiqc.FILES.values())
    assert set(written) == {"general_stats", "sample_qc", "verdict"}
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiqc",
            str(tmp_path / "results"),
            "--outdir",
            str(out),
            "--data-format",
            "tsv",
            "--no-version-check",
            "--no-ai",
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    data = out / "multiqc_data"
    general = pd.read_csv(data / "multiqc_general_stats.txt", sep="\t", index_col=0)
    column = "custom_content_cohortnorm-lib_size"
    assert column in general.columns
    assert general.loc[SAMPLES, column].tolist() == tables["counts"].sum(axis=0).tolist()
    assert "custom_content_cohortnorm-n_flags" in general.columns
    samples = pd.read_csv(data / "multiqc_cohortnorm_sample_qc_table.txt", sep="\t", index_col=0)
    assert "lib_size" in samples.loc["als_3", "flagged"]
    verdict = pd.read_csv(data / "multiqc_cohortnorm_verdict_table.txt", sep="\t", index_col=0)
    assert verdict.loc["normalized", "verdict"] == tables["verdict"].loc[0, "verdict"]
