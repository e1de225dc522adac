"""ComBat on logCPM or ComBat-seq on filtered counts, keeping biological covariates."""

import numpy as np
import pandas as pd

from cohortnorm import combat, combat_seq
from cohortnorm.design import check_design
from cohortnorm.io.runner import run
from cohortnorm.io.tables import read_matrix, read_table, write_matrix, write_table
from cohortnorm.validation import sheet_column


def main(smk, logger):
    settings = smk.params.batch_correction
    values = read_matrix(smk.input.values, dtype=np.float64)
    group_column = settings["combat_seq"]["group"]
    # Identifiers stay text; covariates keep their inferred type, so that a numeric
    # column (age, RIN) enters the design as a number and not as a factor.
    identifiers = [name for name in ("sample", settings["batch"], group_column) if name]
    sheet = read_table(smk.input.samples, string_columns=identifiers)
    sheet = sheet.set_index("sample").loc[values.columns]
    # The design checks the workflow made before the first job (cohortnorm.design), again
    # on the samples of this matrix, with the sheet read as text as it was then.
    text = pd.read_csv(
        smk.input.samples, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    text.columns = [column.strip() for column in text.columns]
    text = text.set_index("sample", drop=False).loc[values.columns].reset_index(drop=True)
    for note in check_design(text, {"batch_correction": settings}, source=smk.input.samples):
        logger.info("%s", note)

    def column(name, purpose):
        return sheet_column(
            sheet, name, values.columns, sheet_source=smk.input.samples, purpose=purpose
        )

    batch = column(settings["batch"], "batch_correction.batch").to_numpy()
    data = values.to_numpy()
    if settings["method"] == "combat":
        options = settings["combat"]
        for name in settings["covariates"]:
            column(name, "batch_correction.covariates")
        design = combat.design_matrix(sheet, settings["covariates"])
        logger.info(
            "ComBat (%s%s) over %d batches, covariates %s",
            "parametric" if options["parametric"] else "non-parametric",
            ", mean only" if options["mean_only"] else "",
            len(set(batch)),
            settings["covariates"] or "none",
        )
        result = combat.combat(
            data,
            batch,
            covariates=design,
            parametric=options["parametric"],
            mean_only=options["mean_only"],
            ref_batch=options["ref_batch"],
            gene_names=list(values.index),
            covariate_names=combat.design_column_names(sheet, settings["covariates"]),
        )
        params = _params_table(
            result.batch_levels,
            values.index,
            gamma_hat=result.gamma_hat.T,
            gamma_star=result.gamma_star.T,
            delta_hat=result.delta_hat.T,
            delta_star=result.delta_star.T,
        )
    else:
        options = settings["combat_seq"]
        group = None
        if group_column:
            labels = column(group_column, "batch_correction.combat_seq.group")
            # Levels in order of first appearance, as the reference's factor() call had.
            group = pd.Categorical(labels, categories=pd.unique(labels))
        covariates = None
        if options["covariates"]:
            for name in options["covariates"]:
                column(name, "batch_correction.combat_seq.covariates")
            covariates = combat.design_matrix(sheet, options["covariates"])[:, 1:]
        logger.info("ComBat-seq over %d batches, group %s", len(set(batch)), group_column)
        result = combat_seq.combat_seq(
            data, batch, group=group, covariates=covariates, shrink=options["shrink"]
        )
        kept = values.index[result.kept_genes]
        params = _params_table(
            result.batches,
            kept,
            gamma_hat=result.gamma_hat,
            gamma_star=result.gamma_star,
            phi_hat=result.phi_hat,
        )
    for message in result.messages:
        logger.warning("%s", message)
    write_matrix(result.adjusted, values.index, list(values.columns), smk.output.corrected)
    write_table(params, smk.output.params)


def _params_table(levels, genes, **estimates) -> pd.DataFrame:
    """Per-batch location and scale estimates (genes × batches each), one row per pair."""
    frames = []
    for index, level in enumerate(levels):
        frame = pd.DataFrame({"batch": str(level), "gene_id": np.asarray(genes)})
        for name, matrix in estimates.items():
            frame[name] = np.asarray(matrix)[:, index]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


run(main, snakemake)
