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
from dataclasses import fields
from pathlib import Path

import numpy as np

from cohortnorm.io.chunked import MatrixSource, Source, open_store, shard_columns
from cohortnorm.io.tables import atomic_output, read_table
from cohortnorm.model_matrix import design_column_names, design_matrix
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
