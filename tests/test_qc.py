"""QC numerics (cohortnorm.qc) and figures (cohortnorm.plots).

The metrics are checked against independent computations written here from their
definitions (least squares with numpy.linalg.lstsq, a loop silhouette, numpy
percentiles, matplotlib's own boxplot statistics), on a simulated cohort with a strong
batch effect that ComBat removes, and on the real pasilla data.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import load_dataset
from matplotlib import cbook

from cohortnorm import combat, edger, plots, qc

N_GENES, N_PER_CELL = 3000, 4


@pytest.fixture(scope="module")
def cohort() -> dict:
    """NB counts, 3 batches × 2 conditions × 4 samples, per-gene batch shifts."""
    rng = np.random.default_rng(42)
    cells = [(b, c) for b in ("b1", "b2", "b3") for c in ("ctrl", "trt")]
    batch = np.array([b for b, _ in cells for _ in range(N_PER_CELL)])
    condition = np.array([c for _, c in cells for _ in range(N_PER_CELL)])
    base = rng.lognormal(3.0, 1.5, N_GENES)
    shifts = rng.normal(0.0, 0.8, (N_GENES, 3))
    effect = np.where(rng.random(N_GENES) < 0.2, rng.normal(0.0, 1.5, N_GENES), 0.0)
    batch_index = np.searchsorted(["b1", "b2", "b3"], batch)
    mean = base[:, None] * np.exp(
        shifts[:, batch_index] + effect[:, None] * (condition == "trt")[None, :]
    )
    counts = rng.negative_binomial(10, 10 / (10 + mean))
    samples = [f"s{i:02d}" for i in range(len(batch))]
    logcpm = edger.cpm(counts, counts.sum(axis=0), log=True)
    sheet = pd.DataFrame({"sample": samples, "condition": condition, "batch": batch})
    corrected = combat.combat(
        logcpm, batch, covariates=combat.design_matrix(sheet, ["condition"])
    ).adjusted
    return {
        "counts": counts,
        "logcpm": logcpm,
        "corrected": corrected,
        "batch": batch,
        "condition": condition,
        "samples": samples,
    }


@pytest.fixture(scope="module")
def stages(cohort: dict) -> dict[str, qc.StageQC]:
    return {
        name: qc.stage_qc(
            cohort[name],
            cohort["samples"],
            condition=cohort["condition"],
            batch=cohort["batch"],
            stage=name,
            top_genes=500,
            n_pcs=5,
            max_ma_panels=6,
        )
        for name in ("logcpm", "corrected")
    }


# --- metrics against independent computations ---------------------------------------


def lstsq_r2(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean over PCs of the R² of lm(score ~ factor), via numpy lstsq."""
    levels = sorted(set(labels))
    design = np.column_stack(
        [np.ones(len(labels))] + [(labels == level).astype(float) for level in levels[1:]]
    )
    r2 = []
    for k in range(scores.shape[1]):
        y = scores[:, k]
        beta = np.linalg.lstsq(design, y, rcond=None)[0]
        residual = y - design @ beta
        r2.append(1 - residual @ residual / np.sum((y - y.mean()) ** 2))
    return float(np.average(r2, weights=weights))


def loop_silhouette(points: np.ndarray, labels: list[str]) -> float:
    """Rousseeuw's silhouette, one sample at a time (singletons score 0)."""
    n = len(labels)
    widths = []
    for i in range(n):
        distance = {}
        for j in range(n):
            if j != i:
                distance.setdefault(labels[j], []).append(
                    float(np.sqrt(np.sum((points[i] - points[j]) ** 2)))
                )
        own = distance.get(labels[i])
        if not own:
            widths.append(0.0)
            continue
        a = sum(own) / len(own)
        b = min(sum(d) / len(d) for label, d in distance.items() if label != labels[i])
        widths.append((b - a) / max(a, b))
    return sum(widths) / n


def test_factor_r2_matches_lstsq() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(list("aabbbcccc") * 2)
    scores = rng.normal(size=(len(labels), 4)) + (labels == "b")[:, None] * [2, 0, 1, 0]
    weights = np.array([4.0, 3.0, 2.0, 1.0])
    assert qc.factor_r2(scores, labels, weights) == pytest.approx(
        lstsq_r2(scores, labels, weights), abs=1e-12
    )
    assert np.isnan(qc.factor_r2(scores, np.array(["x"] * len(labels)), weights))


