"""QC summary of a cohort: metrics per stage, sample flags, library sizes and verdict,
the design diagnostics (batch vs covariates, variance explained), the low-input check and
the MultiQC custom content."""

from pathlib import Path

import pandas as pd

from cohortnorm import design_plots, diagnostics, multiqc, plots, qc
from cohortnorm.design import kept_covariates
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
    low_input, low_warning = qc.low_input_summary(
        raw,
        median_lib_size=settings["low_input_median_lib_size"],
        median_dropout=settings["low_input_median_dropout"],
    )
    if low_warning:
        logger.warning("%s", low_warning)
    text = ["cohort", "stage", "verdict", "verdict_rule"]
    metrics = pd.concat([read_table(path, string_columns=text) for path in smk.input.stage_metrics])
    for name, value in {**filter_columns, **dropout, **low_input}.items():
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

    write_multiqc_files(smk, flags, metrics, per_sample)

    batch_name = smk.params.batch_correction["batch"]
    sheet = read_table(smk.input.samples, string_columns=[c for c in ("sample", batch_name) if c])
    design_diagnostics(smk, logger, sheet.set_index("sample").loc[raw.index], metrics)
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


def write_multiqc_files(smk, flags, metrics, per_sample):
    """qc/multiqc/*_mqc.tsv: per-sample QC, PC scores and the per-stage verdict."""
    written = multiqc.write_multiqc(
        Path(smk.output.multiqc_general_stats).parent,
        flags=flags,
        verdict=qc.verdict_table(metrics),
        stage_samples={"normalized": per_sample.set_index("sample")},
    )
    expected = {
        smk.output.multiqc_general_stats,
        smk.output.multiqc_sample_qc,
        smk.output.multiqc_verdict,
    }
    assert {str(p) for p in written.values()} == expected, "MultiQC file names changed"


def design_diagnostics(smk, logger, sheet, metrics):
    """qc/design.tsv (batch vs each covariate) and qc/variance_explained.png."""
    batch_name = smk.params.batch_correction["batch"]
    condition = smk.params.condition
    settings = {"batch_correction": smk.params.batch_correction}
    covariates = [c for c in dict.fromkeys([condition, *kept_covariates(settings)]) if c]
    covariates = [c for c in covariates if c in sheet.columns and c != batch_name]
    if batch_name and batch_name in sheet.columns and covariates:
        association, cells = diagnostics.batch_association(
            sheet.reset_index(), batch_name, covariates
        )
        # Samples per batch x level, as text in the covariate's row.
        association["samples_per_batch_and_level"] = [
            "; ".join(
                f"{row.batch}/{row.level}: {row.n_samples}"
                for row in cells[cells["covariate"] == name].itertuples()
            )
            for name in association["covariate"]
        ]
        for row in association.itertuples():
            logger.info(
                "design: batch vs %s: p-value %s%s",
                row.covariate,
                f"{row.p_value:.3g}" if pd.notna(row.p_value) else "none",
                f" ({row.note})" if isinstance(row.note, str) and row.note else "",
            )
    else:
        association = pd.DataFrame(
            columns=[*diagnostics.ASSOCIATION_COLUMNS, "samples_per_batch_and_level"]
        )
        logger.info("design: no batch column or no covariate, design.tsv has no rows")
    write_table(association, smk.output.design, missing_as_empty=True)

    table = pd.concat(
        [
            read_table(path, string_columns=["stage", "factor", "gene_id"])
            for path in smk.input.stage_variance
        ],
        ignore_index=True,
    )
    gpca = metrics[["stage", "gpca_delta", "gpca_p_value"]].copy()
    gpca["n_permutations"] = smk.params.qc["gpca_permutations"]
    gpca = gpca[pd.to_numeric(gpca["gpca_delta"]).notna()]
    title = f"{smk.params.cohort}: variance explained per gene"
    if table.empty:
        # No batch nor condition with two levels: nothing to explain, said in the figure.
        figure = plots._figure(6.0, 2.0)
        figure.text(0.5, 0.5, "no batch or condition column with two levels", ha="center")
        plots._suptitle(figure, title)
    else:
        figure = design_plots.variance_explained_figure(table, gpca, title=title)
    plots.save_figure(figure, smk.output.variance_explained)


run(main, snakemake)
