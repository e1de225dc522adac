"""The Snakemake report opens in a real browser and shows the QC figures and captions.

Runs the workflow on a small pasilla subset, builds ``report.html`` with
``snakemake --report``, and loads it in headless Debian chromium. The report is a
JavaScript app that shows results only after clicks, so the test loads a copy of the
report with a small script appended that clicks through the menu (Results → QC → a
stage → a figure) and records each step in the page title; ``chromium --dump-dom``
then returns the DOM as rendered.
"""

from __future__ import annotations

import gzip
import html as html_module
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from test_workflow import run_snakemake

from cohortnorm import registry

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="headless browser test needs Debian chromium (apt-get install chromium)",
    ),
]

STAGE_FIGURES = [figure.label for figure in registry.STAGE_FIGURES.values()]

CLICKER = """
<script>
(function () {
  const steps = %s;
  function find(step) {
    if (step.row) {
      const row = Array.from(document.querySelectorAll("tr")).find(
        r => Array.from(r.querySelectorAll("td")).some(td => td.textContent.trim() === step.row));
      return row && row.querySelector('a[iconname="' + step.icon + '"]');
    }
    return Array.from(document.querySelectorAll("a")).find(a => a.textContent.trim() === step.link);
  }
  window.addEventListener("load", function () {
    const log = document.createElement("pre");
    log.id = "click-log";
    document.body.appendChild(log);
    steps.forEach(function (step, i) {
      setTimeout(function () {
        const target = find(step);
        if (target) target.click();
        setTimeout(function () {
          const app = document.getElementById("app");
          const images = app.querySelectorAll('img[src^="data:image/png"]').length;
          log.textContent += "\\n@@step " + i + " " + (target ? "ok" : "missing") + " png=" + images
            + "\\n" + app.innerText;
        }, 200);
      }, 500 * (i + 1));
    });
  });
})();
</script>
"""


def browse(report: Path, steps: list[dict], out: Path, screenshot: Path | None = None) -> list[str]:
    """Load ``report`` with scripted clicks; return the app's text after each click.

    Each returned snapshot starts with ``ok`` or ``missing`` (whether the link was
    found) and the number of PNG images shown. With ``screenshot``, the page after the
    last click is also saved as a PNG.
    """
    page = out / "clicked_report.html"
    html = report.read_text()
    cut = html.rfind("</body>")
    page.write_text(html[:cut] + CLICKER % json.dumps(steps) + html[cut:])
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={out / 'profile'}",
        "--window-size=1400,900",
        f"--virtual-time-budget={500 * (len(steps) + 2)}",
    ]
    if screenshot is not None:
        subprocess.run(
            [*command, f"--screenshot={screenshot}", page.as_uri()],
            capture_output=True,
            timeout=60,
            check=True,
        )
    dom = subprocess.run(
        [*command, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    log = re.search(r'<pre id="click-log">(.*?)</pre>', dom, flags=re.S)
    assert log, "the report did not load (no click log in the DOM)"
    return [html_module.unescape(s) for s in log.group(1).split("@@step ")[1:]]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("report")
    counts = pd.read_csv(DATA / "pasilla" / "counts.tsv.gz", sep="\t", index_col=0)
    subset = workdir / "counts.tsv.gz"
    with gzip.open(subset, "wt") as handle:
        counts.iloc[::4].to_csv(handle, sep="\t")
    config = {
        "samples": str(DATA / "pasilla" / "samples.tsv"),
        "counts": {"format": "matrix", "path": str(subset)},
        "outdir": str(workdir / "results"),
        "filter": {"method": "filterByExpr", "group": "condition"},
        "normalization": {"method": "TMM"},
        "batch_correction": {"method": "combat", "batch": "batch", "covariates": ["condition"]},
        "qc": {
            "top_variable_genes": 500,
            "max_ma_panels": 4,
            "gpca_permutations": 20,
            "genes_of_interest": [str(counts.index[::4][0]), str(counts.index[::4][4])],
        },
    }
    result = run_snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-4000:]
    result = run_snakemake(workdir, config, "--report", str(workdir / "report.html"))
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "report.html"


def test_qc_outputs_and_metrics(report: Path) -> None:
    qc = report.parent / "results" / "qc"
    metrics = pd.read_csv(qc / "metrics.tsv", sep="\t")
    # The VST stage (on by default) sits between normalized and batch_corrected.
    assert metrics["stage"].tolist() == ["raw", "normalized", "vst", "batch_corrected"]
    numbers = metrics[["batch_r2", "condition_r2", "batch_silhouette", "median_iqr"]]
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert metrics.loc[3, "batch_r2"] < metrics.loc[1, "batch_r2"]
    flags = pd.read_csv(qc / "sample_flags.tsv", sep="\t")
    assert len(flags) == 7 and {"lib_size_rule", "pca_distance_flag"} <= set(flags.columns)


def test_report_shows_qc_figures_captions_and_summary(report: Path, tmp_path: Path) -> None:
    steps = [
        {"link": "QC"},
        {"link": "raw"},
        {"link": "QC"},
        {"link": "normalized"},
        {"row": "PCA", "icon": "information-circle"},
        {"row": "PCA", "icon": "eye"},
    ]
    screenshot = tmp_path / "shot.png"
    snapshots = browse(report, steps, tmp_path, screenshot)
    assert len(snapshots) == len(steps), snapshots
    for step, snapshot in zip(steps, snapshots, strict=True):
        assert snapshot.split()[1] == "ok", f"could not click {step}"
    qc_menu, raw_table = snapshots[0], " ".join(snapshots[1].split())
    for stage in ["summary", "raw", "normalized", "vst", "batch_corrected"]:
        assert stage in qc_menu, stage
    for figure in STAGE_FIGURES:
        assert re.search(rf"\braw {re.escape(figure)}\b", raw_table), figure
    assert "PCA of the normalized values" in " ".join(snapshots[4].split())
    assert "png=1" in snapshots[5], "no PNG shown after clicking the PCA"
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.std() > 0.05, "the screenshot is blank"


def test_report_summary_has_verdict_and_tables(report: Path, tmp_path: Path) -> None:
    snapshots = browse(report, [{"link": "QC"}, {"link": "summary"}], tmp_path)
    text = " ".join(snapshots[-1].split())
    for label in [
        "batch vs condition",
        "library sizes",
        "metrics table",
        "sample flags",
        "design table",
        "variance explained",
        "genes of interest",
    ]:
        assert f"all {label}" in text, label


def test_report_shows_the_biomarker_panel_captioned(report: Path, tmp_path: Path) -> None:
    steps = [
        {"link": "QC"},
        {"link": "summary"},
        {"row": "genes of interest", "icon": "information-circle"},
        {"row": "genes of interest", "icon": "eye"},
    ]
    snapshots = browse(report, steps, tmp_path)
    assert len(snapshots) == len(steps), snapshots
    for step, snapshot in zip(steps, snapshots, strict=True):
        assert snapshot.split()[1] == "ok", f"could not click {step}"
    caption = " ".join(snapshots[2].split())
    assert "The genes of interest" in caption and "batch as the marker" in caption
    assert "png=1" in snapshots[3], "no PNG shown after clicking the panel"
