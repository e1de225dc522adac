"""QC numerics (cohortnorm.qc) and figures (cohortnorm.plots).

The metrics are checked against independent computations written here from their
definitions (least squares with numpy.linalg.lstsq, a loop silhouette, numpy
percentiles, matplotlib's own boxplot statistics), on a simulated cohort with a strong
batch effect that ComBat removes, and on the real pasilla data.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json
import os
import re
import signal
import subprocess
import sys

import matplotlib.image
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, load_dataset
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


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 1001])
def test_sorted_quantiles_equal_numpy_quantile_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    # Rounded values: ties, and both interpolation branches of numpy's _lerp.
    rows = np.round(rng.normal(size=(7, n)), 1)
    probabilities = [0.0, 0.001, 0.25, 0.5, 0.75, 0.999, 1.0]
    ours = qc.sorted_quantiles(np.sort(rows, axis=1), probabilities)
    np.testing.assert_array_equal(ours, np.quantile(rows, probabilities, axis=1))


def test_distribution_summary_equals_numpy_per_column() -> None:
    """Every column (quantiles, ends, mean, whiskers) equals numpy on the matrix exactly,
    including the whiskers' definition (extreme values within 1.5 IQR)."""
    rng = np.random.default_rng(11)
    values = np.round(rng.standard_t(2, size=(999, 141)), 2)  # ties and far outliers
    summary = qc.distribution_summary(values)
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
    iqr = q3 - q1
    inside_low = np.where(values >= q1 - 1.5 * iqr, values, np.inf).min(axis=0)
    inside_high = np.where(values <= q3 + 1.5 * iqr, values, -np.inf).max(axis=0)
    expected = {
        "min": values.min(axis=0),
        "q1": q1,
        "median": median,
        "q3": q3,
        "max": values.max(axis=0),
        "iqr": iqr,
        "whislo": inside_low,
        "whishi": inside_high,
    }
    for column, numbers in expected.items():
        np.testing.assert_array_equal(summary[column].to_numpy(), numbers, err_msg=column)
    np.testing.assert_allclose(summary["mean"], values.mean(axis=0), rtol=0, atol=1e-14)
    assert (summary["whislo"] > summary["min"]).any()  # the outliers were left out


def test_gene_summary_equals_numpy() -> None:
    rng = np.random.default_rng(12)
    for n in (1000, 999):  # even and odd number of samples: two medians
        values = np.round(rng.normal(size=(2500, n)), 2)
        genes = qc.gene_summary(np.asfortranarray(values))
        np.testing.assert_array_equal(genes.median, np.median(values, axis=1))
        np.testing.assert_array_equal(genes.mean, values.mean(axis=1))
        np.testing.assert_array_equal(genes.variance, values.var(axis=1))
        assert (genes.low, genes.high) == (values.min(), values.max())


def test_stage_qc_one_pass_equals_the_separate_summaries(cohort: dict) -> None:
    """The fused pass of stage_qc gives what each summary function gives alone."""
    values, samples = cohort["logcpm"], cohort["samples"]
    result = qc.stage_qc(values, samples, batch=cohort["batch"], top_genes=300, n_pcs=3)
    pd.testing.assert_frame_equal(result.distribution, qc.distribution_summary(values, samples))
    rle = qc.distribution_summary(values, samples, center=np.median(values, axis=1))
    pd.testing.assert_frame_equal(result.rle, rle)
    np.testing.assert_array_equal(
        result.density, qc.density_histograms(values, result.density_edges)
    )
    assert result.density_edges[[0, -1]].tolist() == [values.min(), values.max()]
    np.testing.assert_array_equal(result.gene_variance, values.var(axis=1))
    np.testing.assert_array_equal(result.pca.genes, qc.top_variable_genes(values, 300))
    np.testing.assert_array_equal(result.pca.scores, qc.pca(values, top_genes=300, n_pcs=3).scores)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_exact_pca_triplets_equal_a_full_svd(shape: tuple[int, int]) -> None:
    """The exact path (top eigenvectors of the smaller Gram matrix) gives numpy's SVD."""
    rng = np.random.default_rng(shape[0])
    matrix = rng.normal(size=shape) * np.linspace(3, 1, shape[1])
    matrix -= matrix.mean(axis=0)
    u, s, vt = qc._svd(matrix, 5, seed=0)
    full_u, full_s, full_vt = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(s, full_s[:5], rtol=1e-12)
    signs = np.sign(np.sum(vt * full_vt[:5], axis=1))
    np.testing.assert_allclose(vt * signs[:, None], full_vt[:5], atol=1e-10)
    np.testing.assert_allclose(u * signs, full_u[:, :5], atol=1e-10)


