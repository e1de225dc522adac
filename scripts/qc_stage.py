"""QC of one stage (raw, normalized, vst, batch_corrected or a batch method): figures, tables."""

import numpy as np

from cohortnorm import diagnostics, edger, plots, qc
from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, read_table, write_table
from cohortnorm.registry import BATCH_CORRECTORS
from cohortnorm.runner import run

TITLES = {
    "raw": "raw logCPM (library sizes only)",
    "normalized": "normalized logCPM",
    "vst": "DESeq2 variance-stabilizing transform (log2 scale)",
    "batch_corrected": "batch-corrected logCPM",
    # With several batch methods, each one's stage is named after it.
    **{name: f"{entry.label}-corrected logCPM" for name, entry in BATCH_CORRECTORS.items()},
}


def stage_values(smk, logger):
    """The stage's logCPM: computed from counts for raw and ComBat-seq, else as stored."""
    matrix = read_matrix(smk.input.values)
    values = matrix.to_numpy(dtype=np.float64)
    prior_count = smk.params.prior_count
    if smk.wildcards.stage == "raw":
        logger.info("raw stage: logCPM of the filtered counts with plain library sizes")
        values = edger.cpm(values, values.sum(axis=0), log=True, prior_count=prior_count)
    elif "size_factors" in smk.input.keys():
        # Corrected counts (ComBat-seq, ComBat-ref): logCPM with the effective library
        # sizes of the filtered counts (normalization/size_factors.tsv), as for the
        # normalized stage.
        logger.info("corrected counts: logCPM with the stored effective library sizes")
        factors = read_table(smk.input.size_factors, string_columns=["sample"])
        sizes = factors.set_index("sample").loc[matrix.columns, "effective_lib_size"]
        values = edger.cpm(values, sizes.to_numpy(), log=True, prior_count=prior_count)
    if not np.isfinite(values).all():
        raise InputError(
            f"{smk.input.values}: {int((~np.isfinite(values)).sum())} missing or infinite "
            "value(s); QC needs a complete matrix."
        )
    return matrix, values


def main(smk, logger):
    stage, settings = smk.wildcards.stage, smk.params.qc
    matrix, values = stage_values(smk, logger)
    samples = [str(s) for s in matrix.columns]
    condition_name = smk.params.condition
    batch_name = smk.params.batch_correction["batch"]
    wanted = ["sample", *[c for c in (condition_name, batch_name) if c]]
    sheet = read_table(smk.input.samples, string_columns=wanted).set_index("sample")
    condition = qc.resolve_factor(sheet, condition_name, samples)
    batch = qc.resolve_factor(sheet, batch_name, samples)
    logger.info(
        "%s: %d genes × %d samples; condition column %s, batch column %s",
        stage,
        *values.shape,
        condition_name if condition is not None else "none",
        batch_name if batch is not None else "none",
    )
    result = qc.stage_qc(
        values,
        samples,
        condition=condition,
        batch=batch,
        stage=stage,
        top_genes=settings["top_variable_genes"],
        n_pcs=settings["n_pcs"],
        seed=settings["seed"],
        max_ma_panels=settings["max_ma_panels"],
    )
    metrics = result.metrics
    # gPCA's delta (Reese et al. 2013) with a permutation p-value, seeded: reruns agree.
    metrics["gpca_delta"] = metrics["gpca_p_value"] = float("nan")
    if batch is not None and len(set(batch)) > 1:
        gpca = diagnostics.gpca_delta(
            values,
            list(batch),
            n_permutations=settings["gpca_permutations"],
            seed=settings["seed"],
            top_genes=settings["gpca_top_genes"],
            gene_variance=result.gene_variance,
        )
        metrics["gpca_delta"], metrics["gpca_p_value"] = gpca.delta, gpca.p_value
        logger.info(
            "%s: gPCA delta %.3f, permutation p-value %.3g (%d permutations, %d genes)",
            stage,
            gpca.delta,
            gpca.p_value,
            len(gpca.permuted),
            gpca.n_genes,
        )
    # Per-gene variance explained by batch and by condition (drawn by qc_summary).
    factors = {
        name: list(labels)
        for name, labels in (("batch", batch), ("condition", condition))
        if labels is not None and len(set(labels)) > 1
    }
    write_table(
        diagnostics.variance_explained_table({stage: values}, factors, list(matrix.index)),
        smk.output.variance_explained,
        finite=True,
    )
    del values
    title = f"{smk.params.cohort}: {TITLES[stage]}"
    figures = plots.stage_figures(
        result,
        condition_name=condition_name or "condition",
        batch_name=batch_name or "batch",
        title=title,
    )
    for name, figure in figures.items():
        plots.save_figure(figure, smk.output[name])
    write_table(result.per_sample, smk.output.samples, index_label="sample")
    write_table(
        qc.metrics_frame([result.metrics], cohort=smk.params.cohort),
        smk.output.metrics,
        missing_as_empty=True,
    )
    if metrics["heatmap_samples"] < metrics["n_samples"]:
        logger.info(
            "correlation heatmap: %d of %d samples, evenly spread over each condition × batch "
            "group",
            metrics["heatmap_samples"],
            metrics["n_samples"],
        )
    logger.info(
        "PC variance explained by batch %.3f, by condition %.3f; Cramér's V between batch "
        "and condition in the sheet %.3f; verdict: %s (%s)",
        metrics["batch_r2"],
        metrics["condition_r2"],
        metrics["batch_condition_cramers_v"],
        metrics["verdict"],
        metrics["verdict_rule"],
    )


run(main, snakemake)