def test_silhouette_matches_loop_and_clear_clusters() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(13, 3))
    labels = ["a"] * 5 + ["b"] * 7 + ["c"]  # "c" is a singleton
    assert qc.silhouette(points, labels) == pytest.approx(
        loop_silhouette(points, labels), abs=1e-12
    )
    tight = np.vstack([rng.normal(0, 0.01, (6, 2)), rng.normal(10, 0.01, (6, 2))])
    assert qc.silhouette(tight, ["x"] * 6 + ["y"] * 6) > 0.99
    assert qc.silhouette(tight, ["x", "y"] * 6) < 0.0
    assert np.isnan(qc.silhouette(tight, ["x"] * 12))


def test_combat_lowers_batch_r2_and_keeps_condition(stages: dict, cohort: dict) -> None:
    before, after = stages["logcpm"].metrics, stages["corrected"].metrics
    assert before["batch_r2"] > 0.5 and before["verdict"] == "batch"
    assert after["batch_r2"] < 0.5 * before["batch_r2"]
    assert after["condition_r2"] >= before["condition_r2"] - 0.02
    assert after["verdict"] == "condition"
    assert after["batch_silhouette"] < before["batch_silhouette"]
    # The stored R² is the lstsq R² on the stored PCA.
    pca = stages["logcpm"].pca
    assert before["batch_r2"] == pytest.approx(
        lstsq_r2(pca.scores, cohort["batch"], pca.variance), abs=1e-10
    )
    assert before["condition_silhouette"] == pytest.approx(
        loop_silhouette(pca.scores, list(cohort["condition"])), abs=1e-10
    )


def test_pca_matches_covariance_eigendecomposition(cohort: dict) -> None:
    values = cohort["logcpm"]
    result = qc.pca(values, top_genes=200, n_pcs=4)
    variance = values.var(axis=1, ddof=0)
    top = np.argsort(-variance, kind="stable")[:200]
    assert sorted(result.genes) == sorted(top)
    x = values[top].T - values[top].T.mean(axis=0)  # samples × genes, centred
    gram = x @ x.T / (x.shape[0] - 1)  # its nonzero eigenvalues are the PC variances
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    eigenvalues, eigenvectors = eigenvalues[::-1][:4], eigenvectors[:, ::-1][:, :4]
    np.testing.assert_allclose(result.variance, eigenvalues, rtol=1e-8)
    np.testing.assert_allclose(result.variance_ratio, eigenvalues / np.trace(gram), rtol=1e-8)
    for k in range(4):  # scores = eigenvectors × sqrt((n - 1) λ), up to sign
        expected = eigenvectors[:, k] * np.sqrt(eigenvalues[k] * (x.shape[0] - 1))
        sign = np.sign(expected @ result.scores[:, k])
        np.testing.assert_allclose(result.scores[:, k], sign * expected, atol=1e-8)


def test_randomized_svd_agrees_with_exact(cohort: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    exact = qc.pca(cohort["logcpm"], top_genes=300, n_pcs=3)
    monkeypatch.setattr(qc, "EXACT_SVD_LIMIT", 5)
    randomized = qc.pca(cohort["logcpm"], top_genes=300, n_pcs=3, seed=7)
    np.testing.assert_allclose(randomized.variance, exact.variance, rtol=1e-6)
    np.testing.assert_allclose(np.abs(randomized.scores), np.abs(exact.scores), atol=1e-5)


def test_distribution_summary_matches_numpy_and_matplotlib() -> None:
    rng = np.random.default_rng(3)
    values = rng.standard_t(3, size=(1001, 300))  # heavy tails: whiskers are inside the range
    summary = qc.distribution_summary(values)
    for j in (0, 150, 299):
        stats = cbook.boxplot_stats(values[:, j])[0]
        row = summary.iloc[j]
        for ours, theirs in [
            ("q1", "q1"),
            ("median", "med"),
            ("q3", "q3"),
            ("whislo", "whislo"),
            ("whishi", "whishi"),
        ]:
            assert row[ours] == pytest.approx(stats[theirs], abs=1e-12)
    np.testing.assert_allclose(summary["iqr"], np.subtract(*np.percentile(values, [75, 25], 0)))
    center = np.median(values, axis=1)
    rle = qc.distribution_summary(values, center=center)
    np.testing.assert_allclose(rle["median"], np.median(values - center[:, None], axis=0))


def test_density_histograms_match_numpy() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(2000, 5))
    edges = np.linspace(-5, 5, 41)
    density = qc.density_histograms(values, edges, smooth_bins=0)
    for j in range(5):
        expected, _ = np.histogram(np.clip(values[:, j], -5, 5 - 1e-9), bins=edges, density=True)
        np.testing.assert_allclose(density[j], expected, atol=1e-12)
    smooth = qc.density_histograms(values, edges)
    np.testing.assert_allclose(smooth.sum(axis=1) * (edges[1] - edges[0]), 1.0)


