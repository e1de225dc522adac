"""The sample-sheet design checked before anything runs: names, missing cells, confounding.

The workflow calls :func:`check_sample_names` and :func:`check_design` when it reads the
config, before the first job, so a design that no method can use stops the run at once
with a message in plain words. The scripts apply the same missing-value rule
(:func:`is_missing`) when they read the sheet.

sva's ``ComBat`` and ``ComBat_seq`` stop on a rank-deficient design with terse messages
("The covariate is confounded with batch!"); the checks here say which batch holds which
covariate level and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError, preview
from cohortnorm.model_matrix import check_residual_df, rank
from cohortnorm.registry import BATCH_CORRECTORS

#: Cell values taken as "missing" in every sample-sheet column the config uses. Empty
#: cells and the spellings spreadsheet programs, R and pandas write for a missing value.
#: Matched after stripping surrounding spaces, case-sensitively ("none" stays a level).
MISSING_VALUES = frozenset({"", "NA", "N/A", "n/a", "na", "NaN", "nan", "#N/A", "NULL", "null"})

#: Characters a sample name must not contain, with the reason shown to the user.
_FORBIDDEN = {
    "/": "a slash (it would become a folder in per-sample paths)",
    "\\": "a backslash",
    "{": "a curly brace (it marks a wildcard in file patterns)",
    "}": "a curly brace (it marks a wildcard in file patterns)",
    '"': "a double quote (it breaks quoting in tables)",
}


def is_missing(values: pd.Series) -> pd.Series:
    """Whether each cell counts as missing: NaN/None, empty, or one of MISSING_VALUES.

    Parameters
    ----------
    values
        A sample-sheet column (any dtype).

    Returns
    -------
    pandas.Series
        Boolean, same index.
    """
    text = values.astype(object).where(values.notna(), "")
    return text.map(lambda v: str(v).strip() in MISSING_VALUES).astype(bool)


def check_sample_names(names: Sequence[object], *, source: str) -> None:
    """Refuse sample names that cannot be used safely in every table and file pattern.

    The rule: a name is not empty and not a missing-value spelling; it has no space, tab
    or other whitespace anywhere (leading and trailing included), and none of
    ``/ \\ { } "``. Anything else (letters, digits, ``. _ - + $ ( ) [ ]`` …) is fine.

    Parameters
    ----------
    names
        The ``sample`` column, in sheet order.
    source
        The sample sheet's file name, for messages.

    Raises
    ------
    InputError
        Naming the rows (header = line 1) and the offending names, and the fix.
    """
    problems: list[str] = []
    for line, name in enumerate(names, start=2):
        text = "" if name is None or (isinstance(name, float) and np.isnan(name)) else str(name)
        if text.strip() in MISSING_VALUES:
            problems.append(f"line {line}: the sample name is empty or {text.strip()!r}")
            continue
        if text != text.strip():
            problems.append(
                f"line {line}: sample name {text!r} has a space or tab at its start or end"
            )
            continue
        if any(ch.isspace() for ch in text):
            problems.append(f"line {line}: sample name {text!r} contains a space or tab")
            continue
        bad = [reason for ch, reason in _FORBIDDEN.items() if ch in text]
        if bad:
            problems.append(f"line {line}: sample name {text!r} contains {bad[0]}")
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; … ({len(problems)} in all)" if len(problems) > 10 else ""
        )
        raise InputError(
            f"{source}: {shown}. Sample names may hold letters, digits and punctuation, but no "
            'spaces and none of / \\ { } ". Rename the sample in the sheet and in the count '
            "file(s) alike (see 'Sample names' in config/README.md)."
        )


def used_columns(settings: Mapping[str, Any], sheet_columns: Sequence[str]) -> dict[str, list]:
    """The sample-sheet columns a cohort's settings use, keyed by the config key naming them.

    ``batch_correction.batch`` counts when batch correction runs, and also without it when
    the sheet has that column, because QC marks samples by batch and reports its R².
    """
    batch = settings.get("batch_correction", {})
    method = batch.get("method", "none")
    active = method != "none"
    combat_seq = batch.get("combat_seq", {})
    remove = batch.get("remove_batch_effect", {})
    normalization = settings.get("normalization", {})
    scran = normalization.get("scran") or {}
    named: dict[str, list] = {
        "filter.group": [settings.get("filter", {}).get("group")],
        "normalization.scran.clusters": [scran.get("clusters")]
        if normalization.get("size_factor_type") == "scran"
        else [],
        "batch_correction.batch": [
            batch.get("batch") if active or batch.get("batch") in sheet_columns else None
        ],
        "batch_correction.covariates": list(batch.get("covariates", [])) if active else [],
        "batch_correction.combat_seq.group": [combat_seq.get("group")]
        if method == "combat_seq"
        else [],
        "batch_correction.combat_seq.covariates": list(combat_seq.get("covariates", []))
        if method == "combat_seq"
        else [],
        "batch_correction.remove_batch_effect.batch2": [remove.get("batch2")]
        if method == "remove_batch_effect"
        else [],
        "batch_correction.remove_batch_effect.covariates": list(remove.get("covariates", []))
        if method == "remove_batch_effect"
        else [],
        "batch_correction.combat_ref.group": [(batch.get("combat_ref") or {}).get("group")]
        if method == "combat_ref"
        else [],
    }
    return {key: [c for c in columns if c] for key, columns in named.items()}


def kept_covariates(settings: Mapping[str, Any]) -> list[str]:
    """The sheet columns whose effects batch correction keeps (the method's model)."""
    batch = settings.get("batch_correction", {})
    columns = list(batch.get("covariates", []))
    if batch.get("method") == "combat_seq":
        combat_seq = batch.get("combat_seq", {})
        columns += [combat_seq.get("group"), *list(combat_seq.get("covariates", []))]
    if batch.get("method") == "combat_ref":
        columns += [(batch.get("combat_ref") or {}).get("group")]
    return list(dict.fromkeys(c for c in columns if c))


def combat_ref_group(settings: Mapping[str, Any]) -> str | None:
    """ComBat-ref's ``group`` column: ``batch_correction.combat_ref.group``, else the
    covariate to keep (as ComBat-seq's group); ``None`` for the single-condition model.

    Raises
    ------
    InputError
        More than one column to keep: ComBat-ref models one condition and would remove the
        effect of any other covariate with the batch.
    """
    group = (settings.get("combat_ref") or {}).get("group")
    kept = list(dict.fromkeys([*([group] if group else []), *settings.get("covariates", [])]))
    if len(kept) > 1:
        raise InputError(
            f"ComBat-ref keeps one condition, but the config asks to keep {kept} "
            "(batch_correction.covariates and batch_correction.combat_ref.group). Keep only "
            "the condition, or use batch_correction.method: combat_seq, which keeps covariates."
        )
    return kept[0] if kept else None


def _columns_of(values: pd.Series) -> np.ndarray:
    """Design columns of one covariate: the number itself, or one indicator per level but one."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=float)[:, None]
    levels = sorted(pd.unique(values))
    return np.column_stack([(values == lv).to_numpy(dtype=float) for lv in levels[1:]] or [])


def _column_names(values: Mapping[str, pd.Series]) -> list[str]:
    """Names of the design columns :func:`_columns_of` makes, as R's model.matrix names them."""
    names: list[str] = []
    for name, column in values.items():
        if pd.to_numeric(column, errors="coerce").notna().all():
            names.append(name)
        else:
            names += [f"{name}{level}" for level in sorted(pd.unique(column))[1:]]
    return names


def _indicators(values: pd.Series) -> np.ndarray:
    return np.column_stack([(values == lv).to_numpy(dtype=float) for lv in pd.unique(values)])


def _crosstab(batch: pd.Series, covariate: pd.Series) -> str:
    parts = []
    for level in pd.unique(batch):
        inside = covariate[batch == level]
        counts = inside.value_counts(sort=False)
        held = ", ".join(f"{value} ({n})" for value, n in counts.items())
        parts.append(f"batch {level}: {held}")
    return "; ".join(parts)


def check_design(sheet: pd.DataFrame, settings: Mapping[str, Any], *, source: str) -> list[str]:
    """Check the sample sheet against what the config asks of it, before any job runs.

    Parameters
    ----------
    sheet
        The sample sheet as text, one row per sample, with a ``sample`` column.
    settings
        One cohort's validated settings (``filter``, ``batch_correction``).
    source
        The sample sheet's file name, for messages.

    Returns
    -------
    list of str
        Notes to log (e.g. a one-sample batch that ComBat corrects for its mean only).

    Raises
    ------
    InputError
        A column the config names is absent; a used column has a missing cell (empty,
        ``NA``, ``NaN``, ``N/A``, … see :data:`MISSING_VALUES`); batch correction with one
        batch, a one-sample batch under ComBat-seq, a constant or copied covariate,
        covariates confounded with each other or with batch, or no residual degrees of
        freedom. Each message says what to change.

    Notes
    -----
    edgeR's ``filterByExpr`` drops samples whose group is ``NA`` from its group sizes, and
    sva's ``ComBat`` refuses an ``NA`` covariate only deep inside ``lm``; here a missing
    cell in any used column stops the run, on purpose: a sample silently leaving the
    group count or becoming a batch of its own changes the results without a word.
    """
    _check_used_columns(sheet, settings, source)
    batch_settings = settings.get("batch_correction", {})
    method = batch_settings.get("method", "none")
    if method == "none":
        return []
    batch_name = batch_settings.get("batch")
    if not batch_name:
        raise InputError(
            f"batch_correction.method is {method} but batch_correction.batch names no column. "
            "Name the sheet column holding the batch, or set batch_correction.method: none."
        )
    batch = sheet[batch_name].astype(str).str.strip().reset_index(drop=True)
    notes = _check_batch_sizes(batch, batch_name, method, source)
    if method == "combat_ref":
        try:
            combat_ref_group(batch_settings)
        except InputError as error:
            raise InputError(f"{source}: {error}") from None
    kept = kept_covariates(settings)
    values = {name: sheet[name].astype(str).str.strip().reset_index(drop=True) for name in kept}
    _check_covariates(values, batch_name, source)
    tool = BATCH_CORRECTORS[method].label
    cov_design = _check_confounding(batch, batch_name, values, tool, source)
    # One residual-df rule for the sheet check and the method itself (its message gives
    # the samples, batches and design columns).
    try:
        check_residual_df(batch, cov_design, method=tool, covariate_names=_column_names(values))
    except InputError as error:
        raise InputError(f"{source}: {error}") from None
    return notes


def _check_used_columns(sheet: pd.DataFrame, settings: Mapping[str, Any], source: str) -> None:
    """Every column the config names exists and has a value for every sample."""
    columns = list(sheet.columns)
    used = used_columns(settings, columns)
    for key, names in used.items():
        for name in names:
            if name not in columns:
                raise InputError(
                    f"{source}: config key {key} names column {name!r}, which the sample sheet "
                    f"does not have (columns: {columns}). Add the column, or fix the key."
                )
    samples = sheet["sample"].astype(str)
    for key, names in used.items():
        for name in names:
            missing = is_missing(sheet[name]).to_numpy()
            if missing.any():
                raise InputError(
                    f"{source}: column {name!r} (used for {key}) has no value for sample(s) "
                    f"{preview(samples[missing].tolist(), 10, quoted=True)} (empty, NA, NaN "
                    "or N/A). Fill in "
                    "the value, or remove those samples from the sheet (and, for a count "
                    "matrix, set counts.subset_samples: true)."
                )


def _check_batch_sizes(batch: pd.Series, batch_name: str, method: str, source: str) -> list[str]:
    """At least two batches; a one-sample batch only where the method can take it."""
    sizes = batch.value_counts(sort=False)
    if len(sizes) < 2:
        raise InputError(
            f"{source}: every sample is in batch {batch.iloc[0]!r} (column {batch_name!r}), so "
            f"there is no batch effect to correct. Set batch_correction.method: none."
        )
    single = [str(level) for level, n in sizes.items() if n == 1]
    if single and method in ("combat_seq", "combat_ref"):
        tool = BATCH_CORRECTORS[method].label
        raise InputError(
            f"{source}: batch(es) {', '.join(single)} (column {batch_name!r}) hold a single "
            f"sample. {tool} needs at least two samples in every batch to estimate a "
            "batch's dispersion. Merge that batch with another, remove the sample, or use "
            "batch_correction.method: combat, which corrects a one-sample batch for its mean "
            "only (as sva does)."
        )
    if single:
        return [
            f"batch(es) {', '.join(single)} hold a single sample: ComBat corrects them for "
            "their mean only (sva switches to mean.only=TRUE)."
        ]
    return []


def _check_covariates(values: Mapping[str, pd.Series], batch_name: str, source: str) -> None:
    """No covariate is the batch itself, constant, or a copy of another."""
    kept = list(values)
    if batch_name in kept:
        raise InputError(
            f"the batch column {batch_name!r} is also listed as a covariate to keep. A column "
            "cannot be both removed and kept: take it out of the covariates."
        )
    for name, column in values.items():
        if column.nunique() == 1:
            raise InputError(
                f"{source}: covariate {name!r} has the same value ({column.iloc[0]!r}) for every "
                "sample, so there is nothing to keep. Remove it from the covariates."
            )
    for i, first in enumerate(kept):
        for second in kept[i + 1 :]:
            a, b = values[first], values[second]
            if (pd.factorize(a)[0] == pd.factorize(b)[0]).all():
                raise InputError(
                    f"{source}: covariates {first!r} and {second!r} group the samples in exactly "
                    "the same way (a copied column?). Keep one of them in the covariates."
                )


def _check_confounding(
    batch: pd.Series, batch_name: str, values: Mapping[str, pd.Series], tool: str, source: str
) -> np.ndarray:
    """Covariates independent of each other and of batch; returns their design columns."""
    kept = list(values)
    cov_design = (
        np.column_stack([_columns_of(values[name]) for name in kept])
        if kept
        else np.empty((len(batch), 0))
    )
    with_intercept = np.column_stack([np.ones(len(batch)), cov_design])
    if rank(with_intercept) < with_intercept.shape[1]:
        raise InputError(
            f"{source}: the covariates {', '.join(map(repr, kept))} are confounded with each "
            "other (one is determined by the others), so their effects cannot be told apart. "
            "Remove one of them from the covariates."
        )
    batch_design = _indicators(batch)
    full = np.column_stack([batch_design, cov_design])
    if rank(full) < full.shape[1]:
        involved = [
            name
            for name in kept
            if rank(np.column_stack([batch_design, _columns_of(values[name])]))
            < batch_design.shape[1] + _columns_of(values[name]).shape[1]
        ]
        names = involved or kept
        detail = "; ".join(f"{name}: {_crosstab(batch, values[name])}" for name in names)
        raise InputError(
            f"{source}: batch (column {batch_name!r}) is confounded with the covariate(s) "
            f"{', '.join(map(repr, names))} to keep: {detail}. Batch and biology cannot be "
            f"separated, so correcting for batch would remove the biology with it; {tool} "
            "refuses such a design, as sva does. To see the uncorrected data in QC, set "
            "batch_correction.method: none. To correct, the design needs samples of each "
            "covariate level in more than one batch."
        )
    return cov_design
