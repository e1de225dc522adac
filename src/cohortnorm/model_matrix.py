"""Model matrices as R builds them, shared by every batch corrector.

One place for what ComBat, ComBat-seq and any later method need from the sample sheet:

* :func:`factor_levels` and :func:`batch_factor`: a factor's levels in R's order (ICU
  collation for text, as the reference outputs were made), so that every method orders
  batches and groups the same way (``a`` before ``B``);
* :func:`design_matrix` / :func:`design_column_names`: ``model.matrix(~cov1 + ...)``;
* :func:`rank`: the rank R's ``qr()`` reports (relative tolerance 1e-7);
* :func:`check_confounding` and :func:`check_residual_df`: sva's design checks, with one
  set of messages that quote sva's own sentence, then name the columns and batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError

__all__ = [
    "batch_factor",
    "check_confounding",
    "check_residual_df",
    "design_column_names",
    "design_matrix",
    "factor_levels",
    "rank",
]

# R's qr() (LINPACK dqrdc2) declares a column dependent below this relative tolerance.
_RANK_TOL = 1e-7


def _r_sort_key(value: object) -> object:
    # R's factor() sorts character levels with the locale collation; the references were
    # made with ICU collation, which cohortnorm.tximport.r_sort_key reproduces for ASCII.
    from cohortnorm.tximport import r_sort_key

    return r_sort_key(str(value))


def factor_levels(values: Sequence[object] | pd.Series) -> list[object]:
    """The levels R's ``factor(values)`` (and ``as.factor``) gives, in R's order.

    A categorical keeps its category order (unused categories dropped); booleans are
    ``False, True``; anything else is sorted as R sorts it (ICU collation, see
    :func:`cohortnorm.tximport.r_sort_key`). The first level is the reference level of
    treatment contrasts.
    """
    return _factor_levels(values if isinstance(values, pd.Series) else pd.Series(list(values)))


def _factor_levels(values: pd.Series) -> list[object]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna())
        return [level for level in values.cat.categories if level in present]
    if pd.api.types.is_bool_dtype(values):
        return [level for level in (False, True) if (values == level).any()]
    return sorted(pd.unique(values.dropna()), key=_r_sort_key)


def _design(samples: pd.DataFrame, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names = (
        samples["sample"].astype(str).tolist()
        if "sample" in samples.columns
        else [str(i) for i in samples.index]
    )
    columns: list[np.ndarray] = [np.ones(len(samples))]
    labels = ["(Intercept)"]
    for covariate in covariates:
        if covariate not in samples.columns:
            raise InputError(
                f"Covariate {covariate!r} is not a column of the sample sheet "
                f"(columns: {', '.join(map(str, samples.columns))})."
            )
        values = samples[covariate]
        missing = values.isna().to_numpy()
        if isinstance(values.dtype, pd.StringDtype) or values.dtype == object:
            missing |= values.astype(str).str.strip().isin(["", "NA", "nan", "NaN"]).to_numpy()
        if missing.any():
            bad = [names[i] for i in np.flatnonzero(missing)]
            raise InputError(
                f"Covariate {covariate!r} is missing for sample(s) {', '.join(bad)}. "
                "Fill in a value for every sample, or drop the covariate."
            )
        is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(
            values
        )
        if is_numeric:
            columns.append(values.to_numpy(dtype=float))
            labels.append(covariate)
            continue
        # Treatment contrasts: the first level is the baseline absorbed by the intercept.
        levels = _factor_levels(values)
        for level in levels[1:]:
            columns.append((values == level).to_numpy(dtype=float))
            # R prints logical levels as TRUE/FALSE in column names.
            text = str(level).upper() if isinstance(level, bool | np.bool_) else str(level)
            labels.append(f"{covariate}{text}")
    return np.column_stack(columns), labels


def design_matrix(samples: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """Build the ``mod`` design matrix as R's ``model.matrix(~cov1 + cov2 + ...)`` does.

    Parameters
    ----------
    samples
        Sample sheet, one row per sample in the column order of the data. Sample names
        (for messages) come from a ``sample`` column if present, else from the index.
    covariates
        Column names, in formula order.

    Returns
    -------
    numpy.ndarray
        samples × p: an intercept column, then per covariate either the numeric column
        itself (numeric dtypes) or treatment-contrast indicators for every level but the
        first (strings, booleans, categoricals).

    Notes
    -----
    Factor levels: a ``pandas.Categorical`` keeps its category order (R's
    ``factor(x, levels=...)``; unused categories are dropped); booleans are ordered
    ``False, True``; anything else is sorted as R's ``factor()`` sorts it under ICU
    collation (case-insensitive first, see :func:`cohortnorm.tximport.r_sort_key`) — under
    a ``C`` locale R would sort by code point instead. Strings are never parsed as numbers:
    convert numeric covariates read as text before calling. ComBat's output does not
    depend on the level order (the column space is the same), only column names do.

    Raises
    ------
    InputError
        A covariate column is absent, or a sample has no value for it (R would silently
        drop the sample).
    """
    return _design(samples, covariates)[0]


def design_column_names(samples: pd.DataFrame, covariates: Sequence[str]) -> list[str]:
    """Column names of :func:`design_matrix`, as R's ``colnames(model.matrix(...))``."""
    return _design(samples, covariates)[1]