def test_correlation_matches_corrcoef(cohort: dict) -> None:
    correlation, linkage = qc.correlation_clustering(cohort["logcpm"][:400])
    np.testing.assert_allclose(correlation, np.corrcoef(cohort["logcpm"][:400].T), atol=1e-12)
    assert linkage.shape == (len(cohort["samples"]) - 1, 4)


def test_ma_histograms_count_every_gene(stages: dict, cohort: dict) -> None:
    ma = stages["logcpm"].ma
    assert ma.samples == cohort["samples"][:6] and ma.n_samples == len(cohort["samples"])
    assert ma.counts.shape[0] == 6
    np.testing.assert_array_equal(ma.counts.sum(axis=(1, 2)), N_GENES)


def test_sample_flags_catch_a_bad_sample(cohort: dict, stages: dict) -> None:
    counts = cohort["counts"].copy()
    counts[:, 3] = counts[:, 3] // 20  # a shallow library with many zeros
    summary = qc.count_summary(counts)
    summary.index = pd.Index(cohort["samples"], name="sample")
    assert summary["detected_genes"].iloc[0] == np.count_nonzero(counts[:, 0])
    assert summary["lib_size"].iloc[3] == counts[:, 3].sum()
    per_sample = stages["logcpm"].per_sample.copy()
    per_sample.loc["s05", "median_rle"] = 0.5
    flags = qc.sample_flags(summary, per_sample)
    assert flags.loc["s03", "lib_size_flag"] and flags.loc["s03", "dropout_rate_flag"]
    assert flags.loc["s05", "median_rle_flag"]
    assert flags.loc["s03", "lib_size_rule"] == "lib_size < median(lib_size) / 3"
    assert flags.loc["s05", "median_rle_rule"] == "|median RLE| > 0.2"
    flag_columns = [c for c in flags if c.endswith("_flag")]
    assert len(flag_columns) == 5
    np.testing.assert_array_equal(flags["n_flags"], flags[flag_columns].sum(axis=1))
    assert not flags.drop(index="s03")[["lib_size_flag", "dropout_rate_flag"]].any().any()


def test_robust_z_and_filter_warning() -> None:
    z = qc.robust_z(np.array([1.0, 1.0, 1.0, 1.0, 5.0]))  # MAD 0: mean-deviation fallback
    assert z[-1] > 3 and np.all(z[:4] == 0)
    columns, message = qc.filter_summary(1000, 300)
    assert columns["filter_warning"] and "70.0%" in message
    assert qc.filter_summary(1000, 800)[1] is None


def test_pasilla_metrics_are_finite() -> None:
    pasilla = load_dataset("pasilla")
    counts = pasilla.counts.to_numpy()
    counts = counts[(edger.cpm(counts) >= 1).sum(axis=1) >= 3]
    logcpm = edger.cpm(counts, counts.sum(axis=0), log=True)
    result = qc.stage_qc(
        logcpm,
        list(pasilla.counts.columns),
        condition=pasilla.condition.to_numpy(),
        batch=pasilla.batch.to_numpy(),
    )
    numbers = {k: v for k, v in result.metrics.items() if isinstance(v, float)}
    assert {"batch_r2", "condition_r2", "batch_silhouette", "median_iqr"} <= set(numbers)
    assert all(np.isfinite(v) for v in numbers.values()), numbers
    assert np.isfinite(result.per_sample.to_numpy()).all()


# --- figures -------------------------------------------------------------------------


