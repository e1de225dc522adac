"""limma's ``removeBatchEffect``, number for number.

Reproduces ``removeBatchEffect`` of limma 3.54.1 (Ritchie et al. 2015, Nucleic Acids
Research 43:e47; Smyth 2004). The corrected values are meant for looking at the data
(PCA, clustering, heatmaps) without the batch. They are **not** meant for differential
expression testing: the limma documentation says to put the batch in the linear model
instead, because the corrected matrix hides the degrees of freedom the correction used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cohortnorm.combat import factor_levels
from cohortnorm.errors import InputError

__all__ = ["remove_batch_effect", "sum_contrasts"]

# lm.fit's default tolerance in R's pivoting QR (LINPACK dqrdc2)
_QR_TOL = 1e-7


def _levels(values: pd.Series) -> list[object]:
    # R's factor() sorts numbers numerically; character labels with the locale collation,
    # which cohortnorm.combat.factor_levels reproduces.
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return sorted(pd.unique(values))
    return factor_levels(values)


def sum_contrasts(values: Sequence[object] | pd.Series, name: str = "batch") -> np.ndarray:
    """Sum-to-zero coding of a factor, as ``model.matrix(~f)[, -1]`` with ``contr.sum``.

    Parameters
    ----------
    values
        One label per sample.
    name
        What the labels are, for error messages.

    Returns
    -------
    numpy.ndarray
        Samples × (levels − 1). Column ``i`` is +1 for the ``i``-th level (in R's
        ``factor()`` order), −1 for the last level and 0 otherwise.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    if series.isna().any():
        bad = [str(i + 1) for i in np.flatnonzero(series.isna().to_numpy())]
        raise InputError(
            f"The {name} label is missing for sample position(s) {', '.join(bad)}. "
            f"Give every sample a {name} label."
        )
    levels = _levels(series)
    if len(levels) < 2:
        raise InputError(
            f"The {name} has a single level ({levels[0]!r}), so there is no batch effect to "
            f"remove. Give at least two different {name} labels, or leave {name} out."
        )
    index = {level: i for i, level in enumerate(levels)}
    codes = np.array([index[v] for v in series], dtype=np.intp)
    out = np.zeros((len(series), len(levels) - 1))
    for i in range(len(levels) - 1):
        out[codes == i, i] = 1.0
    out[codes == len(levels) - 1, :] = -1.0
    return out


def _estimable_columns(z: np.ndarray) -> np.ndarray:
    """Columns of ``z`` that R's ``lm.fit`` estimates (the others come back NA).

    LINPACK ``dqrdc2`` with limited pivoting moves a column to the end when the part of
    it not explained by the columns kept before it has a norm below ``1e-7`` times its
    original norm; it works left to right, so this greedy selection is the same rule.
    """
    kept: list[int] = []
    basis = np.empty((z.shape[0], 0))
    for j in range(z.shape[1]):
        col = z[:, j]
        norm = np.linalg.norm(col)
        resid = col - basis @ (basis.T @ col) if basis.shape[1] else col
        # a second pass keeps the Gram–Schmidt residual accurate
        resid = resid - basis @ (basis.T @ resid) if basis.shape[1] else resid
        rnorm = np.linalg.norm(resid)
        if norm == 0.0 or rnorm < _QR_TOL * norm:
            continue
        kept.append(j)
        basis = np.column_stack([basis, resid / rnorm])
    return np.asarray(kept, dtype=np.intp)


