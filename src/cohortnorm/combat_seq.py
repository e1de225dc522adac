"""ComBat-seq batch correction for RNA-seq counts, ported from sva 3.46.0 ``ComBat_seq``.

The negative-binomial GLM fits and Cox-Reid dispersions come from
:mod:`cohortnorm.edger_glm`, a port of the edgeR 3.40 routines ``ComBat_seq`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc
from scipy.stats import nbinom

from cohortnorm.edger_glm import (
    estimate_glm_common_disp,
    estimate_glm_tagwise_disp,
    glm_fit,
)
from cohortnorm.errors import InputError

FloatArray = NDArray[np.float64]

__all__ = ["CombatSeqResult", "combat_seq", "pnbinom", "qnbinom"]

_DBL_EPSILON = float(np.finfo(np.float64).eps)


@dataclass
class CombatSeqResult:
    """Output of :func:`combat_seq`.

    Attributes
    ----------
    adjusted : ndarray of int64, genes × samples
        Batch-adjusted counts; genes outside ``kept_genes`` are returned unchanged.
    gamma_hat : ndarray, kept genes × batches
        GLM batch coefficients (natural log, ``predFC``-shrunk with prior count 1e-4).
    gamma_star : ndarray, kept genes × batches
        Batch effects removed: ``gamma_hat``, or the Monte-Carlo posterior with ``shrink``.
    phi_hat : ndarray, kept genes × batches
        Per-batch gene-wise dispersions.
    kept_genes : ndarray of bool, genes
        Genes adjusted (not all-zero within any batch).
    batches : list of str
        Batch levels, in the column order of ``gamma_hat`` and ``phi_hat``.
    messages : list of str
        The progress lines sva prints with ``cat``.
    """

    adjusted: NDArray[np.int64]
    gamma_hat: FloatArray
    gamma_star: FloatArray
    phi_hat: FloatArray
    kept_genes: NDArray[np.bool_]
    batches: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


# ----------------------------------------------------------- NB distribution (R nmath)


def pnbinom(q: ArrayLike, size: ArrayLike, mu: ArrayLike) -> FloatArray:
    """R ``pnbinom(q, size=size, mu=mu)``: regularised incomplete beta ``I_p(size, q+1)``.

    R evaluates ``bratio(size, q+1, size/(size+mu), mu/(size+mu))``; scipy's ``betainc``
    (Boost) agrees to a few ulps.
    """
    q = np.floor(np.asarray(q, dtype=np.float64) + 1e-7)
    size = np.asarray(size, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    prob = size / (size + mu)
    out = betainc(size, q + 1, prob)
    return np.where(q < 0, 0.0, out)


def _pnbinom_prob(y: FloatArray, size: FloatArray, prob: FloatArray) -> FloatArray:
    return np.where(y < 0, 0.0, betainc(size, y + 1, prob))


def qnbinom(p: ArrayLike, size: ArrayLike, mu: ArrayLike) -> FloatArray:
    """R 4.2 ``qnbinom(p, size=size, mu=mu)`` (lower tail, not log).

    R multiplies ``p`` by ``1 - 8·DBL_EPSILON`` (the left-continuity fuzz of
    ``qDiscrete_search.h``) and returns the smallest ``y`` with ``pnbinom(y) >= p``. Scipy's
    ``ppf`` gives the start; a vectorised search then enforces R's criterion exactly on
    our ``pnbinom``. ``p`` must lie in (0, 1).
    """
    p = np.asarray(p, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    p, size, mu = np.broadcast_arrays(p, size, mu)
    prob = size / (size + mu)
    target = p * (1 - 8 * _DBL_EPSILON)
    y = np.asarray(nbinom.ppf(target, size, prob), dtype=np.float64)
    y = np.where(np.isfinite(y), y, 0.0)
    for _ in range(200):
        down = (y > 0) & (_pnbinom_prob(y - 1, size, prob) >= target)
        up = _pnbinom_prob(y, size, prob) < target
        if not down.any() and not up.any():
            break
        y = y - down + up
    return y


# ----------------------------------------------------------------------- helpers


def _factor(values: Sequence[object], what: str) -> tuple[NDArray[np.intp], list[str]]:
    """Codes and levels like R's ``as.factor``.

    A pandas ``Categorical`` (or categorical Series) keeps its category order, as an R
    factor keeps its levels; anything else gets sorted levels. Unused levels are dropped
    for batch-like use only by the caller.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values)
    elif isinstance(values, pd.Categorical):
        cat = values
    else:
        cat = pd.Categorical(pd.Series(list(values)))
    if (cat.codes < 0).any():
        raise InputError(f"{what} has missing values; give every sample a {what} label")
    return np.asarray(cat.codes, dtype=np.intp), [str(level) for level in cat.categories]


