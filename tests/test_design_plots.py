"""The design-diagnostics figure (cohortnorm.design_plots)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.patches import PathPatch

from cohortnorm import plots
from cohortnorm.design_plots import variance_explained_figure
from cohortnorm.diagnostics import gpca_delta, gpca_table, variance_explained_table
from cohortnorm.errors import InputError


def test_variance_explained_figure(tmp_path):
    rng = np.random.default_rng(0)
    batch = np.repeat(["s1", "s2", "s3"], 6)
    condition = np.tile(["ALS", "ctrl"], 9)
    raw = rng.normal(size=(200, 18)) + rng.normal(0, 2, (200, 3))[:, np.repeat([0, 1, 2], 6)]
    corrected = raw - np.column_stack([raw[:, batch == b].mean(axis=1) for b in batch])
    stages = {"raw": raw, "ComBat $x$": corrected}
    table = variance_explained_table(
        stages, {"batch": batch, "condition": condition}, [f"g{i}" for i in range(200)]
    )
    gpca = gpca_table({name: gpca_delta(v, batch, n_permutations=20) for name, v in stages.items()})
    fig = variance_explained_figure(table, gpca, title="cohort $1")
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, PathPatch)]
    assert len(boxes) == 4  # 2 stages × 2 factors
    labels = [t.get_text() for t in ax.get_xticklabels()]
    # No permutation of 20 reached the raw stage's δ: p < 1/20.
    assert labels[0] == f"raw\ngPCA δ {gpca.loc[0, 'gpca_delta']:.2f} (p < 0.05)"
    assert labels[1].startswith("ComBat $x$\ngPCA δ ")
    # The batch median of the raw stage is the median of its R², drawn as a line.
    medians = [line.get_ydata()[0] for line in ax.lines if line.get_gid() == "median batch"]
    raw_batch = table[(table["stage"] == "raw") & (table["factor"] == "batch")]["r2"]
    assert medians[0] == pytest.approx(np.median(raw_batch))
    assert medians[1] == pytest.approx(0.0, abs=1e-12)  # batch means removed
    assert fig._suptitle.get_text() == "cohort $1"
    path = tmp_path / "design.svg"
    plots.save_figure(fig, path)
    assert "ComBat $x$" in path.read_text()


def test_variance_explained_figure_refuses_an_empty_table():
    table = variance_explained_table({}, {}, [])
    with pytest.raises(InputError, match="no per-gene R"):
        variance_explained_figure(table)
