"""The batch correctors as the workflow calls them: sample sheet in, matrix and estimates out.

Each function here is one entry of :data:`cohortnorm.registry.BATCH_CORRECTORS`: it takes
a :class:`BatchInput` (the matrix, the sample sheet in the matrix's column order, the
``batch_correction`` settings and the threads) and returns a :class:`BatchCorrection`, so
that ``scripts/batch_correction.py`` calls whichever method the config names.

What every method shares lives here once: the batch column read as R's factor
(:func:`cohortnorm.model_matrix.batch_factor`, the same level order for every method),
the design matrix (:func:`cohortnorm.model_matrix.design_matrix`) and the table of
per-batch estimates (:func:`params_table`, one row per batch × gene, batches in level
order, estimates genes × batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cohortnorm import combat as combat_module
from cohortnorm import limma
from cohortnorm.errors import InputError
from cohortnorm.model_matrix import (
    batch_factor,
    design_column_names,
    design_matrix,
    factor_levels,
)
from cohortnorm.validation import sheet_column


@dataclass
class BatchCorrection:
    """What a batch corrector returns to the workflow.

    Attributes
    ----------
    adjusted
        The corrected matrix, genes × samples in the input's order.
    params
        Per-batch estimates, one row per (batch, gene): columns ``batch``, ``gene_id``,
        then the method's estimates (see :func:`params_table`).
    notes
        Progress lines for the log (information).
    warnings
        Lines the user should read (logged as warnings).
    """

    adjusted: np.ndarray
    params: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def params_table(
    levels: Sequence[object], genes: Sequence[object], **estimates: Any
) -> pd.DataFrame:
    """Per-batch estimates (each genes × batches), one row per batch and gene.

    Rows run over the batches in ``levels`` order, and within a batch over ``genes``.
    """
    frames = []
    for index, level in enumerate(levels):
        frame = pd.DataFrame({"batch": str(level), "gene_id": np.asarray(genes)})
        for name, matrix in estimates.items():
            frame[name] = np.asarray(matrix)[:, index]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class BatchInput:
    """What every batch corrector is given.

    Attributes
    ----------
    values
        The input matrix (logCPM or counts, as the registry entry says), genes × samples.
    sheet
        The sample sheet, indexed by sample in ``values``' column order, typed as read.
    settings
        The ``batch_correction`` config section.
    threads
        Worker threads (the rule's).
    source
        The sheet's name for messages.
    """

    values: pd.DataFrame
    sheet: pd.DataFrame
    settings: Mapping[str, Any]
    threads: int = 1
    source: str = "sample sheet"

    def column(self, name: str, purpose: str) -> pd.Series:
        """Sheet column ``name`` for the matrix's samples, refused if absent or incomplete."""
        return sheet_column(
            self.sheet, name, list(self.values.columns), sheet_source=self.source, purpose=purpose
        )


def correct_combat(data: BatchInput) -> BatchCorrection:
    """``sva::ComBat`` on logCPM, keeping ``batch_correction.covariates``."""
    values, sheet, settings = data.values, data.sheet, data.settings
    options = settings["combat"]
    batch = data.column(settings["batch"], "batch_correction.batch")
    for name in settings["covariates"]:
        data.column(name, "batch_correction.covariates")
    design = design_matrix(sheet, settings["covariates"])
    notes = [
        "ComBat ({}{}) over {} batches, covariates {}".format(
            "parametric" if options["parametric"] else "non-parametric",
            ", mean only" if options["mean_only"] else "",
            len(set(batch)),
            settings["covariates"] or "none",
        )
    ]
    result = combat_module.combat(
        values.to_numpy(),
        batch.to_numpy(),
        covariates=design,
        parametric=options["parametric"],
        mean_only=options["mean_only"],
        ref_batch=options["ref_batch"],
        gene_names=list(values.index),
        covariate_names=design_column_names(sheet, settings["covariates"]),
        threads=data.threads,
    )
    # Genes constant within a batch are not adjusted and have no estimates (NaN in the
    # result): their rows are left out of the parameter table.
    adjusted_genes = ~result.zero_variance_genes
    if not adjusted_genes.all():
        notes.append(
            f"{int((~adjusted_genes).sum())} gene(s) constant within a batch are returned "
            "unadjusted and have no rows in the parameter table"
        )
    params = params_table(
        result.batch_levels,
        values.index[adjusted_genes],
        gamma_hat=result.gamma_hat.T[adjusted_genes],
        gamma_star=result.gamma_star.T[adjusted_genes],
        delta_hat=result.delta_hat.T[adjusted_genes],
        delta_star=result.delta_star.T[adjusted_genes],
    )
    return BatchCorrection(result.adjusted, params, notes, list(result.messages))


def combat_seq_model(settings: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """ComBat-seq's ``group`` and ``covar_mod`` columns (see combat_seq.model_columns)."""
    # Imported here: ComBat-seq loads scipy (half a second at start-up), which the
    # other methods do not need.
    from cohortnorm import combat_seq as combat_seq_module

    options = settings["combat_seq"]
    return combat_seq_module.model_columns(
        settings["covariates"], options.get("group"), options.get("covariates")
    )


def correct_combat_seq(data: BatchInput) -> BatchCorrection:
    """``sva::ComBat_seq`` on the filtered counts, with its ``group`` and ``covar_mod``."""
    # Imported here: ComBat-seq loads scipy (half a second at start-up), which the
    # other methods do not need.
    from cohortnorm import combat_seq as combat_seq_module

    values, sheet, settings = data.values, data.sheet, data.settings
    options = settings["combat_seq"]
    batch = data.column(settings["batch"], "batch_correction.batch")
    group_name, covariate_names = combat_seq_model(settings)
    group = None
    if group_name:
        purpose = (
            "batch_correction.combat_seq.group"
            if options.get("group")
            else "batch_correction.covariates"
        )
        labels = data.column(group_name, purpose)
        # Levels sorted as sva's as.factor(group) sorts a sample-sheet column: the first
        # is the reference level, which decides the fit of genes absent from a whole
        # group (see CombatSeqResult.divergent).
        group = pd.Categorical(labels, categories=factor_levels(labels))
    covariates = None
    if covariate_names:
        purpose = (
            "batch_correction.combat_seq.covariates"
            if options.get("covariates")
            else "batch_correction.covariates"
        )
        for name in covariate_names:
            data.column(name, purpose)
        covariates = design_matrix(sheet, covariate_names)[:, 1:]
    notes = [
        f"ComBat-seq over {len(set(batch))} batches, group {group_name or 'none'}, "
        f"covar_mod {covariate_names or 'none'}"
    ]
    result = combat_seq_module.combat_seq(
        values.to_numpy(),
        batch.to_numpy(),
        group=group,
        covariates=covariates,
        shrink=options["shrink"],
        threads=data.threads,
        covariate_names=(
            design_column_names(sheet, covariate_names)[1:] if covariate_names else None
        ),
    )
    kept = values.index[result.kept_genes]
    params = params_table(
        result.batches,
        kept,
        gamma_hat=result.gamma_hat,
        gamma_star=result.gamma_star,
        phi_hat=result.phi_hat,
    )
    # Which genes had an infinite coefficient (zero in a whole model level), per row.
    divergent = np.array([levels or "none" for levels in result.divergent], dtype=object)
    params["all_zero_in"] = np.tile(divergent, len(result.batches))
    warnings = []
    if (divergent != "none").any():
        shown = [
            f"{gene} ({levels})"
            for gene, levels in zip(kept, divergent, strict=True)
            if levels != "none"
        ]
        warnings.append(
            f"{len(shown)} gene(s) are zero in every sample of a model level; their corrected "
            "counts equal sva's but come from a fit stopped at edgeR's iteration limits "
            "(column all_zero_in of the parameter table): "
            + ", ".join(shown[:20])
            + (", ..." if len(shown) > 20 else "")
        )
    # sva's progress lines (its cat() output): information, not warnings.
    return BatchCorrection(result.adjusted, params, notes + list(result.messages), warnings)


def correct_remove_batch_effect(data: BatchInput) -> BatchCorrection:
    """``limma::removeBatchEffect`` on logCPM, keeping ``batch_correction.covariates``.

    ``batch`` is ``batch_correction.batch``; ``batch2`` and the numeric ``covariates``
    come from ``batch_correction.remove_batch_effect``; the design kept is
    ``model.matrix(~ covariates)`` of ``batch_correction.covariates``. The result is for
    looking at the data (PCA, clustering, heatmaps), not for differential expression.

    The parameter table holds, per batch and gene, ``removed``: the mean over the batch's
    samples of what was subtracted (input − corrected). Without ``batch2`` and
    covariates this is exactly the batch's effect (the same for each of its samples).
    """
    values, sheet, settings = data.values, data.sheet, data.settings
    options = settings["remove_batch_effect"]
    batch = data.column(settings["batch"], "batch_correction.batch")
    for name in settings["covariates"]:
        data.column(name, "batch_correction.covariates")
    design = design_matrix(sheet, settings["covariates"])
    batch2 = None
    if options.get("batch2"):
        batch2 = data.column(options["batch2"], "batch_correction.remove_batch_effect.batch2")
    covariates = None
    if options.get("covariates"):
        columns = []
        for name in options["covariates"]:
            column = data.column(name, "batch_correction.remove_batch_effect.covariates")
            numeric = pd.to_numeric(column, errors="coerce")
            if numeric.isna().any():
                bad = list(column.index[numeric.isna()])
                raise InputError(
                    f"{data.source}: batch_correction.remove_batch_effect.covariates "
                    f"column {name!r} must hold numbers; sample(s) {', '.join(map(str, bad))} "
                    f"have {', '.join(map(repr, column[numeric.isna()].astype(str)))}. Give a "
                    "number for every sample, or list a text column as batch2."
                )
            columns.append(numeric.to_numpy(dtype=float))
        covariates = np.column_stack(columns)
    notes = [
        "removeBatchEffect over {} batches, batch2 {}, covariates {}, design kept ~ {}".format(
            len(set(batch)),
            options.get("batch2") or "none",
            options.get("covariates") or "none",
            " + ".join(settings["covariates"]) or "1",
        ),
        "removeBatchEffect output is for looking at the data (PCA, clustering); do not use "
        "it for differential expression",
    ]
    x = values.to_numpy()
    adjusted = limma.remove_batch_effect(
        x,
        batch=batch.to_numpy(),
        batch2=None if batch2 is None else batch2.to_numpy(),
        covariates=covariates,
        design=design,
    )
    levels = factor_levels(batch)
    removed = x - adjusted
    labels = batch.to_numpy()
    per_batch = np.column_stack([removed[:, labels == level].mean(axis=1) for level in levels])
    params = params_table(levels, values.index, removed=per_batch)
    return BatchCorrection(np.asarray(adjusted), params, notes)


def correct_combat_ref(data: BatchInput) -> BatchCorrection:
    """ComBat-ref (:func:`cohortnorm.combat_ref.combat_ref`) on the filtered counts.

    ``group`` is ``batch_correction.combat_ref.group``, else the covariate to keep (as
    ComBat-seq's); with none the model is ``~ batch`` (the single-condition case, with
    an intercept). The parameter table has one row per batch: ``batch``, ``n_samples``,
    ``dispersion`` (edgeR common dispersion), ``dispersion_design``, ``reference`` (the
    kept batch) and ``capped_genes``.
    """
    # Imported here: ComBat-ref and ComBat-seq load scipy (half a second at start-up),
    # which the other methods do not need.
    from cohortnorm.combat_ref import combat_ref
    from cohortnorm.design import combat_ref_group

    values, settings = data.values, data.settings
    options = settings.get("combat_ref") or {}
    batch = data.column(settings["batch"], "batch_correction.batch")
    group_name = combat_ref_group(settings)
    group = None
    if group_name:
        purpose = (
            "batch_correction.combat_ref.group"
            if options.get("group")
            else "batch_correction.covariates"
        )
        labels = data.column(group_name, purpose)
        group = pd.Categorical(labels, categories=factor_levels(labels))
    levels, codes = batch_factor(batch, values.shape[1])
    result = combat_ref(
        values.to_numpy(),
        pd.Categorical.from_codes(codes, categories=levels),
        group,
        genewise_disp=bool(options.get("genewise_disp", False)),
        threads=data.threads,
    )
    params = result.params.copy()
    params["capped_genes"] = [result.capped.get(b, 0) for b in params["batch"]]
    dispersions = ", ".join(
        f"{b} {d:.4g}" for b, d in zip(params["batch"], params["dispersion"], strict=True)
    )
    notes = [
        f"ComBat-ref over {len(params)} batches, group {group_name or 'none (intercept only)'}, "
        f"{'genewise' if options.get('genewise_disp') else 'one'} dispersion per batch",
        f"per-batch common dispersions: {dispersions}; reference batch (kept as given): "
        f"{result.reference}",
        f"{int((~result.kept_genes).sum())} gene(s) with no reads in some batch are returned "
        "unchanged",
    ]
    return BatchCorrection(result.adjusted, params, notes + list(result.messages), [])