def _rank(x: FloatArray) -> int:
    if x.size == 0:
        return 0
    return int(np.linalg.matrix_rank(x))


def _match_quantiles(
    counts: FloatArray,
    old_mu: FloatArray,
    old_phi: FloatArray,
    new_mu: FloatArray,
    new_phi: FloatArray,
) -> FloatArray:
    """sva ``match_quantiles`` for one batch, vectorised over genes and samples."""
    out = counts.copy()
    cells = counts > 1
    if not cells.any():
        return out
    rows = np.nonzero(cells)[0]
    c = counts[cells]
    tmp_p = pnbinom(c - 1, 1 / old_phi[rows], old_mu[cells])
    move = ~(np.abs(tmp_p - 1) < 1e-4)
    new_vals = c.copy()
    if move.any():
        r = rows[move]
        new_vals[move] = 1 + qnbinom(tmp_p[move], 1 / new_phi[r], new_mu[cells][move])
    out[cells] = new_vals
    return out


def _monte_carlo_int_nb(
    dat: FloatArray,
    mu: FloatArray,
    gamma: FloatArray,
    phi: FloatArray,
    gene_subset_n: int | None,
    rng: np.random.Generator,
    block: int = 64,
) -> tuple[FloatArray, FloatArray]:
    """sva ``monte_carlo_int_NB``: leave-one-gene-out posterior means of gamma and phi.

    For gene i, every other gene j supplies a prior draw with likelihood
    ``prod_k dnbinom(x_ik, mu=mu_jk, size=1/phi_j)``.
    """
    ngenes = dat.shape[0]
    gamma_star = gamma.copy()
    phi_star = phi.copy()
    size = 1 / phi
    for start in range(0, ngenes, block):
        idx = np.arange(start, min(start + block, ngenes))
        if gene_subset_n is None:
            # logpmf over (i in block) × (all j) × samples; exp of the row sum = product.
            logl = nbinom.logpmf(
                dat[idx][:, None, :],
                size[None, :, None],
                (size[:, None] / (size[:, None] + mu))[None, :, :],
            ).sum(axis=2)
            lh = np.exp(logl)
            lh[np.arange(idx.size), idx] = 0.0
            lh[np.isnan(lh)] = 0.0
            total = lh.sum(axis=1)
            ok = (total != 0) & np.isfinite(total)
            gamma_star[idx[ok]] = (lh[ok] @ gamma) / total[ok]
            phi_star[idx[ok]] = (lh[ok] @ phi) / total[ok]
        else:
            for i in idx:
                others = np.delete(np.arange(ngenes), i)
                sub = rng.choice(others, size=gene_subset_n, replace=False)
                logl = nbinom.logpmf(
                    dat[i][None, :], size[sub, None], size[sub, None] / (size[sub, None] + mu[sub])
                ).sum(axis=1)
                lh = np.exp(logl)
                lh[np.isnan(lh)] = 0.0
                total = lh.sum()
                if total != 0 and np.isfinite(total):
                    gamma_star[i] = lh @ gamma[sub] / total
                    phi_star[i] = lh @ phi[sub] / total
    return gamma_star, phi_star


# -------------------------------------------------------------------------- main


