"""The small files the sharded workflow's jobs hand each other (docs/sharding.md).

* ``source.json``: where the cohort's counts are read from (a chunked store converted
  from the TSV, or the ``.h5ad`` file itself), its layer, genes and samples;
* ``.npz`` files: one per shard and step (per-gene / per-sample statistics), and one per
  gather (the gathered vectors every shard of the next step needs).

Only reading and writing here; the numbers come from :mod:`cohortnorm.sharded`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from cohortnorm import batch as batch_module
from cohortnorm.combat_seq import SeqPlan, seq_plan
from cohortnorm.io.chunked import MatrixSource, Source, open_store, shard_columns
from cohortnorm.io.tables import atomic_output, read_table
from cohortnorm.model_matrix import design_column_names, design_matrix, factor_levels
from cohortnorm.sharded import CombatFit, CombatPlan, plan_combat
from cohortnorm.validation import sheet_column


def write_source(path: str | Path, store: str | Path, layer: str | None, samples: list) -> None:
    """Record where the counts are read from (and the samples, in their order)."""
    text = json.dumps({"path": str(store), "layer": layer, "samples": samples}, indent=1)
    with atomic_output(path) as temporary:
        Path(temporary).write_text(text + "\n")


def read_source(path: str | Path) -> dict:
    """The record :func:`write_source` wrote."""
    return json.loads(Path(path).read_text())


def open_source(path: str | Path) -> Source:
    """Open the counts recorded in ``source.json`` (store or ``.h5ad``) for shard reads."""
    record = read_source(path)
    return open_store(record["path"], layer=record["layer"])


def read_shard(
    source: MatrixSource, shard: int, samples_per_shard: int
) -> tuple[slice, np.ndarray]:
    """Shard ``shard``'s columns and values, float64 and Fortran-ordered (the layout the
    in-memory steps read, so that column sums are bitwise theirs)."""
    columns = shard_columns(source.shape[1], shard, samples_per_shard)
    return columns, np.asfortranarray(source.read_columns(columns), dtype=np.float64)


def save(path: str | Path, **arrays: object) -> None:
    """Write named arrays (numbers, booleans, strings) as one ``.npz`` file."""
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})


def load(path: str | Path) -> Mapping[str, np.ndarray]:
    """The arrays :func:`save` wrote (read eagerly; the file is closed)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def combat_plan(smk: object) -> CombatPlan:
    """The cohort-wide ComBat model from the sample sheet, as ``batch.correct_combat``
    builds it (batch column, covariates' design, options), for the sharded ComBat."""
    settings = smk.params.batch_correction  # type: ignore[attr-defined]
    samples = list(smk.params.sample_names)  # type: ignore[attr-defined]
    source = str(smk.input.samples)  # type: ignore[attr-defined]
    identifiers = [name for name in ("sample", settings["batch"]) if name]
    sheet = read_table(source, string_columns=identifiers).set_index("sample").loc[samples]
    batch = sheet_column(
        sheet, settings["batch"], samples, sheet_source=source, purpose="batch_correction.batch"
    )
    for name in settings["covariates"]:
        sheet_column(
            sheet, name, samples, sheet_source=source, purpose="batch_correction.covariates"
        )
    options = settings["combat"]
    return plan_combat(
        batch.to_numpy(),
        design_matrix(sheet, settings["covariates"]),
        parametric=options["parametric"],
        mean_only=options["mean_only"],
        ref_batch=options["ref_batch"],
        covariate_names=design_column_names(sheet, settings["covariates"]),
    )


def save_combat_fit(path: str | Path, fit: CombatFit) -> None:
    """Write a (partly) gathered ComBat fit; fields not yet known are left out."""
    arrays = {f.name: getattr(fit, f.name) for f in fields(fit)}
    save(path, **{name: value for name, value in arrays.items() if value is not None})


def load_combat_fit(path: str | Path) -> CombatFit:
    """The fit :func:`save_combat_fit` wrote."""
    return CombatFit(**load(path))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SeqModel:
    """ComBat-seq's plan and what its per-gene steps need besides (for divergent genes)."""

    plan: SeqPlan
    group_labels: list[str] | None
    covariates: np.ndarray | None
    covariate_names: list[str] | None


def combat_seq_model(smk: object) -> SeqModel:
    """ComBat-seq's batches, group and covariates from the sample sheet, as
    ``batch.correct_combat_seq`` builds them, for the sharded ComBat-seq."""
    settings = smk.params.batch_correction  # type: ignore[attr-defined]
    samples = list(smk.params.sample_names)  # type: ignore[attr-defined]
    source = str(smk.input.samples)  # type: ignore[attr-defined]
    group_name, covariate_names = batch_module.combat_seq_model(settings)
    identifiers = [name for name in ("sample", settings["batch"], group_name) if name]
    sheet = read_table(source, string_columns=identifiers).set_index("sample").loc[samples]

    def column(name: str, purpose: str) -> pd.Series:
        return sheet_column(sheet, name, samples, sheet_source=source, purpose=purpose)

    batch = column(settings["batch"], "batch_correction.batch")
    group = None
    if group_name:
        labels = column(group_name, "batch_correction.combat_seq.group")
        group = pd.Categorical(labels, categories=factor_levels(labels))
    covariates, names = None, None
    if covariate_names:
        for name in covariate_names:
            column(name, "batch_correction.combat_seq.covariates")
        covariates = design_matrix(sheet, covariate_names)[:, 1:]
        names = design_column_names(sheet, covariate_names)[1:]
    plan = seq_plan(batch.to_numpy(), len(samples), group, covariates, True, names)
    labels_out = [plan.glevels[c] for c in plan.gcode] if plan.full else None
    return SeqModel(plan, labels_out, plan.cov, names)
