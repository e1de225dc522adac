"""ComBat on logCPM or ComBat-seq on filtered counts, keeping biological covariates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cohortnorm import combat, combat_seq
from cohortnorm.io.runner import run
from cohortnorm.io.tables import read_matrix, read_table, write_matrix, write_table
from cohortnorm.validation import sheet_column


def main(smk, logger):
    settings = smk.params.batch_correction
    values = read_matrix(smk.input.values)
    sheet = read_table(smk.input.samples, string_columns=list({"sample", *_columns(settings)}))
    sheet = sheet.set_index("sample").loc[values.columns]
    batch = sheet_column(
        sheet, settings["batch"], values.columns, sheet_source=smk.input.samples,
        purpose="batch_correction.batch",
    ).to_numpy()
    for column in settings["covariates"]:
        sheet_column(sheet, column, values.columns, sheet_source=smk.input.samples,
                     purpose="batch_correction.covariates")
    data = values.to_numpy(dtype=np.float64)
    if settings["method"] == "combat":
        options = settings["combat"]
        design = combat.design_matrix(sheet, settings["covariates"])
        logger.info(
            "ComBat (%s%s) over %d batches, covariates %s",
            "parametric" if options["parametric"] else "non-parametric",
            ", mean only" if options["mean_only"] else "",
            len(set(batch)), settings["covariates"] or "none",
        )
        result = combat.combat(
            data, batch, covariates=design, parametric=options["parametric"],
            mean_only=options["mean_only"], ref_batch=options["ref_batch"],
        )
        adjusted = result.adjusted
    else:
        options = settings["combat_seq"]
        group_column = options["group"] or (settings["covariates"] or [None])[0]
        group = None
        if group_column:
            group = sheet_column(sheet, group_column, values.columns,
                                 sheet_source=smk.input.samples,
                                 purpose="batch_correction.combat_seq.group").to_numpy()
        covariates = None
        if options["covariates"]:
            covariates = combat.design_matrix(sheet, options["covariates"])[:, 1:]
        logger.info("ComBat-seq over %d batches, group %s", len(set(batch)), group_column)
        result = combat_seq.combat_seq(
            data, batch, group=group, covariates=covariates, shrink=options["shrink"]
        )
        adjusted = result.adjusted
    for message in result.messages:
        logger.warning("%s", message)
    write_matrix(adjusted, values.index, list(values.columns), smk.output.corrected)
    write_table(_params_table(result, values.index), smk.output.params)


def _columns(settings) -> list[str]:
    names = [settings["batch"], *settings["covariates"]]
    names += [settings["combat_seq"]["group"], *settings["combat_seq"]["covariates"]]
    return [n for n in names if n]


def _params_table(result, genes) -> pd.DataFrame:
    """Per-batch location and scale estimates, one row per batch and gene."""
    levels = [str(level) for level in result.batch_levels]
    columns = {
        name: np.asarray(getattr(result, name))
        for name in ("gamma_hat", "gamma_star", "delta_hat", "delta_star", "phi_hat")
        if getattr(result, name, None) is not None
    }
    frames = []
    for index, level in enumerate(levels):
        frame = pd.DataFrame({"batch": level, "gene_id": np.asarray(genes)})
        for name, matrix in columns.items():
            frame[name] = matrix[index]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


run(main, snakemake)