def combat_seq(
    counts: ArrayLike,
    batch: Sequence[object],
    group: Sequence[object] | None = None,
    covariates: ArrayLike | None = None,
    full_mod: bool = True,
    shrink: bool = False,
    shrink_disp: bool = False,
    gene_subset_n: int | None = None,
) -> CombatSeqResult:
    """Adjust counts for batch effects, reproducing sva 3.46.0 ``ComBat_seq``.

    Parameters
    ----------
    counts : array_like, genes × samples
        Non-negative integer counts.
    batch : sequence
        Batch label per sample. Levels are sorted, as R's ``as.factor``, unless a pandas
        ``Categorical`` is given, whose category order is kept (an R factor's levels).
    group : sequence, optional
        Biological condition per sample; modelled (``model.matrix(~group)``) when
        ``full_mod`` and it has more than one level. The first level is the reference
        (category order for a ``Categorical``, else sorted); the level order changes the
        fit for genes whose likelihood is flat, such as genes absent from a whole group.
    covariates : array_like, samples × k, optional
        Numeric covariate design columns without intercept (sva ``covar_mod``);
        all-ones columns are dropped as in sva.
    full_mod : bool
        Include ``group`` in the model.
    shrink, shrink_disp : bool
        Empirical-Bayes shrinkage of gamma (and the dispersions) by sva's
        ``monte_carlo_int_NB`` over all other genes (deterministic).
    gene_subset_n : int, optional
        With ``shrink``, integrate over this many random genes. sva draws them with R's
        ``sample``; here numpy's generator (seed 0) draws them, so results differ from R.

    Returns
    -------
    CombatSeqResult

    Raises
    ------
    InputError
        Malformed counts, a batch with fewer than 2 samples, or a design confounded with
        batch (sva's messages).

    Notes
    -----
    Steps follow sva: genes all-zero within any batch are left as they are; per-batch
    dispersions are edgeR ``estimateGLMCommonDisp`` then ``estimateGLMTagwiseDisp``
    (``prior.df=0``) with the batch's model (a single common dispersion when the batch has
    too few samples or the model is rank deficient within it); the NB GLM
    ``~ batch + model`` is fitted twice (``glmFit``, ``prior.count=1e-4``), the second time
    with the size-weighted batch effect in the offset; each count is mapped by
    ``1 + qnbinom(pnbinom(count - 1, mu_hat, phi_b), mu_hat·exp(-gamma_b), mean phi)``.
    """
    y = np.asarray(counts, dtype=np.float64)
    if y.ndim != 2:
        raise InputError("counts must be a genes × samples matrix")
    ngenes, nsamples = y.shape
    if not np.all(np.isfinite(y)):
        bad = np.argwhere(~np.isfinite(y))[0]
        raise InputError(
            f"counts has a missing or infinite value (gene row {bad[0]}, sample column "
            f"{bad[1]}); ComBat-seq needs complete integer counts"
        )
    if np.any(y < 0) or np.any(y != np.round(y)):
        bad = np.argwhere((y < 0) | (y != np.round(y)))[0]
        raise InputError(
            f"counts must be non-negative integers; gene row {bad[0]}, sample column "
            f"{bad[1]} is {y[bad[0], bad[1]]}. Round estimated counts before ComBat-seq."
        )
    if len(batch) != nsamples:
        raise InputError(f"batch has {len(batch)} labels for {nsamples} samples")
    bcode, blevels = _factor(batch, "batch")
    n_batch = len(blevels)
    n_batches = np.bincount(bcode, minlength=n_batch)
    for level, size in zip(blevels, n_batches, strict=True):
        if size <= 1:
            raise InputError(
                f"ComBat-seq needs at least 2 samples per batch; batch {level} has {size}"
            )
    if n_batch < 2:
        raise InputError(f"ComBat-seq needs at least 2 batches; all samples are in {blevels[0]}")
    batches_ind = [np.flatnonzero(bcode == k) for k in range(n_batch)]

    keep = np.ones(ngenes, dtype=bool)
    for ind in batches_ind:
        keep &= np.any(y[:, ind] != 0, axis=1)
    yk = y[keep]
    messages = [f"Found {n_batch} batches"]

    batchmod = np.zeros((nsamples, n_batch))
    batchmod[np.arange(nsamples), bcode] = 1.0
    glevels: list[str] = []
    if group is not None:
        if len(group) != nsamples:
            raise InputError(f"group has {len(group)} labels for {nsamples} samples")
        gcode, glevels = _factor(group, "group")
    if full_mod and len(glevels) > 1:
        messages.append("Using full model in ComBat-seq.")
        mod = np.column_stack(
            [np.ones(nsamples)] + [(gcode == k).astype(float) for k in range(1, len(glevels))]
        )
        mod_names = ["(Intercept)"] + [f"group{lv}" for lv in glevels[1:]]
    else:
        messages.append("Using null model in ComBat-seq.")
        mod = np.ones((nsamples, 1))
        mod_names = ["(Intercept)"]
    if covariates is not None:
        cov = np.asarray(covariates, dtype=np.float64)
        if cov.ndim == 1:
            cov = cov[:, None]
        if cov.shape[0] != nsamples:
            raise InputError(f"covariates has {cov.shape[0]} rows for {nsamples} samples")
        if not np.all(np.isfinite(cov)):
            raise InputError("covariates must be finite numbers for every sample")
        cov_keep = ~np.all(cov == 1, axis=0)
        mod = np.column_stack([mod, cov[:, cov_keep]])
        mod_names += [f"covariate{j + 1}" for j in np.flatnonzero(cov_keep)]
    design = np.column_stack([batchmod, mod])
    names = [f"batch{lv}" for lv in blevels] + mod_names
    not_ones = ~np.all(design == 1, axis=0)
    design = design[:, not_ones]
    names = [n for n, k in zip(names, not_ones, strict=True) if k]
    messages.append(f"Adjusting for {design.shape[1] - n_batch} covariate(s) or covariate level(s)")
    if _rank(design) < design.shape[1]:
        extra = ", ".join(names[n_batch:])
        if design.shape[1] == n_batch + 1:
            raise InputError(
                f"The covariate is confounded with batch! Remove the covariate and rerun "
                f"ComBat-Seq (covariate: {extra})"
            )
        if _rank(design[:, n_batch:]) < design.shape[1] - n_batch:
            raise InputError(
                "The covariates are confounded! Please remove one or more of the covariates "
                f"so the design is not confounded (covariates: {extra})"
            )
        raise InputError(
            "At least one covariate is confounded with batch! Please remove confounded "
            f"covariates and rerun ComBat-Seq (a level of {extra} occurs in one batch only "
            "and coincides with it)"
        )

    messages.append("Estimating dispersions")
    n_cov = design.shape[1] - n_batch
    phi_hat = np.empty((yk.shape[0], n_batch))
    for k, ind in enumerate(batches_ind):
        mod_b = mod[ind]
        y_b = yk[:, ind]
        if n_batches[k] <= n_cov + 1 or _rank(mod_b) < mod.shape[1]:
            common = estimate_glm_common_disp(y_b, None)
            phi_hat[:, k] = common
        else:
            common = estimate_glm_common_disp(y_b, mod_b)
            phi_hat[:, k] = estimate_glm_tagwise_disp(y_b, mod_b, common, prior_df=0)
    phi_matrix = phi_hat[:, bcode]

    messages.append("Fitting the GLM model")
    lib_offset = np.log(yk.sum(axis=0))
    fit1 = glm_fit(yk, design, phi_matrix, lib_offset, prior_count=1e-4)
    alpha_g = fit1.coefficients[:, :n_batch] @ (n_batches / nsamples)
    new_offset = lib_offset[None, :] + alpha_g[:, None]
    fit2 = glm_fit(yk, design, phi_matrix, new_offset, prior_count=1e-4)
    gamma_hat = fit2.coefficients[:, :n_batch]
    mu_hat = fit2.fitted_values

    if shrink:
        messages.append("Apply shrinkage - computing posterior estimates for parameters")
        if gene_subset_n is not None:
            messages.append(f"Using {gene_subset_n} random genes for Monte Carlo integration")
        else:
            messages.append(
                "Using all genes for Monte Carlo integration; the function runs very slow "
                "for large number of genes"
            )
        rng = np.random.default_rng(0)
        gamma_star = np.empty_like(gamma_hat)
        phi_star_mat = np.empty_like(phi_hat)
        for k, ind in enumerate(batches_ind):
            gamma_star[:, k], phi_star_mat[:, k] = _monte_carlo_int_nb(
                yk[:, ind], mu_hat[:, ind], gamma_hat[:, k], phi_hat[:, k], gene_subset_n, rng
            )
        if not shrink_disp:
            messages.append("Apply shrinkage to mean only")
            phi_star_mat = phi_hat
    else:
        messages.append("Shrinkage off - using GLM estimates for parameters")
        gamma_star = gamma_hat
        phi_star_mat = phi_hat

    with np.errstate(divide="ignore"):
        mu_star = np.exp(np.log(mu_hat) - gamma_star[:, bcode])
    phi_star = phi_star_mat.mean(axis=1)

    messages.append("Adjusting the data")
    adjusted_kept = np.empty_like(yk)
    for k, ind in enumerate(batches_ind):
        adjusted_kept[:, ind] = _match_quantiles(
            yk[:, ind], mu_hat[:, ind], phi_hat[:, k], mu_star[:, ind], phi_star
        )
    adjusted = y.copy()
    adjusted[keep] = adjusted_kept
    return CombatSeqResult(
        adjusted=adjusted.astype(np.int64),
        gamma_hat=gamma_hat,
        gamma_star=gamma_star,
        phi_hat=phi_hat,
        kept_genes=keep,
        batches=blevels,
        messages=messages,
    )
