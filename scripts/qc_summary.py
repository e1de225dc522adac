"""QC summary of a cohort: metrics per stage, sample flags, library sizes and verdict."""

import pandas as pd

from cohortnorm import plots, qc
from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, read_table, write_table
from cohortnorm.runner import run


def filter_counts(path):
    """genes_in and genes_kept from counts/filter_report.tsv (parameter, value)."""
    report = read_table(path, string_columns=["parameter", "value"])
    values = dict(zip(report["parameter"], report["value"], strict=True))
    try:
        return int(float(values["genes_in"])), int(float(values["genes_kept"]))
    except (KeyError, ValueError):
        raise InputError(f"{path}: no numeric genes_in / genes_kept rows.") from None


def count_summary(path):
    counts = read_matrix(path)
    summary = qc.count_summary(counts.to_numpy())
    summary.index = pd.Index([str(s) for s in counts.columns], name="sample")
    return summary


def main(smk, logger):
    settings = smk.params.qc
    raw = count_summary(smk.input.raw_counts)
    filtered = count_summary(smk.input.filtered_counts)
    filter_columns, warning = qc.filter_summary(
        *filter_counts(smk.input.filter_report), warn_fraction=settings["warn_removed_fraction"]
    )
    if warning:
        logger.warning("%s", warning)
    dropout = qc.dropout_summary(raw, filtered)
    logger.info(
        "dropout (fraction of zero counts per sample): median %.3f raw, %.3f filtered",
        dropout["dropout_raw_median"],
        dropout["dropout_filtered_median"],
    )
    text = ["cohort", "stage", "verdict", "verdict_rule"]
    metrics = pd.concat([read_table(path, string_columns=text) for path in smk.input.stage_metrics])
    for name, value in {**filter_columns, **dropout}.items():
        metrics[name] = value
    # No batch (or one level) leaves batch_r2 and the silhouettes missing: empty cells.
    write_table(metrics, smk.output.metrics, missing_as_empty=True)
    write_table(qc.verdict_table(metrics), smk.output.verdict_table, missing_as_empty=True)

    per_sample = read_table(smk.input.stage_samples, string_columns=["sample"])
    flags = qc.sample_flags(raw, per_sample.set_index("sample"))
    write_table(flags, smk.output.flags, index_label="sample")
    flagged = flags.index[flags["n_flags"] > 0].tolist()
    if flagged:
        logger.warning("%d sample(s) flagged (see sample_flags.tsv): %s", len(flagged), flagged)

    batch_name = smk.params.batch_correction["batch"]
    sheet = read_table(smk.input.samples, string_columns=[c for c in ("sample", batch_name) if c])
    batch = qc.resolve_factor(sheet.set_index("sample"), batch_name, raw.index)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    sizes = pd.DataFrame(
        {
            "lib_size": raw["lib_size"],
            "effective_lib_size": factors["effective_lib_size"].reindex(raw.index),
        }
    )
    cohort = smk.params.cohort
    plots.save_figure(
        plots.library_size_figure(
            sizes,
            groups=batch,
            group_name=batch_name or "batch",
            title=f"{cohort}: library sizes",
        ),
        smk.output.library_sizes,
    )
    verdicts = ", ".join(
        f"{s}: {v}" for s, v in zip(metrics["stage"], metrics["verdict"], strict=True)
    )
    association = pd.to_numeric(metrics["batch_condition_cramers_v"]).iloc[0]
    design = (
        ""
        if pd.isna(association)
        else f"\nCramér's V between batch and condition in the sample sheet: {association:.2f}"
    )
    plots.save_figure(
        plots.verdict_figure(
            metrics,
            title=f"{cohort}: do samples cluster by batch or by condition?\n{verdicts}{design}",
        ),
        smk.output.verdict,
    )
    logger.info("verdict per stage: %s", verdicts)
    confounded = qc.confounding_warning(metrics)
    if confounded:
        logger.warning("%s", confounded)


run(main, snakemake)
