"""Benchmark the QC stage on a simulated 60,000 genes × 1,000 samples cohort.

Negative binomial counts with 3 batches and 2 conditions; times what the QC jobs of
one cohort do (the per-stage numerics and figures for the raw, normalized and
batch-corrected stages, then the sample table, library sizes and verdict figures) and
prints the wall time and the peak resident memory of the process.

    .venv/bin/python bench/bench_qc.py [--genes 60000] [--samples 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--genes", type=int, default=60_000)
parser.add_argument("--samples", type=int, default=1_000)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=1)
ARGS = parser.parse_args()
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)
os.environ.setdefault("MPLBACKEND", "Agg")

import resource  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cohortnorm import diagnostics, edger, plots, qc  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate(n_genes: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NB counts (dispersion 0.2) with per-gene batch shifts and a condition effect."""
    rng = np.random.default_rng(seed)
    batch = np.array([f"batch{i % 3 + 1}" for i in range(n_samples)])
    condition = np.array(["control" if (i // 3) % 2 == 0 else "treated" for i in range(n_samples)])
    base = rng.lognormal(mean=1.0, sigma=2.0, size=n_genes)
    batch_shift = rng.normal(0.0, 0.4, size=(n_genes, 3))
    condition_effect = np.where(rng.random(n_genes) < 0.1, rng.normal(0.0, 1.0, n_genes), 0.0)
    library = rng.uniform(0.5, 1.5, size=n_samples)
    batch_index = np.array([int(b[-1]) - 1 for b in batch])
    counts = np.empty((n_genes, n_samples), dtype=np.int64)
    size = 5.0  # 1 / dispersion
    treated = condition == "treated"
    for start in range(0, n_genes, 5000):  # in blocks: keep the peak memory the QC's own
        rows = slice(start, min(start + 5000, n_genes))
        mean = np.exp(
            np.log(base[rows])[:, None]
            + batch_shift[rows][:, batch_index]
            + condition_effect[rows, None] * treated
            + np.log(library)[None, :]
        )
        counts[rows] = rng.negative_binomial(size, size / (size + mean))
    return counts, batch, condition


def stage_figures(result: qc.StageQC, stage: str, directory: str) -> None:
    """Draw and save the six figures of one stage, as the qc_stage script does."""
    figures = plots.stage_figures(result, title=stage)
    for name, figure in figures.items():
        plots.save_figure(figure, os.path.join(directory, stage, f"{name}.png"))


def main() -> None:
    started = time.perf_counter()
    counts, batch, condition = simulate(ARGS.genes, ARGS.samples, ARGS.seed)
    samples = [f"s{i:04d}" for i in range(ARGS.samples)]
    print(
        f"simulated {ARGS.genes} genes × {ARGS.samples} samples in "
        f"{time.perf_counter() - started:.1f} s (peak RSS {peak_rss_mb():.0f} MB)"
    )
    lib_size = counts.sum(axis=0).astype(np.float64)
    norm_factors = np.exp(np.random.default_rng(0).normal(0, 0.05, ARGS.samples))
    timings: dict[str, float] = {}
    metrics = []
    with tempfile.TemporaryDirectory() as directory:
        t0 = time.perf_counter()
        for stage, sizes in (
            ("raw", lib_size),
            ("normalized", lib_size * norm_factors),
            ("batch_corrected", lib_size * norm_factors),
        ):
            t = time.perf_counter()
            logcpm = edger.cpm(counts, sizes, log=True, prior_count=2.0)
            result = qc.stage_qc(logcpm, samples, condition=condition, batch=batch, stage=stage)
            t_core = time.perf_counter() - t
            # What the qc_stage job adds: gPCA (every gene, as qc.gpca_top_genes: null, with
            # the default 200 permutations) and the per-gene variance explained.
            t = time.perf_counter()
            diagnostics.gpca_delta(
                logcpm, list(batch), n_permutations=200, gene_variance=result.gene_variance
            )
            t_gpca = time.perf_counter() - t
            diagnostics.variance_explained_table(
                {stage: logcpm},
                {"batch": list(batch), "condition": list(condition)},
                [f"g{i}" for i in range(len(logcpm))],
            )
            t_variance = time.perf_counter() - t - t_gpca
            del logcpm
            t = time.perf_counter()
            stage_figures(result, stage, directory)
            timings[f"{stage} (logCPM + core)"] = t_core
            timings[f"{stage} (gPCA)"] = t_gpca
            timings[f"{stage} (variance explained)"] = t_variance
            timings[f"{stage} (figures)"] = time.perf_counter() - t
            metrics.append(result.metrics)
            if stage == "normalized":
                per_sample = result.per_sample
        t = time.perf_counter()
        summary = qc.count_summary(counts)
        summary.index = pd.Index(samples, name="sample")
        flags = qc.sample_flags(summary, per_sample)
        table = pd.DataFrame(metrics)
        plots.save_figure(
            plots.library_size_figure(summary, groups=batch), f"{directory}/library_sizes.png"
        )
        plots.save_figure(plots.verdict_figure(table), f"{directory}/verdict.png")
        timings["summary (flags, library sizes, verdict)"] = time.perf_counter() - t
        total = time.perf_counter() - t0
    for name, seconds in timings.items():
        print(f"  {name:45s} {seconds:6.1f} s")
    print(table[["stage", "batch_r2", "condition_r2", "batch_silhouette", "verdict"]])
    print(f"flagged samples: {int((flags['n_flags'] > 0).sum())}")
    print(
        f"QC wall time ({ARGS.genes} × {ARGS.samples}, {ARGS.threads} threads, 3 stages): "
        f"{total:.1f} s; peak RSS {peak_rss_mb():.0f} MB (includes the simulated counts, 480 MB)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