def test_exact_pca_of_duplicated_samples_has_zero_not_nan_components() -> None:
    one = np.random.default_rng(1).normal(size=(50, 1))
    values = np.hstack([one, one, one + 1.0, one + 1.0])  # rank 1 after centring
    result = qc.pca(values, top_genes=50, n_pcs=3)
    assert np.isfinite(result.scores).all()
    np.testing.assert_allclose(np.abs(result.scores[:, 0]), np.sqrt(50) / 2, rtol=1e-12)
    np.testing.assert_allclose(result.scores[:, 1:], 0.0, atol=1e-12)


def test_density_counts_by_binary_search_equal_bincount() -> None:
    """The QC pass counts each sorted row's bins by binary search; the counts are those of
    the per-value bin index, values beyond the edges going to the end bins."""
    rng = np.random.default_rng(13)
    rows = np.round(rng.normal(size=(9, 5001)), 2)  # ties, and values on the bin edges
    for edges in (np.linspace(rows.min(), rows.max(), 121), np.linspace(-1.0, 1.5, 26)):
        ours = qc._sorted_bin_counts(np.sort(rows, axis=1), edges)
        np.testing.assert_array_equal(ours, qc._bin_counts(rows, edges))
        assert (ours.sum(axis=1) == rows.shape[1]).all()


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
        # This simulation has no mean-dispersion trend DESeq2's parametric fit can follow
        # (the VST job would stop and suggest fit_type: mean); the test is about ComBat.
        transforms={"vst": {"enabled": False}},
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


# --- GTEx scale: no sample × sample product through BLAS syrk ----------------------------