def all_figures(result: qc.StageQC, cohort: dict, metrics: pd.DataFrame) -> dict:
    summary = qc.count_summary(cohort["counts"])
    summary.index = cohort["samples"]
    return {
        **plots.stage_figures(result, title="t"),
        "library_sizes": plots.library_size_figure(summary, groups=result.batch),
        "verdict": plots.verdict_figure(metrics),
    }


def test_figures_have_content_and_are_deterministic(stages: dict, cohort: dict, tmp_path) -> None:
    result = stages["logcpm"]
    metrics = pd.DataFrame([s.metrics for s in stages.values()])
    first = all_figures(result, cohort, metrics)
    second = all_figures(result, cohort, metrics)
    for name, figure in first.items():
        drawn = sum(
            len(ax.lines) + len(ax.collections) + len(ax.images) + len(ax.patches)
            for ax in figure.axes
        )
        assert drawn > 0, name
        a, b = tmp_path / f"{name}_a.png", tmp_path / f"{name}_b.png"
        plots.save_figure(figure, a)
        plots.save_figure(second[name], b)
        assert a.stat().st_size > 5000, name
        assert a.read_bytes() == b.read_bytes(), f"{name}: two renders differ"
        pixels = matplotlib.image.imread(a)
        assert pixels.ndim == 3 and not np.all(pixels == pixels[0, 0]), name
        assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_pca_figure_labels_variance(stages: dict) -> None:
    figure = plots.pca_figure(stages["logcpm"].pca, batch=stages["logcpm"].batch)
    ratio = stages["logcpm"].pca.variance_ratio
    assert figure.axes[0].get_xlabel() == f"PC1 ({ratio[0]:.1%})"
    assert figure.axes[1].get_ylabel() == f"PC3 ({ratio[2]:.1%})"


def test_many_samples_figures(tmp_path) -> None:
    """Figures scale to hundreds of samples (no per-sample labels, summaries only)."""
    rng = np.random.default_rng(5)
    values = rng.normal(5, 2, size=(800, 300))
    batch = np.array(["a", "b", "c"] * 100)
    result = qc.stage_qc(values, [f"x{i}" for i in range(300)], batch=batch, top_genes=200)
    assert np.isnan(result.metrics["condition_r2"]) and result.metrics["verdict"] == "undetermined"
    for name, figure in {
        "box": plots.boxplot_figure(result.distribution, groups=batch),
        "corr": plots.correlation_figure(
            result.correlation, result.linkage, result.samples, batch=batch
        ),
        "ma": plots.ma_figure(result.ma),
    }.items():
        plots.save_figure(figure, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5000


# --- the QC rules, end to end -----------------------------------------------------------


@pytest.mark.e2e
def test_qc_rules_show_combat_removing_a_strong_batch_effect(cohort: dict, tmp_path) -> None:
    """The real snakemake on the simulated cohort: qc/metrics.tsv tells the same story."""
    from test_workflow import base_config, run_snakemake

    counts = pd.DataFrame(
        cohort["counts"],
        index=pd.Index([f"g{i:04d}" for i in range(N_GENES)], name="gene_id"),
        columns=cohort["samples"],
    )
    counts.to_csv(tmp_path / "counts.tsv", sep="\t")
    sheet = pd.DataFrame(
        {"sample": cohort["samples"], "condition": cohort["condition"], "batch": cohort["batch"]}
    )
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    config = base_config(
        tmp_path,
        samples=str(tmp_path / "samples.tsv"),
        counts={"format": "matrix", "path": str(tmp_path / "counts.tsv")},
        lengths=None,
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = pd.read_csv(tmp_path / "results/qc/metrics.tsv", sep="\t").set_index("stage")
    before, after = metrics.loc["normalized"], metrics.loc["batch_corrected"]
    assert before["verdict"] == "batch" and before["batch_r2"] > 0.5
    assert after["batch_r2"] < 0.5 * before["batch_r2"]
    assert after["condition_r2"] >= before["condition_r2"] - 0.02
    assert after["verdict"] == "condition"
    assert after["condition_silhouette"] > before["condition_silhouette"]
    for stage in ("raw", "normalized", "batch_corrected"):
        assert (tmp_path / f"results/qc/{stage}/pca.png").stat().st_size > 10_000
