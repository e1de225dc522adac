"""Sharded mode, QC: per-sample numbers and the normalized stage's PCA from the shards'
statistics → qc/sharded/samples.tsv, pca_variance.tsv, pca.png (docs/sharding.md)."""

import numpy as np
import pandas as pd

from cohortnorm import plots, qc
from cohortnorm.io.shardfiles import load
from cohortnorm.io.tables import read_table, write_table
from cohortnorm.qc import PCAResult
from cohortnorm.runner import run


def main(smk, logger):
    samples = [str(s) for s in smk.params.sample_names]
    counts = [load(path) for path in smk.input.summary]
    scores = [load(path) for path in smk.input.scores]
    axes = load(smk.input.axes)
    factors = read_table(smk.input.size_factors, string_columns=["sample"])
    result = PCAResult(
        np.vstack([part["scores"] for part in scores]),
        axes["variance"],
        axes["variance_ratio"],
        axes["genes"],
    )
    distance = qc.pca_distance(result)
    table = pd.DataFrame(
        {
            "sample": samples,
            "lib_size": np.concatenate([part["lib_size"] for part in counts]),
            "detected_genes": np.concatenate([part["detected_genes"] for part in counts]),
            "dropout_rate": np.concatenate([part["dropout_rate"] for part in counts]),
            "filtered_lib_size": factors["lib_size"].to_numpy(),
            "norm_factor": factors["norm_factor"].to_numpy(),
            "size_factor": factors["size_factor"].to_numpy(),
            "logcpm_median": np.concatenate([part["median"] for part in scores]),
            "logcpm_iqr": np.concatenate([part["iqr"] for part in scores]),
            "pca_distance": distance,
            "pca_distance_z": qc.robust_z(distance),
        }
    )
    for k in range(result.scores.shape[1]):
        table[f"PC{k + 1}"] = result.scores[:, k]
    write_table(table, smk.output.samples, finite=True)
    variance = pd.DataFrame(
        {
            "PC": [f"PC{k + 1}" for k in range(result.variance.size)],
            "variance": result.variance,
            "variance_ratio": result.variance_ratio,
            "genes_used": len(result.genes),
        }
    )
    write_table(variance, smk.output.variance, finite=True)
    condition_name = smk.params.condition
    batch_name = smk.params.batch
    wanted = ["sample", *[c for c in (condition_name, batch_name) if c]]
    sheet = read_table(smk.input.samples, string_columns=wanted).set_index("sample")
    figure = plots.pca_figure(
        result,
        condition=qc.resolve_factor(sheet, condition_name, samples),
        batch=qc.resolve_factor(sheet, batch_name, samples),
        condition_name=condition_name or "condition",
        batch_name=batch_name or "batch",
        title="normalized logCPM (sharded PCA)",
    )
    plots.save_figure(figure, smk.output.figure)
    # The normalized stage's metrics row of qc/metrics.tsv, from the same PCA and
    # per-sample IQRs; median_abs_rle needs every gene's median over all samples (gene
    # blocks), which the sharded QC does not compute, so that column is left out.
    metrics = qc._stage_metrics(
        "normalized",
        (int(axes["n_genes"]), len(samples)),
        result,
        pd.DataFrame({"iqr": table["logcpm_iqr"]}),
        pd.DataFrame({"median": np.zeros(len(samples))}),
        qc.resolve_factor(sheet, batch_name, samples),
        qc.resolve_factor(sheet, condition_name, samples),
    )
    del metrics["median_abs_rle"]
    write_table(pd.DataFrame([{"cohort": smk.params.cohort, **metrics}]), smk.output.metrics)
    logger.info("PCA of %d samples on %d genes", len(samples), len(result.genes))


run(main, snakemake)