def rank(matrix: np.ndarray) -> int:
    if matrix.shape[1] == 0:
        return 0
    norms = np.linalg.norm(matrix, axis=0)
    scaled = matrix / np.where(norms > 0, norms, 1.0)
    singular = np.linalg.svd(scaled, compute_uv=False)
    return int(np.sum(singular > _RANK_TOL * max(singular[0], 1e-300)))


def null_vectors(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=0)
    scaled = matrix / np.where(norms > 0, norms, 1.0)
    _, singular, vt = np.linalg.svd(scaled)
    rank = int(np.sum(singular > _RANK_TOL * max(singular[0], 1e-300)))
    return vt[rank:]


def check_confounding(
    design: np.ndarray,
    n_batch: int,
    levels: list[str],
    batch_idx: np.ndarray,
    cov_names: list[str],
    *,
    method: str = "ComBat",
) -> None:
    """Raise sva's rank-deficiency errors, naming the covariates and batches involved.

    ``design`` is ``[batch indicators, covariate columns]`` (sva's ``cbind(batchmod,
    mod)`` without all-ones columns). The three cases and their first sentence are
    sva's (``ComBat`` and ``ComBat_seq`` word them alike, ``method`` names which one);
    what follows names the columns and the batches, and says what to change.

    Raises
    ------
    InputError
        When ``design`` has lower rank than columns.
    """
    if rank(design) == design.shape[1]:
        return
    covs = design[:, n_batch:]
    names = ", ".join(cov_names)
    if covs.shape[1] == 1:
        raise InputError(
            f"The covariate is confounded with batch! Remove the covariate and rerun {method} "
            f"(sva's message): {_confounded_columns(covs, n_batch, levels, batch_idx, cov_names)}. "
            "Remove the covariate, merge the batches, or add samples."
        )
    if rank(covs) < covs.shape[1]:
        null = null_vectors(covs)
        involved = sorted({cov_names[k] for v in null for k in np.flatnonzero(np.abs(v) > 1e-6)})
        raise InputError(
            "The covariates are confounded! Please remove one or more of the covariates so "
            f"the design is not confounded (sva's message; covariates: {names}): the "
            f"covariates are confounded with each other: {', '.join(involved)} are linearly "
            "dependent. Remove one of them, or merge levels, so the design has full rank."
        )
    raise InputError(
        "At least one covariate is confounded with batch! Please remove confounded covariates "
        f"and rerun {method} (sva's message): batch and covariate effects cannot be separated: "
        + _confounded_columns(covs, n_batch, levels, batch_idx, cov_names, design)
        + ". Typical cause: a covariate level present in one batch only, making up that "
        "whole batch. Remove the covariate, merge the batches, or add samples."
    )


def _confounded_columns(
    covs: np.ndarray,
    n_batch: int,
    levels: list[str],
    batch_idx: np.ndarray,
    cov_names: list[str],
    design: np.ndarray | None = None,
) -> str:
    """Which covariate columns depend on the batch indicators, and how."""
    if design is None:
        involved = list(range(covs.shape[1]))
    else:
        null = null_vectors(design)
        involved = sorted({k for v in null for k in np.flatnonzero(np.abs(v[n_batch:]) > 1e-6)})
    details = []
    for k in involved:
        column = covs[:, k]
        nonzero = sorted({levels[b] for b in batch_idx[column != 0]}, key=levels.index)
        if all(np.ptp(column[batch_idx == b]) == 0 for b in range(n_batch)):
            how = "takes a single value within each batch"
        else:
            how = "is a linear combination of batch indicators and other covariates"
        where = (
            f"; it is non-zero only in batch(es) {', '.join(nonzero)}"
            if len(nonzero) < n_batch
            else ""
        )
        details.append(f"covariate column {cov_names[k]!r} {how}{where}")
    return "; ".join(details)