def remove_batch_effect(
    x: np.ndarray | pd.DataFrame,
    batch: Sequence[object] | pd.Series | None = None,
    batch2: Sequence[object] | pd.Series | None = None,
    covariates: np.ndarray | pd.DataFrame | Sequence[float] | None = None,
    design: np.ndarray | pd.DataFrame | None = None,
) -> np.ndarray | pd.DataFrame:
    """Remove batch effects from log-expression values, as limma's ``removeBatchEffect``.

    Reproduces ``limma::removeBatchEffect`` (limma 3.54.1): fit, for every gene,
    ``x ~ design + batch + batch2 + covariates`` by least squares (``lmFit``) and subtract
    the fitted batch and covariate part. The ``design`` part (the biology to keep) stays
    in the data.

    This is for looking at the data only (PCA, clustering, heatmaps). Do not use the
    result for differential expression: put the batch in the DE model instead.

    Parameters
    ----------
    x
        Log-expression values (e.g. TMM logCPM), genes × samples. Must be finite:
        limma would fit each gene on its observed values only, which this port refuses
        rather than guessing.
    batch, batch2
        One label per sample, or None. Coded as R's ``factor()`` with sum-to-zero
        contrasts (``contr.sum``, levels in R's sort order), so the effect removed is each
        batch's deviation from the unweighted mean of the batch effects.
    covariates
        Numeric covariates, samples × k (or one value per sample), or None. Used as given:
        limma 3.54.1 does not centre them, so the removed effect is ``coef × covariate``
        (centre them first to keep the data's overall level).
    design
        The design to keep, samples × p; default intercept only (``matrix(1, n, 1)``).

    Returns
    -------
    numpy.ndarray or pandas.DataFrame
        The corrected values, same shape (and labels, for a DataFrame) as ``x``. With no
        batch, batch2 or covariates, ``x`` is returned unchanged (as a copy).

    Notes
    -----
    As in ``lm.fit``, columns that are linear combinations of columns before them
    (pivoting QR, tolerance 1e-7) get no coefficient; a batch column aliased with the
    design therefore removes nothing, as in R.

    References
    ----------
    Ritchie ME et al. (2015) limma powers differential expression analyses for RNA-sequencing
    and microarray studies. Nucleic Acids Research 43(7):e47.
    """
    # One function, over 120 lines with its docstring: it follows limma's
    # removeBatchEffect() argument by argument (batch, batch2, covariates, design), so that
    # it reads side by side with the R source.
    frame = x if isinstance(x, pd.DataFrame) else None
    values = np.array(x, dtype=float, copy=True)
    if values.ndim != 2:
        raise InputError(
            f"removeBatchEffect needs a genes × samples table; got {values.ndim} dimension(s)."
        )
    n_genes, n_samples = values.shape
    if batch is None and batch2 is None and covariates is None:
        return frame.copy() if frame is not None else values
    bad = ~np.isfinite(values)
    if bad.any():
        gene_idx, sample_idx = np.nonzero(bad)
        gene = frame.index[gene_idx[0]] if frame is not None else f"row {gene_idx[0] + 1}"
        sample = (
            frame.columns[sample_idx[0]] if frame is not None else f"column {sample_idx[0] + 1}"
        )
        raise InputError(
            f"removeBatchEffect got {int(bad.sum())} missing or infinite value(s) "
            f"(first: gene {gene}, sample {sample}). It needs a complete table; "
            "remove those genes or fill in the values first."
        )

    parts: list[np.ndarray] = []
    for name, labels in (("batch", batch), ("batch2", batch2)):
        if labels is None:
            continue
        if len(labels) != n_samples:
            raise InputError(
                f"{name} has {len(labels)} labels but the table has {n_samples} samples. "
                "Give one label per sample, in the table's column order."
            )
        parts.append(sum_contrasts(labels, name))
    if covariates is not None:
        cov = np.asarray(covariates, dtype=float)
        if cov.ndim == 1:
            cov = cov[:, None]
        if cov.ndim != 2 or cov.shape[0] != n_samples:
            raise InputError(
                f"covariates have {cov.shape[0]} rows but the table has {n_samples} samples. "
                "Give one row per sample, in the table's column order."
            )
        if not np.isfinite(cov).all():
            raise InputError(
                "covariates contain missing or infinite values. "
                "Give a finite value for every sample."
            )
        parts.append(cov)
    x_batch = np.column_stack(parts)

    if design is None:
        keep = np.ones((n_samples, 1))
    else:
        keep = np.asarray(design, dtype=float)
        if keep.ndim == 1:
            keep = keep[:, None]
        if keep.shape[0] != n_samples:
            raise InputError(
                f"The design has {keep.shape[0]} rows but the table has {n_samples} samples. "
                "Give one design row per sample, in the table's column order."
            )
        if not np.isfinite(keep).all():
            raise InputError("The design contains missing or infinite values.")

    z = np.column_stack([keep, x_batch])
    est = _estimable_columns(z)
    # least squares on the estimable columns; the others have coefficient NA in R, set to 0
    q, r = np.linalg.qr(z[:, est])
    coef_est = np.linalg.solve(r, q.T @ values.T)  # len(est) × genes
    coef = np.zeros((z.shape[1], n_genes))
    coef[est] = coef_est
    beta = coef[keep.shape[1] :]  # batch and covariate coefficients
    corrected = values - beta.T @ x_batch.T
    if frame is not None:
        return pd.DataFrame(corrected, index=frame.index, columns=frame.columns)
    return corrected
