"""ComBat on logCPM or ComBat-seq on filtered counts, keeping biological covariates."""

import numpy as np
import pandas as pd

from cohortnorm import combat, combat_seq
from cohortnorm.design import check_design
from cohortnorm.runner import run
from cohortnorm.io.tables import read_matrix, read_table, write_matrix, write_table
from cohortnorm.validation import sheet_column


def main(smk, logger):
    settings = smk.params.batch_correction
    values = read_matrix(smk.input.values, dtype=np.float64)
    group_column = combat_seq_model(settings)[0] if settings["method"] == "combat_seq" else None
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
            threads=smk.threads,
        )
        # Genes constant within a batch are not adjusted and have no estimates (NaN in
        # the result): their rows are left out of the parameter table.
        adjusted_genes = ~result.zero_variance_genes
        if not adjusted_genes.all():
            logger.info(
                "%d gene(s) constant within a batch are returned unadjusted and have no rows in %s",
                int((~adjusted_genes).sum()),
                smk.output.params,
            )
        params = _params_table(
            result.batch_levels,
            values.index[adjusted_genes],
            gamma_hat=result.gamma_hat.T[adjusted_genes],
            gamma_star=result.gamma_star.T[adjusted_genes],
            delta_hat=result.delta_hat.T[adjusted_genes],
            delta_star=result.delta_star.T[adjusted_genes],
        )
        for message in result.messages:
            logger.warning("%s", message)
    else:
        options = settings["combat_seq"]
        group_name, covariate_names = combat_seq_model(settings)
        group = None
        if group_name:
            source = (
                "batch_correction.combat_seq.group"
                if options.get("group")
                else "batch_correction.covariates"
            )
            labels = column(group_name, source)
            # Levels sorted as sva's as.factor(group) sorts a sample-sheet column: the
            # first is the reference level, which decides the fit of genes absent from a
            # whole group (see CombatSeqResult.divergent).
            group = pd.Categorical(labels, categories=combat.factor_levels(labels))
        covariates = None
        if covariate_names:
            source = (
                "batch_correction.combat_seq.covariates"
                if options.get("covariates")
                else "batch_correction.covariates"
            )
            for name in covariate_names:
                column(name, source)
            covariates = combat.design_matrix(sheet, covariate_names)[:, 1:]
        logger.info(
            "ComBat-seq over %d batches, group %s, covar_mod %s",
            len(set(batch)),
            group_name or "none",
            covariate_names or "none",
        )
        result = combat_seq.combat_seq(
            data,
            batch,
            group=group,
            covariates=covariates,
            shrink=options["shrink"],
            threads=smk.threads,
            covariate_names=(
                combat.design_column_names(sheet, covariate_names)[1:] if covariate_names else None
            ),
        )
        kept = values.index[result.kept_genes]
        params = _params_table(
            result.batches,
            kept,
            gamma_hat=result.gamma_hat,
            gamma_star=result.gamma_star,
            phi_hat=result.phi_hat,
        )
        # Which genes had an infinite coefficient (zero in a whole model level), per row.
        divergent = np.array([levels or "none" for levels in result.divergent], dtype=object)
        params["all_zero_in"] = np.tile(divergent, len(result.batches))
        if (divergent != "none").any():
            shown = [
                f"{gene} ({levels})"
                for gene, levels in zip(kept, divergent, strict=True)
                if levels != "none"
            ]
            logger.warning(
                "%d gene(s) are zero in every sample of a model level; their corrected "
                "counts equal sva's but come from a fit stopped at edgeR's iteration limits "
                "(column all_zero_in of %s): %s",
                len(shown),
                smk.output.params,
                ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else ""),
            )
        # sva's progress lines (its cat() output): information, not warnings.
        for message in result.messages:
            logger.info("%s", message)
    write_matrix(
        result.adjusted, values.index, list(values.columns), smk.output.corrected, finite=True
    )
    write_table(params, smk.output.params, finite=True)


def combat_seq_model(settings) -> tuple[str | None, list[str]]:
    """ComBat-seq's ``group`` and ``covar_mod`` columns (see combat_seq.model_columns)."""
    options = settings["combat_seq"]
    return combat_seq.model_columns(
        settings["covariates"], options.get("group"), options.get("covariates")
    )


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