def check_residual_df(
    batch: Sequence[object],
    covariates: np.ndarray | None = None,
    *,
    method: str = "ComBat",
    covariate_names: Sequence[str] | None = None,
) -> int:
    """Refuse a design that leaves no residual degrees of freedom.

    ComBat's pooled variance is the mean squared residual of the fit ``~ batch + mod``
    (sva's ``var.pooled``), and ComBat-seq's dispersions and GLM need residuals too. With
    as many independent design columns as samples every residual is zero: sva divides by
    that zero and returns NaN for every gene without an error. This check needs only the
    sample sheet, so it can run before any data are read.

    Parameters
    ----------
    batch
        Batch label of each sample.
    covariates
        The covariate design, samples × p (as :func:`design_matrix` gives it, with or
        without the intercept; all-ones columns are dropped as sva drops them). For
        ComBat-seq pass the ``group`` indicators and ``covar_mod`` columns together.
    method
        Name used in the message (``"ComBat"`` or ``"ComBat-seq"``).
    covariate_names
        Names of the covariate columns, for the message.

    Returns
    -------
    int
        The residual degrees of freedom, ``n - rank([batch indicators, covariates])``.

    Raises
    ------
    InputError
        When the residual degrees of freedom are 0, with the numbers of samples, batch
        columns and covariate columns and what to change.
    """
    labels = [str(value) for value in batch]
    n_samples = len(labels)
    levels = [str(level) for level in factor_levels(labels)]
    batch_idx = np.array([levels.index(label) for label in labels], dtype=np.intp)
    batchmod = np.zeros((n_samples, len(levels)))
    batchmod[np.arange(n_samples), batch_idx] = 1.0
    mod = np.empty((n_samples, 0)) if covariates is None else np.asarray(covariates, float)
    if mod.ndim == 1:
        mod = mod[:, None]
    names = (
        list(covariate_names)
        if covariate_names is not None
        else [f"column {k + 1}" for k in range(mod.shape[1])]
    )
    not_ones = ~np.all(mod == 1.0, axis=0)
    mod = mod[:, not_ones]
    names = [name for name, kept in zip(names, not_ones, strict=True) if kept]
    design = np.column_stack([batchmod, mod])
    residual_df = n_samples - rank(design)
    if residual_df > 0:
        return residual_df
    covariate_text = (
        f"{mod.shape[1]} covariate column(s) ({', '.join(names)})" if names else "no covariates"
    )
    if method == "ComBat":
        consequence = (
            "every batch variance would be 0/0 and every corrected value NaN (sva returns "
            "NaN without an error)"
        )
        keys = "batch_correction.covariates"
    else:
        consequence = "the fit reproduces every count exactly and no dispersion can be estimated"
        keys = "batch_correction.covariates (or batch_correction.combat_seq.group/covariates)"
    raise InputError(
        f"{method} cannot estimate batch effects from this design: {n_samples} samples, "
        f"{len(levels)} batch(es) ({', '.join(levels)}) and {covariate_text} make "
        f"{design.shape[1]} design columns, which leaves 0 residual degrees of freedom: "
        f"{consequence}. Add samples, or drop covariates from {keys}."
    )


def batch_factor(batch: Sequence[object], n_samples: int) -> tuple[list[str], np.ndarray]:
    """The batch levels (R's ``factor()`` order, as text) and each sample's level index.

    A ``pandas.Categorical`` keeps its category order; numbers sort numerically; text
    sorts as R sorts it (:func:`factor_levels`). Every batch corrector orders its
    batches, and so the rows of its parameter table, this way.

    Raises
    ------
    InputError
        Not one label per sample, or a sample without a batch.
    """
    values = pd.Series(list(batch) if not isinstance(batch, pd.Series) else batch.to_numpy())
    if isinstance(batch, pd.Categorical):
        values = pd.Series(batch)
    elif isinstance(batch, pd.Series) and isinstance(batch.dtype, pd.CategoricalDtype):
        values = batch.reset_index(drop=True)
    if len(values) != n_samples:
        raise InputError(
            f"The batch vector has {len(values)} entries but the data have {n_samples} "
            "samples (columns); give one batch label per sample, in column order."
        )
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise InputError(
            f"Batch label missing for sample column(s) {', '.join(map(str, missing + 1))}; "
            "every sample needs a batch."
        )
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels_obj = _factor_levels(values)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        levels_obj = sorted(pd.unique(values))
    else:
        levels_obj = _factor_levels(values.astype(str))
        values = values.astype(str)
    lookup = {level: i for i, level in enumerate(levels_obj)}
    idx = np.array([lookup[v] for v in values], dtype=np.intp)
    return [str(level) for level in levels_obj], idx