def test_cross_product_equals_the_plain_product() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 40))
    y = rng.normal(size=(70, 40))
    np.testing.assert_allclose(qc.cross_product(x), x @ np.array(x.T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(qc.cross_product(x, y), x @ y.T, rtol=1e-12, atol=1e-12)


GTEX_SCALE_SCRIPT = """
import numpy as np
import threadpoolctl
from cohortnorm import qc

assert threadpoolctl.threadpool_info()[0]["num_threads"] == 2
rng = np.random.default_rng(0)
n = 17_000
# 1,000 genes x 17,000 samples, all of them top genes: the sample correlation over them
# was x @ x.T of a C-ordered 17,000 x 1,000 matrix, the known crash with 2 threads.
values = rng.normal(5.0, 2.0, size=(1000, n))
condition = np.array(["ctrl", "trt"])[np.arange(n) % 2]
batch = np.array([f"b{i % 9}" for i in range(n)])
result = qc.stage_qc(values, [f"s{i}" for i in range(n)], condition=condition,
                     batch=batch, top_genes=1000, max_ma_panels=2)
assert result.correlation.shape == (500, 500), result.correlation.shape
assert result.metrics["heatmap_samples"] == 500
assert np.isfinite(result.metrics["batch_silhouette"])
print("ok")
"""


@pytest.mark.slow
def test_gtex_scale_qc_survives_two_blas_threads() -> None:
    """17,000 samples through the QC code path with 2 OpenBLAS threads (about 10 s).

    The code before this test crashed here with SIGSEGV on the machine of docs/blas.md.

    numpy 2.4.6's OpenBLAS 0.3.31 dies with SIGSEGV in ``x @ x.T`` (dsyrk) for a
    17,000 × 1,000 matrix with 2 threads on AVX-512 CPUs (docs/blas.md). The QC must
    never take that path; run in a child process so a crash fails this test only.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    env |= {"OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", GTEX_SCALE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert result.returncode != -signal.SIGSEGV, "SIGSEGV in BLAS: see docs/blas.md"
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_heatmap_subset_is_stratified_and_deterministic() -> None:
    n = 17_000
    index = np.arange(n)
    # Unbalanced strata: 3 batches of 10,000 / 6,990 / 10 samples, two conditions.
    batch = np.where(index < 10_000, "b1", np.where(index < 16_990, "b2", "b3"))
    condition = np.where(index % 4 == 0, "trt", "ctrl")
    chosen = qc.heatmap_samples(n, condition, batch)
    assert len(chosen) == qc.HEATMAP_MAX_SAMPLES == 500
    assert np.all(np.diff(chosen) > 0)  # increasing, no repeats
    np.testing.assert_array_equal(chosen, qc.heatmap_samples(n, condition, batch))
    strata = pd.Series([f"{c}/{b}" for c, b in zip(condition, batch, strict=True)])
    sizes = strata.value_counts()
    drawn = strata.iloc[chosen].value_counts()
    assert set(drawn.index) == set(sizes.index)  # every condition × batch group is drawn
    for stratum, size in sizes.items():  # one each, the rest in proportion (±1)
        expected = 1 + (500 - len(sizes)) * (size - 1) / (n - len(sizes))
        assert abs(drawn[stratum] - expected) < 1, (stratum, drawn[stratum], expected)
    # Within a stratum the samples are spread over the whole column range.
    trt_b1 = chosen[(condition[chosen] == "trt") & (batch[chosen] == "b1")]
    assert trt_b1.min() < 200 and trt_b1.max() > 9_800
    # Small cohorts are drawn whole; with no labels the subset is evenly spaced.
    np.testing.assert_array_equal(qc.heatmap_samples(300), np.arange(300))
    plain = qc.heatmap_samples(1000, limit=10)
    np.testing.assert_array_equal(plain, np.arange(50, 1000, 100))
    # More groups than places: still `limit` distinct samples.
    many = qc.heatmap_samples(1000, [f"g{i}" for i in range(1000)], limit=10)
    assert len(set(many.tolist())) == 10


def test_many_samples_heatmap_says_which_samples_it_shows() -> None:
    rng = np.random.default_rng(12)
    n = 700
    values = rng.normal(5, 2, size=(300, n))
    batch = np.array(["a", "b"])[np.arange(n) % 2]
    condition = np.array(["x", "y", "z"])[np.arange(n) % 3]
    result = qc.stage_qc(
        values, [f"s{i}" for i in range(n)], condition=condition, batch=batch, top_genes=100
    )
    assert result.correlation.shape == (500, 500) and result.metrics["heatmap_samples"] == 500
    shown = result.correlation_samples
    np.testing.assert_allclose(
        result.correlation, np.corrcoef(values[np.ix_(result.pca.genes, shown)].T), atol=1e-12
    )
    figure = plots.stage_figures(result, title="c")["correlation"]
    assert "500 of 700 samples shown (evenly spread over each condition × batch group)" in (
        figure.get_suptitle()
    ).replace("\n", " ")


# --- verdict ---------------------------------------------------------------------------------


def test_cramers_v_matches_scipy_and_known_designs() -> None:
    from scipy.stats.contingency import association, crosstab

    rng = np.random.default_rng(13)
    for _ in range(5):
        a = rng.choice(["p", "q", "r"], size=40)
        b = rng.choice(["u", "v"], size=40)
        table = crosstab(a, b).count
        assert qc.cramers_v(a, b) == pytest.approx(
            association(table, method="cramer", correction=False), abs=1e-12
        )
    batch = ["b1", "b1", "b2", "b2", "b3", "b3", "b4", "b4"]
    assert qc.cramers_v(batch, ["c", "c", "c", "c", "t", "t", "t", "t"]) == pytest.approx(1.0)
    assert qc.cramers_v(batch, ["c", "t"] * 4) == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(qc.cramers_v(batch, ["c"] * 8))


def test_verdict_rule_tie_margin_and_confounding() -> None:
    assert qc.verdict(0.40, 0.40) == "unclear"  # a tie no longer reads "condition"
    assert qc.verdict(0.40, 0.44) == "unclear"
    assert qc.verdict(0.44, 0.40) == "unclear"
    assert qc.verdict(0.30, 0.50) == "condition"
    assert qc.verdict(0.50, 0.30) == "batch"
    assert qc.verdict(0.10, 0.90, 0.85) == "confounded"
    assert qc.verdict(0.10, 0.90, 0.50) == "condition"
    assert qc.verdict(float("nan"), 0.9) == "undetermined"
    assert qc.verdict(float("nan"), 0.9, 1.0) == "confounded"
    assert "0.8" in qc.VERDICT_RULE and "0.05" in qc.VERDICT_RULE


def _design_values(batch: np.ndarray, condition: np.ndarray, b_shift, c_shift) -> np.ndarray:
    """log values: 400 genes, shifted per batch (b_shift) and per condition (c_shift)."""
    rng = np.random.default_rng(14)
    n = len(batch)
    values = rng.normal(5.0, 1.0, (400, 1)) + rng.normal(0.0, 0.1, (400, n))
    # Batch moves genes 0-199, condition genes 200-399, by the same amounts (±1):
    # equal shifts give equal effects.
    signs = np.where(np.arange(400) % 2 == 0, 1.0, -1.0)
    genes_b, genes_c = signs * (np.arange(400) < 200), signs * (np.arange(400) >= 200)
    values += np.outer(genes_b, [b_shift[b] for b in batch])
    values += np.outer(genes_c, [c_shift[c] for c in condition])
    return values


def test_stage_verdicts_on_synthetic_designs() -> None:
    batch = np.repeat(["b1", "b2"], 8)
    balanced = np.tile(np.repeat(["ctrl", "trt"], 4), 2)
    names = [f"s{i}" for i in range(16)]

    def run(condition, b_shift, c_shift):
        values = _design_values(batch, condition, b_shift, c_shift)
        return qc.stage_qc(values, names, condition=condition, batch=batch, top_genes=400).metrics

    clear = run(balanced, {"b1": 0.0, "b2": 0.2}, {"ctrl": 0.0, "trt": 3.0})
    assert clear["batch_condition_cramers_v"] == pytest.approx(0.0, abs=1e-15)
    assert clear["condition_r2"] > clear["batch_r2"] + 0.05 and clear["verdict"] == "condition"
    strong_batch = run(balanced, {"b1": 0.0, "b2": 3.0}, {"ctrl": 0.0, "trt": 0.2})
    assert strong_batch["verdict"] == "batch"
    # Equal effects of batch and condition: the R² are within the margin.
    tie = run(balanced, {"b1": 0.0, "b2": 2.0}, {"ctrl": 0.0, "trt": 2.0})
    assert abs(tie["batch_r2"] - tie["condition_r2"]) <= qc.UNCLEAR_R2_MARGIN
    assert tie["verdict"] == "unclear"
    # Each batch holds one condition: the R² are equal and mean nothing.
    nested = np.where(batch == "b1", "ctrl", "trt")
    confounded = run(nested, {"b1": 0.0, "b2": 0.0}, {"ctrl": 0.0, "trt": 3.0})
    assert confounded["batch_condition_cramers_v"] == pytest.approx(1.0)
    assert confounded["verdict"] == "confounded"
    # Mostly but not fully nested: V = 0.75 / 0.875 around the 0.8 threshold.
    mostly = nested.copy()
    mostly[[0, 8]] = ["trt", "ctrl"]
    assert qc.cramers_v(batch, mostly) == pytest.approx(0.75)
    mostly[[0, 8]] = ["ctrl", "ctrl"]
    v = qc.cramers_v(batch, mostly)
    assert v > 0.8 and run(mostly, {"b1": 0, "b2": 0}, {"ctrl": 0, "trt": 3})["verdict"] == (
        "confounded"
    )
    table = qc.metrics_frame([clear, confounded], cohort="c")
    assert qc.confounding_warning(table) == (
        "batch and condition go together in the sample sheet (Cramér's V 1.00 >= 0.8): the QC "
        "cannot tell a batch effect from the biology, and batch correction with this design may "
        "remove the biology. Judge the uncorrected QC (qc/normalized)."
    )
    assert qc.confounding_warning(qc.metrics_frame([clear, tie])) is None
    shown = qc.verdict_table(table)
    assert shown.columns.tolist() == [
        "cohort",
        "stage",
        "verdict",
        "batch_r2",
        "condition_r2",
        "cramers_v",
    ]
    assert shown["cramers_v"].tolist() == ["0.000", "1.000"]


# --- user text in figures --------------------------------------------------------------------

AWKWARD_NAMES = ["S$1$", "a_b", "x^2", "{S1}", '"q"', r"$\alpha_$", "p$^$q", r"\frac"]


def test_user_text_with_dollars_and_carets_is_drawn_literally(tmp_path) -> None:
    """Sample names, labels and column names reach matplotlib as plain text."""
    rng = np.random.default_rng(15)
    n = len(AWKWARD_NAMES)
    values = rng.normal(5, 2, size=(1000, n))
    condition = np.array(["c$1", "t^2"] * (n // 2))
    batch = np.array([r"$\beta$"] * (n // 2) + ["b_{2}"] * (n // 2))
    result = qc.stage_qc(
        values, AWKWARD_NAMES, condition=condition, batch=batch, top_genes=300, max_ma_panels=3
    )
    summary = qc.count_summary(np.abs(values * 1e4).astype(np.int64))
    summary.index = AWKWARD_NAMES
    figures = {
        **plots.stage_figures(result, condition_name="cond$", batch_name="b^", title="$x_"),
        "library_sizes": plots.library_size_figure(summary, groups=batch, title="$lib"),
        "verdict": plots.verdict_figure(
            pd.DataFrame([result.metrics | {"stage": "st$1$"}]), title=r"\alpha$"
        ),
    }
    for name, figure in figures.items():
        for suffix in ("png", "svg"):
            plots.save_figure(figure, tmp_path / f"{name}.{suffix}")  # no ParseException
        texts = [t.get_text() for t in figure.findobj(matplotlib.text.Text) if t.get_text()]
        parsed = [t for t in figure.findobj(matplotlib.text.Text) if t.get_parse_math()]
        assert not [t.get_text() for t in parsed if t.get_text()], name
        shown = set(AWKWARD_NAMES) if name in ("boxplot", "rle", "correlation") else set()
        assert shown <= set(texts), (name, shown - set(texts))
    svg = (tmp_path / "boxplot.svg").read_text()
    assert "S$1$" in svg and "x^2" in svg  # svg.fonttype none: the text as typed


def test_titles_and_legends_stay_inside_the_figure(tmp_path) -> None:
    rng = np.random.default_rng(16)
    values = rng.normal(5, 2, size=(500, 30))
    batch = np.array(["a batch with a long name", "b"] * 15)
    result = qc.stage_qc(values, [f"s{i}" for i in range(30)], batch=batch, max_ma_panels=2)
    summary = qc.count_summary(np.abs(values * 1e4).astype(np.int64))
    summary.index = result.samples
    summary["effective_lib_size"] = summary["lib_size"] * 0.9
    long_title = "a cohort with a long descriptive name: normalized logCPM"
    figures = {
        "ma": plots.ma_figure(result.ma, title=long_title),
        "library_sizes": plots.library_size_figure(summary, groups=batch, title=long_title),
    }
    for name, figure in figures.items():
        figure.canvas.draw()
        width = figure.bbox.width
        boxes = [legend.get_window_extent() for legend in figure.legends]
        boxes += [legend.get_window_extent() for ax in figure.axes if (legend := ax.get_legend())]
        if figure._suptitle is not None:
            boxes.append(figure._suptitle.get_window_extent())
        boxes += [ax.title.get_window_extent() for ax in figure.axes if ax.get_title()]
        for box in boxes:
            assert box.x0 >= -0.5 and box.x1 <= width + 0.5, (name, box, width)
    assert "\n" in figures["ma"].get_suptitle()  # wrapped to the figure's width


# --- missing values in qc/metrics.tsv ----------------------------------------------------------


@pytest.mark.e2e
def test_metrics_without_a_batch_have_empty_cells_not_none(tmp_path) -> None:
    """No batch column: batch_r2 and the batch silhouette are empty cells (NA)."""
    from test_workflow import base_config, run_snakemake

    config = base_config(tmp_path, batch_correction={"method": "none", "batch": None})
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-4000:]
    for path in [
        tmp_path / "results/qc/metrics.tsv",
        *sorted((tmp_path / "results/qc").glob("*/metrics.tsv")),
    ]:
        text = path.read_text()
        assert "None" not in text and "nan" not in text.lower(), path
        metrics = pd.read_csv(path, sep="\t", keep_default_na=False).set_index("stage")
        assert (metrics["batch_r2"] == "").all() and (metrics["batch_silhouette"] == "").all()
        assert (metrics["batch_condition_cramers_v"] == "").all()
        assert (metrics["verdict"] == "undetermined").all()
        assert pd.to_numeric(metrics["condition_r2"]).between(0, 1).all()
    # The report's landing page (the workflow description) shows the verdict table.
    report = tmp_path / "report.html"
    result = run_snakemake(tmp_path, config, "--report", str(report))
    assert result.returncode == 0, result.stderr[-4000:]
    match = re.search(r"var workflow_desc = (\".*?\");\n", report.read_text())
    assert match, "no workflow description in report.html"
    landing = json.loads(match.group(1))
    assert "QC verdict" in landing and "Start here" in landing
    rows = re.findall(r"<tr><td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", landing)
    assert [(stage, verdict) for _, stage, verdict in rows] == [
        ("raw", "undetermined"),
        ("normalized", "undetermined"),
        ("vst", "undetermined"),
    ]


# --- many samples: bands per group ------------------------------------------------------------


def _artists(figure) -> int:
    return sum(len(ax.lines) + len(ax.collections) + len(ax.patches) for ax in figure.axes)


def test_many_samples_are_drawn_as_bands_per_group(tmp_path) -> None:
    """Above plots.BAND_SAMPLES samples, boxes, densities and library sizes are bands per
    batch: the number of artists does not grow with the samples, and the bands are the
    per-sample quantiles."""
    rng = np.random.default_rng(17)
    counts = {}
    for n in (400, 4000):
        values = rng.normal(5, 2, size=(200, n))
        batch = np.array(["b1", "b2", "b3"])[np.arange(n) % 3]
        result = qc.stage_qc(values, [f"s{i}" for i in range(n)], batch=batch, top_genes=100)
        summary = qc.count_summary(np.abs(values * 1e4).astype(np.int64))
        summary.index = result.samples
        figures = {
            "box": plots.boxplot_figure(result.distribution, groups=batch, group_name="batch"),
            "density": plots.density_figure(result.density_edges, result.density, groups=batch),
            "library": plots.library_size_figure(summary, groups=batch),
        }
        # Every figure of a stage too (RLE, PCA, heatmap, MA): as many artists either way.
        stage = {f"stage {k}": f for k, f in plots.stage_figures(result).items()}
        counts[n] = {name: _artists(figure) for name, figure in {**figures, **stage}.items()}
        rle_ax = stage["stage rle"].axes[0]
        assert rle_ax.get_xlabel().startswith(f"{n} samples, grouped by batch")
        box_ax = figures["box"].axes[0]
        assert box_ax.get_xlabel() == (
            f"{n} samples, grouped by batch, in sample-sheet order within each group"
        )
        assert [t.get_text() for t in box_ax.get_xticklabels()] == ["b1", "b2", "b3"]
        # The b2 median line follows the b2 samples' medians in column order.
        medians = [line.get_ydata() for line in box_ax.lines if line.get_color() == "black"]
        expected = result.distribution["median"].to_numpy()[batch == "b2"]
        assert any(len(m) == len(expected) and np.allclose(m, expected) for m in medians), (
            "no median line for batch b2"
        )
        density_ax = figures["density"].axes[0]
        b1_median = np.quantile(result.density[batch == "b1"], 0.5, axis=0)
        assert any(np.allclose(line.get_ydata(), b1_median) for line in density_ax.lines)
        for name, figure in figures.items():
            plots.save_figure(figure, tmp_path / f"{name}_{n}.png")
            plots.save_figure(figure, tmp_path / f"{name}_{n}.svg")
    assert counts[400] == counts[4000], counts
    # Rasterized bands: the vector file has as many paths for 4,000 samples as for 400.
    paths = {n: (tmp_path / f"box_{n}.svg").read_text().count("<path") for n in (400, 4000)}
    assert paths[400] == paths[4000], paths


def test_scripts_hold_thread_pools_to_the_rule_threads() -> None:
    """runner.limit_threads (called by every script) sets BLAS, pyarrow and child env."""
    code = (
        "import os, numpy, pyarrow, threadpoolctl\n"
        "from cohortnorm.runner import limit_threads\n"
        "assert limit_threads(1) == 1\n"
        "info = threadpoolctl.threadpool_info()\n"
        "assert info and all(pool['num_threads'] == 1 for pool in info), info\n"
        "assert pyarrow.cpu_count() == 1 and pyarrow.io_thread_count() == 1\n"
        "assert os.environ['OPENBLAS_NUM_THREADS'] == os.environ['OMP_NUM_THREADS'] == '1'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
