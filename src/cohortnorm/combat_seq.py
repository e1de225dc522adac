"""ComBat-seq batch correction for RNA-seq counts, ported from sva 3.46.0 ``ComBat_seq``.

The negative-binomial GLM fits and Cox-Reid dispersions come from
:mod:`cohortnorm.edger_glm`, a port of the edgeR 3.40 routines ``ComBat_seq`` calls.

Steps follow sva: genes all-zero within any batch are left as they are; per-batch
dispersions are edgeR ``estimateGLMCommonDisp`` then ``estimateGLMTagwiseDisp``
(``prior.df=0``) with the batch's model (a single common dispersion when the batch has
too few samples or the model is rank deficient within it); the NB GLM
``~ batch + model`` is fitted twice (``glmFit``, ``prior.count=1e-4``), the second time
with the size-weighted batch effect in the offset; each count is mapped by
``1 + qnbinom(pnbinom(count - 1, mu_hat, phi_b), mu_hat·exp(-gamma_b), mean phi)``.

Genes that are zero in every sample of a ``group`` level (or of a 0/1 covariate)
have an infinite maximum-likelihood coefficient, so sva's ``glmFit`` diverges and
stops at edgeR's limits (``mglmLevenberg``: ``maxit=200``, ``tol=1e-6``;
``mglmOneGroup``: ``maxit=50``, ``tol=1e-10``). This port follows the same
iterations and so returns sva's counts for them too; they are listed in
:attr:`CombatSeqResult.divergent` and summarized in its ``warnings``. Their
corrected counts depend on the reference level of ``group``: with the all-zero
level as reference sva's result for the other samples differs (about 3× on
pasilla) from the result with another reference, because the fit stops elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, gammaln, ndtri

from cohortnorm.blocks import available_cpus
from cohortnorm.edger_glm import (
    estimate_glm_common_disp,
    estimate_glm_tagwise_disp,
    gene_blocks,
    glm_coefficients,
    glm_fit,
    lgamma_counts,
    map_blocks,
)
from cohortnorm.errors import InputError
from cohortnorm.model_matrix import (
    batch_factor,
    check_confounding,
    check_residual_df,
    factor_levels,
    rank,
)

FloatArray = NDArray[np.float64]

__all__ = [
    "CombatSeqResult",
    "combat_seq",
    "divergent_levels",
    "model_columns",
    "pnbinom",
    "qnbinom",
]

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
        The progress lines sva prints with ``cat`` (information, not warnings).
    divergent : list of str, kept genes
        For each kept gene, the model levels in whose samples it is zero throughout
        (``"group=treated"``, ``"covariate sexM"``; ``;``-separated), or ``""``. For such a
        gene the maximum-likelihood coefficient is infinite: sva's ``glmFit`` stops where
        edgeR's iteration limits stop it, and this port reproduces that stop, so the
        corrected counts equal sva's but depend on which ``group`` level is the
        reference (see :func:`combat_seq`).
    warnings : list of str
        What the caller should show as warnings (the divergent genes, summarized).
    """

    adjusted: NDArray[np.int64]
    gamma_hat: FloatArray
    gamma_star: FloatArray
    phi_hat: FloatArray
    kept_genes: NDArray[np.bool_]
    batches: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    divergent: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def model_columns(
    covariates: Sequence[str] | None,
    group: str | None = None,
    covar_mod: Sequence[str] | None = None,
) -> tuple[str | None, list[str]]:
    """Which sample-sheet columns become sva's ``group`` and ``covar_mod``.

    The workflow's rule (config keys ``batch_correction.covariates``,
    ``batch_correction.combat_seq.group`` and ``.covariates``): ``group`` when given, else
    the first of ``covariates``; ``covar_mod`` when not empty, else the other
    ``covariates``. So the covariates every method keeps reach ComBat-seq too.

    Parameters
    ----------
    covariates
        ``batch_correction.covariates``.
    group
        ``batch_correction.combat_seq.group`` (``None``: not set).
    covar_mod
        ``batch_correction.combat_seq.covariates`` (empty: not set).

    Returns
    -------
    tuple
        The group column (``None`` for sva's null model) and the covariate columns.
    """
    kept = list(covariates or [])
    chosen_group = group or (kept[0] if kept else None)
    chosen = list(covar_mod or [])
    if not chosen:
        chosen = [name for name in kept if name != chosen_group]
    return chosen_group, chosen


def divergent_levels(
    counts: ArrayLike,
    group: Sequence[object] | None = None,
    covariates: ArrayLike | None = None,
    covariate_names: Sequence[str] | None = None,
) -> list[str]:
    """Per gene, the model levels in whose samples the gene is zero in every sample.

    A gene with no reads in all samples of a ``group`` level (or of a 0/1 covariate
    column's samples with value 1) has an infinite maximum-likelihood coefficient:
    the NB GLM (edgeR ``glmFit``, as sva's ``ComBat_seq`` calls it) never converges and
    stops at its iteration limits, so the batch estimate of such a gene is not an
    estimate of anything. The caller lists these genes for the user.

    Parameters
    ----------
    counts : array_like, genes × samples
    group : sequence, optional
        Group label of each sample.
    covariates : array_like, samples × k, optional
        Covariate columns (``covar_mod``); only 0/1 indicator columns are checked.
    covariate_names : sequence of str, optional
        Names of the covariate columns for the labels.

    Returns
    -------
    list of str
        One entry per gene: ``""`` or the ``;``-separated levels (``"group=B"``,
        ``"covariate sexM"``).
    """
    y = np.asarray(counts, dtype=np.float64)
    found: list[list[str]] = [[] for _ in range(y.shape[0])]
    masks: list[tuple[str, NDArray[np.bool_]]] = []
    if group is not None:
        labels = np.asarray([str(v) for v in group], dtype=object)
        for level in pd.unique(labels):
            masks.append((f"group={level}", labels == level))
    if covariates is not None:
        cov = np.asarray(covariates, dtype=np.float64)
        cov = cov[:, None] if cov.ndim == 1 else cov
        for j in range(cov.shape[1]):
            column = cov[:, j]
            if np.isin(column, (0.0, 1.0)).all() and 0 < column.sum() < column.size:
                name = covariate_names[j] if covariate_names is not None else f"column {j + 1}"
                masks.append((f"covariate {name}", column == 1))
    for label, mask in masks:
        for gene in np.flatnonzero(~(y[:, mask] != 0).any(axis=1)):
            found[gene].append(label)
    return [";".join(levels) for levels in found]


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


def _nb_cdf(y: FloatArray, size: FloatArray, prob: FloatArray) -> FloatArray:
    """R ``pnbinom(y, size, prob)`` for integer-valued ``y``: ``pbeta(prob, size, y + 1)``."""
    return np.where(y < 0, 0.0, betainc(size, np.maximum(y, 0.0) + 1, prob))


def _qnbinom_search(
    target: FloatArray, size: FloatArray, prob: FloatArray, y: FloatArray
) -> FloatArray:
    """Smallest ``y >= 0`` with ``pnbinom(y) >= target``, by CDF evaluations only.

    This is what R's ``do_search`` returns whenever the CDF is monotone. A doubling search
    from the start ``y`` brackets the answer and bisection narrows it, so a poor start
    costs a few dozen ``betainc`` calls per cell rather than one per unit step.
    ``target`` must lie in (0, 1].
    """
    y = np.maximum(np.where(np.isfinite(y), y, 0.0), 0.0)
    at_y = _nb_cdf(y, size, prob) >= target
    # Invariant: cdf(lo) < target <= cdf(hi); cdf(-1) = 0 < target.
    hi = np.where(at_y, y, np.inf)
    lo = np.where(at_y, -np.inf, y)
    step = np.ones_like(y)
    open_ = np.flatnonzero(~np.isfinite(hi) | ~np.isfinite(lo))
    while open_.size:
        left = np.isfinite(hi[open_])
        probe = np.where(left, np.maximum(hi[open_] - step[open_], -1.0), lo[open_] + step[open_])
        ok = _nb_cdf(probe, size[open_], prob[open_]) >= target[open_]
        hi[open_] = np.where(ok, probe, hi[open_])
        lo[open_] = np.where(ok, lo[open_], probe)
        step[open_] *= 2
        open_ = open_[~np.isfinite(hi[open_]) | ~np.isfinite(lo[open_])]
    open_ = np.flatnonzero(hi - lo > 1)
    while open_.size:
        mid = np.floor((lo[open_] + hi[open_]) / 2)
        ok = _nb_cdf(mid, size[open_], prob[open_]) >= target[open_]
        hi[open_] = np.where(ok, mid, hi[open_])
        lo[open_] = np.where(ok, lo[open_], mid)
        open_ = open_[hi[open_] - lo[open_] > 1]
    return hi


#: Unit steps of the pmf-recurrence walk in :func:`qnbinom` before bracketing takes over.
_WALK_STEPS = 64
#: Newton jumps on the CDF before the walk, for cells that start far from the answer.
_NEWTON_JUMPS = 4


def qnbinom(
    p: ArrayLike,
    size: ArrayLike,
    mu: ArrayLike,
    start: ArrayLike | None = None,
    lgamma_size: ArrayLike | None = None,
) -> FloatArray:
    """R 4.2 ``qnbinom(p, size=size, mu=mu)`` (lower tail, not log).

    R (``qDiscrete_search.h``) multiplies ``p`` by ``1 - 8·DBL_EPSILON`` (left-continuity
    fuzz) and returns the smallest ``y`` with ``pnbinom(y) >= p``, searching from the
    Cornish-Fisher guess. Here, too, ``pnbinom`` (``betainc``) is evaluated once at a
    start; neighbouring CDF values come from the pmf recurrence
    ``f(y+1) = f(y)·(y+size)/(y+1)·(1-prob)``, which costs a few flops instead of an
    incomplete beta per step. A decision made on such a derived value is kept only when
    its margin exceeds a bound on the accumulated rounding error; the few cells that fail
    (near-ties, far tails, long walks) are redone with ``betainc`` at every probe, so the
    answer is the one R's criterion gives on ``betainc``. ``p == 0`` gives 0 and
    ``p == 1`` gives ``inf`` (R's boundaries). ``start`` (a guess of the answer) and
    ``lgamma_size`` (``gammaln(size)``) only save time; the answer is the same.
    """
    p, size, mu = np.broadcast_arrays(
        np.asarray(p, dtype=np.float64),
        np.asarray(size, dtype=np.float64),
        np.asarray(mu, dtype=np.float64),
    )
    shape = p.shape
    p, size, mu = p.ravel(), size.ravel(), mu.ravel()
    out = np.full(p.shape, np.nan)
    out[p == 0] = 0.0
    out[p == 1] = np.inf
    todo = np.flatnonzero((p > 0) & (p < 1) & (size > 0) & (mu >= 0))
    guess = None if start is None else np.broadcast_to(start, shape).ravel()[todo]
    lg_size = None if lgamma_size is None else np.broadcast_to(lgamma_size, shape).ravel()[todo]
    out[todo] = _qnbinom_interior(p[todo], size[todo], mu[todo], guess, lg_size)
    return out.reshape(shape)


def _qnbinom_interior(
    p: FloatArray,
    size: FloatArray,
    mu: FloatArray,
    start: FloatArray | None = None,
    lgamma_size: FloatArray | None = None,
) -> FloatArray:
    """:func:`qnbinom` for ``0 < p < 1``, ``size > 0``, ``mu >= 0`` (flat arrays).

    ``start`` replaces the Cornish-Fisher guess and ``lgamma_size`` may pass
    ``gammaln(size)``; only the speed depends on them. Cells whose
    CDF at the start is more than a few pmf values from the target first take up to
    :data:`_NEWTON_JUMPS` Newton steps ``(target - cdf)/pmf`` (at most one SD), each
    re-evaluating ``betainc`` there, so that the unit-step walk stays short.
    """
    total = size + mu
    prob = size / total
    q = mu / total
    target = p * (1 - 8 * _DBL_EPSILON)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sd = np.sqrt(mu + mu * mu / size)
        if start is None:
            # Cornish-Fisher start, as R's q_DISCRETE_BODY (qnorm of the unfuzzed p).
            big_q = 1 / prob
            big_p = q * big_q
            skew = (big_q + big_p) / (sd * big_q)
            z = ndtri(p)
            start = np.rint(mu + sd * big_q * (z + skew * (z * z - 1) / 6))
    y = np.where(np.isfinite(start), np.maximum(start, 0.0), 0.0)
    lg_size = gammaln(size) if lgamma_size is None else lgamma_size
    cdf, pmf, relerr = _nb_cdf_pmf(y, size, prob, q, mu, lg_size)
    far = np.flatnonzero(np.abs(target - cdf) > _WALK_STEPS / 8 * pmf)
    for _ in range(_NEWTON_JUMPS):
        if far.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            jump = (target[far] - cdf[far]) / pmf[far]
            limit = sd[far] + _WALK_STEPS
            jump = np.rint(np.clip(np.where(np.isfinite(jump), jump, 0.0), -limit, limit))
        y[far] = np.maximum(y[far] + jump, 0.0)
        cdf[far], pmf[far], relerr[far] = _nb_cdf_pmf(
            y[far], size[far], prob[far], q[far], mu[far], lg_size[far]
        )
        far = far[np.abs(target[far] - cdf[far]) > _WALK_STEPS / 8 * pmf[far]]
    result = y.copy()
    sure = np.zeros(p.size, dtype=bool)
    ok = np.isfinite(relerr)
    for upward in (True, False):
        idx = np.flatnonzero(ok & ((cdf < target) == upward))
        _walk(idx, upward, y, cdf, pmf, relerr, target, size, q, result, sure)
    redo = np.flatnonzero(~sure)
    if redo.size:
        result[redo] = _qnbinom_search(target[redo], size[redo], prob[redo], result[redo])
    return result


def _nb_cdf_pmf(
    y: FloatArray,
    size: FloatArray,
    prob: FloatArray,
    q: FloatArray,
    mu: FloatArray,
    lgamma_size: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """NB CDF (``betainc``), pmf (from lgamma) and a bound on the pmf's relative error.

    ``lgamma_size`` is ``gammaln(size)`` (per gene in the caller, so passed in). The
    bound is 16 ulps times the magnitude of the log-pmf terms (their cancellation is the
    error source); it is ``inf`` where a value is not finite or ``q == 0``.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        cdf = betainc(size, y + 1, prob)
        lg_ys, lg_s, lg_y1 = gammaln(y + size), lgamma_size, lgamma_counts(y)
        size_term = -size * np.log1p(mu / size)
        y_term = y * np.log(q)
        logf = np.where(y > 0, lg_ys - lg_s - lg_y1 + y_term, 0.0) + size_term
        magnitude = (
            np.abs(lg_ys) + np.abs(lg_s) + np.abs(lg_y1) + np.abs(size_term) + np.abs(y_term)
        )
        pmf = np.exp(logf)
    ok = np.isfinite(cdf) & np.isfinite(pmf) & np.isfinite(magnitude) & (q > 0)
    relerr = np.where(ok, 16 * _DBL_EPSILON * (magnitude + 1), np.inf)
    return cdf, pmf, relerr


def _walk(
    idx: NDArray[np.intp],
    upward: bool,
    y0: FloatArray,
    cdf0: FloatArray,
    pmf0: FloatArray,
    relerr0: FloatArray,
    target: FloatArray,
    size: FloatArray,
    q: FloatArray,
    result: FloatArray,
    sure: NDArray[np.bool_],
) -> None:
    """Unit-step search for the quantile by the NB pmf recurrence, for cells ``idx``.

    Upward cells (``cdf(y0) < target``) step until ``cdf(y) >= target``; downward cells
    step while ``cdf(y-1) = cdf(y) - pmf(y) >= target``. Writes the answer into
    ``result`` and marks ``sure`` where both final comparisons clear four times a bound
    on the rounding error of the derived CDF values (``cdf0`` is exact as ``betainc``).
    Cells still walking after :data:`_WALK_STEPS` steps are left unsure.
    """
    eps = _DBL_EPSILON
    y, cdf, pmf = y0[idx], cdf0[idx], pmf0[idx]
    tgt, sz, qq = target[idx], size[idx], q[idx]
    walked = pmf.copy()  # Σ of pmf values added to or taken from cdf0
    base = cdf.copy()
    relerr = relerr0[idx].copy()
    for _ in range(_WALK_STEPS + 1):
        if upward:
            stop = cdf >= tgt
        else:
            stop = (y == 0) | (cdf - pmf < tgt)
        if stop.any():
            fin = idx[stop]
            below = cdf[stop] - pmf[stop]
            err = 4 * (relerr[stop] * walked[stop] + 4 * eps * np.maximum(base[stop], cdf[stop]))
            result[fin] = y[stop]
            sure[fin] = (cdf[stop] - tgt[stop] > err) & ((y[stop] == 0) | (tgt[stop] - below > err))
            keep = ~stop
            idx, y, cdf, pmf, tgt, sz, qq, walked, base, relerr = (
                a[keep] for a in (idx, y, cdf, pmf, tgt, sz, qq, walked, base, relerr)
            )
        if idx.size == 0:
            return
        if upward:
            y = y + 1
            pmf = pmf * (y - 1 + sz) / y * qq
            cdf = cdf + pmf
        else:
            cdf = cdf - pmf
            pmf = pmf * y / ((y - 1 + sz) * qq)
            y = y - 1
        walked += pmf
        relerr += 4 * eps
    result[idx] = y  # unfinished: the bracketing search continues from here


# ----------------------------------------------------------------------- helpers


def factor_codes(values: Sequence[object], what: str) -> tuple[NDArray[np.intp], list[str]]:
    """Codes and levels like R's ``as.factor``.

    A pandas ``Categorical`` (or categorical Series) keeps its category order, as an R
    factor keeps its levels; anything else gets R's sorted levels
    (:func:`cohortnorm.model_matrix.factor_levels`), the order ComBat uses too.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values)
    elif isinstance(values, pd.Categorical):
        cat = values
    else:
        series = pd.Series(list(values))
        cat = pd.Categorical(series, categories=factor_levels(series))
    if (cat.codes < 0).any():
        raise InputError(f"{what} has missing values; give every sample a {what} label")
    return np.asarray(cat.codes, dtype=np.intp), [str(level) for level in cat.categories]


def _match_quantiles(
    counts: FloatArray,
    old_mu: FloatArray,
    old_phi: FloatArray,
    new_mu: FloatArray,
    new_phi: FloatArray,
    threads: int = 1,
) -> FloatArray:
    """sva ``match_quantiles`` for all batches at once, in gene blocks.

    Parameters
    ----------
    counts, old_mu, new_mu : ndarray, genes × samples
        Counts, ``mu_hat`` and ``mu_star``.
    old_phi : ndarray, genes × samples
        Each sample's batch dispersion (``phi_hat`` of its batch).
    new_phi : ndarray, genes
        ``phi_star``.
    threads : int
        Gene blocks processed in parallel (the result does not depend on it).

    Returns
    -------
    ndarray
        Counts ≤ 1 and cells with ``|pnbinom(count - 1) - 1| < 1e-4`` are kept; the others
        become ``1 + qnbinom(pnbinom(count - 1, old), new)``.
    """
    out = counts.copy()

    def block(rows: slice) -> None:
        cells = counts[rows] > 1
        if not cells.any():
            return
        c = counts[rows][cells]
        size_old, mu_old = 1 / old_phi[rows][cells], old_mu[rows][cells]
        tmp_p = pnbinom(c - 1, size_old, mu_old)
        move = ~(np.abs(tmp_p - 1) < 1e-4)
        if not move.any():
            return
        gene = np.nonzero(cells)[0][move]
        size_old, mu_old = size_old[move], mu_old[move]
        gene_size = 1 / new_phi[rows]
        size_new, mu_new = gene_size[gene], new_mu[rows][cells][move]
        # Start the search at the count's standardised position in the new distribution:
        # usually within a few units of the answer (speed only, not the result).
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scale = np.sqrt(
                (mu_new + mu_new * mu_new / size_new) / (mu_old + mu_old * mu_old / size_old)
            )
            start = np.rint(mu_new + (c[move] - 1 - mu_old) * scale)
        c[move] = 1 + qnbinom(tmp_p[move], size_new, mu_new, start, gammaln(gene_size)[gene])
        out[rows][cells] = c

    map_blocks(block, gene_blocks(*counts.shape), threads)
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
    # Imported here: scipy.stats takes half a second to load, and only this step uses it.
    from scipy.stats import nbinom

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
    threads: int | None = None,
    covariate_names: Sequence[str] | None = None,
) -> CombatSeqResult:
    """Adjust counts for batch effects, reproducing sva 3.46.0 ``ComBat_seq``.

    Parameters
    ----------
    counts : array_like, genes × samples
        Non-negative integer counts.
    batch : sequence
        Batch label per sample. Levels are sorted as R's ``as.factor`` sorts them
        (:func:`cohortnorm.model_matrix.batch_factor`), unless a pandas ``Categorical``
        is given, whose category order is kept (an R factor's levels).
    group : sequence, optional
        Biological condition per sample; modelled (``model.matrix(~group)``) when
        ``full_mod`` and it has more than one level. The first level is the reference
        (category order for a ``Categorical``, else R's order); the level order changes the
        fit for genes whose likelihood is flat, such as genes absent from a whole group.
    covariates : array_like, samples × k, optional
        Numeric covariate design columns without intercept (sva ``covar_mod``);
        all-ones columns are dropped as in sva.
    full_mod : bool
        Include ``group`` in the model.
    shrink, shrink_disp : bool
        sva's ``monte_carlo_int_NB`` shrinkage of gamma (and the dispersions).
    gene_subset_n : int, optional
        With ``shrink``, integrate over this many random genes. sva draws them with R's
        ``sample``; here numpy's generator (seed 0) draws them, so results differ from R.
    threads : int, optional
        Threads for the gene blocks (default this process's CPUs); results do not change.
    covariate_names : sequence of str, optional
        Names of the ``covariates`` columns, for messages.

    Returns
    -------
    CombatSeqResult

    Raises
    ------
    InputError
        Malformed counts, a batch with fewer than 2 samples, a design confounded with
        batch (sva's messages), or a design with as many columns as samples (no residual
        degrees of freedom; see :func:`cohortnorm.model_matrix.check_residual_df`).
    """
    y = checked_counts(counts)
    plan = seq_plan(batch, y.shape[1], group, covariates, full_mod, covariate_names)
    blevels, bcode, batches_ind = plan.blevels, plan.bcode, plan.batches_ind
    glevels, gcode, full, cov = plan.glevels, plan.gcode, plan.full, plan.cov
    messages = plan.messages

    # sva leaves genes all-zero within any batch as they are.
    keep = np.logical_and.reduce([np.any(y[:, ind] != 0, axis=1) for ind in batches_ind])
    yk = y[keep]

    messages.append("Estimating dispersions")
    n_threads = available_cpus() if threads is None else max(1, int(threads))
    phi_hat = batch_dispersions(yk, plan, n_threads)

    messages.append("Fitting the GLM model")
    gamma_hat, mu_hat, phi_matrix = fit_batch_glm(yk, plan, phi_hat, yk.sum(axis=0), n_threads)

    if shrink:
        gamma_star, phi_star_mat = _shrink_estimates(
            yk, mu_hat, gamma_hat, phi_hat, batches_ind, gene_subset_n, shrink_disp, messages
        )
    else:
        messages.append("Shrinkage off - using GLM estimates for parameters")
        gamma_star = gamma_hat
        phi_star_mat = phi_hat

    messages.append("Adjusting the data")
    adjusted_kept = adjust_kept_counts(
        yk, mu_hat, phi_matrix, gamma_star, phi_star_mat, bcode, n_threads
    )
    adjusted = y.copy()
    adjusted[keep] = adjusted_kept
    divergent = divergent_levels(
        yk, [glevels[c] for c in gcode] if full else None, cov, covariate_names
    )
    return CombatSeqResult(
        adjusted=adjusted.astype(np.int64),
        gamma_hat=gamma_hat,
        gamma_star=gamma_star,
        phi_hat=phi_hat,
        kept_genes=keep,
        batches=blevels,
        messages=messages,
        divergent=divergent,
        warnings=_divergent_warnings(divergent, keep),
    )


# The steps of combat_seq(), in order; the public ones are shared with the sharded mode
# (cohortnorm.sharded), which runs them on gene blocks with the pooled quantities given.


@dataclass(frozen=True)
class SeqPlan:
    """ComBat-seq's batches, groups, design and model, from the sample sheet alone."""

    blevels: list[str]
    bcode: NDArray[np.intp]
    n_batches: NDArray[np.intp]
    batches_ind: list[NDArray[np.intp]]
    glevels: list[str]
    gcode: NDArray[np.intp]
    full: bool
    cov: FloatArray | None
    design: FloatArray
    mod: FloatArray
    messages: list[str]


def seq_plan(
    batch: Sequence[object],
    nsamples: int,
    group: Sequence[object] | None = None,
    covariates: ArrayLike | None = None,
    full_mod: bool = True,
    covariate_names: Sequence[str] | None = None,
) -> SeqPlan:
    """Check the batches, groups and covariates and build sva's design (no counts needed)."""
    blevels, bcode, n_batches = _batches(batch, nsamples)
    n_batch = len(blevels)
    batches_ind = [np.flatnonzero(bcode == k) for k in range(n_batch)]
    messages = [f"Found {n_batch} batches"]
    glevels: list[str] = []
    gcode = np.zeros(nsamples, dtype=np.intp)
    if group is not None:
        if len(group) != nsamples:
            raise InputError(f"group has {len(group)} labels for {nsamples} samples")
        gcode, glevels = factor_codes(group, "group")
    full = full_mod and len(glevels) > 1
    cov = None if covariates is None else _checked_covariates(covariates, nsamples)
    design, mod = _seq_design(
        blevels, bcode, gcode if full else None, glevels, cov, covariate_names, messages
    )
    return SeqPlan(
        blevels, bcode, n_batches, batches_ind, glevels, gcode, full, cov, design, mod, messages
    )


def common_dispersion_needs_no_design(plan: SeqPlan, k: int) -> bool:
    """Whether batch ``k`` has too few samples for ``mod``: one common dispersion then."""
    mod_b = plan.mod[plan.batches_ind[k]]
    n_cov = plan.design.shape[1] - len(plan.blevels)
    return len(plan.batches_ind[k]) <= n_cov + 1 or rank(mod_b) < plan.mod.shape[1]


def batch_common_dispersion(
    y_b: FloatArray, plan: SeqPlan, k: int, lib_size: FloatArray | None, n_threads: int
) -> float:
    """edgeR's common dispersion of batch ``k`` (kept genes × that batch's samples).

    Pooled over every kept gene: the one quantity of ComBat-seq that a gene block
    cannot compute. ``lib_size`` are the batch's samples' sums over the kept genes
    (default: the column sums of ``y_b``, the same numbers when ``y_b`` is all of them).
    """
    offset = None if lib_size is None else np.log(lib_size)
    design = None if common_dispersion_needs_no_design(plan, k) else plan.mod[plan.batches_ind[k]]
    return estimate_glm_common_disp(y_b, design, offset, subset=None, threads=n_threads)


def batch_dispersions(
    yk: FloatArray,
    plan: SeqPlan,
    n_threads: int,
    common: Sequence[float] | None = None,
    lib_size: FloatArray | None = None,
) -> FloatArray:
    """Genes × batches NB dispersions: tagwise with ``mod``, or common where too few samples.

    ``common`` (one per batch) and ``lib_size`` (per sample, over all kept genes) are
    given when ``yk`` is only a block of the kept genes; the tagwise step is per gene.
    """
    phi_hat = np.empty((yk.shape[0], len(plan.batches_ind)))
    for k, ind in enumerate(plan.batches_ind):
        y_b = yk[:, ind]
        sizes = None if lib_size is None else lib_size[ind]
        phi = (
            batch_common_dispersion(y_b, plan, k, sizes, n_threads) if common is None else common[k]
        )
        if common_dispersion_needs_no_design(plan, k):
            phi_hat[:, k] = phi
        else:
            offset = None if sizes is None else np.log(sizes)
            phi_hat[:, k] = estimate_glm_tagwise_disp(
                y_b, plan.mod[ind], phi, offset, prior_df=0, threads=n_threads
            )
    return phi_hat


def fit_batch_glm(
    yk: FloatArray, plan: SeqPlan, phi_hat: FloatArray, lib_size: FloatArray, n_threads: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """sva's two GLM fits: ``gamma.hat``, ``mu.hat`` and the per-sample dispersions.

    ``lib_size``: each sample's sum over all kept genes (per gene otherwise).
    """
    n_batch, nsamples = len(plan.blevels), yk.shape[1]
    phi_matrix = phi_hat[:, plan.bcode]
    lib_offset = np.log(lib_size)
    # sva uses only the coefficients of this first fit.
    coef1 = glm_coefficients(yk, plan.design, phi_matrix, lib_offset, 1e-4, n_threads)
    alpha_g = coef1[:, :n_batch] @ (plan.n_batches / nsamples)
    new_offset = lib_offset[None, :] + alpha_g[:, None]
    fit2 = glm_fit(yk, plan.design, phi_matrix, new_offset, prior_count=1e-4, threads=n_threads)
    return fit2.coefficients[:, :n_batch], fit2.fitted_values, phi_matrix


def adjust_kept_counts(
    yk: FloatArray,
    mu_hat: FloatArray,
    phi_matrix: FloatArray,
    gamma_star: FloatArray,
    phi_star_mat: FloatArray,
    bcode: NDArray[np.intp],
    n_threads: int,
) -> FloatArray:
    """sva's quantile matching of each count to the batch-free distribution (per gene)."""
    with np.errstate(divide="ignore"):
        mu_star = np.exp(np.log(mu_hat) - gamma_star[:, bcode])
    phi_star = phi_star_mat.mean(axis=1)
    return _match_quantiles(yk, mu_hat, phi_matrix, mu_star, phi_star, n_threads)


def checked_counts(counts: ArrayLike, method: str = "ComBat-seq") -> FloatArray:
    """The counts as float, refused unless a complete matrix of non-negative integers.

    Shared by the count-level correctors (ComBat-seq, ComBat-ref); rows and columns in
    the messages count from 1, as a spreadsheet does.
    """
    y = np.asarray(counts, dtype=np.float64)
    if y.ndim != 2:
        raise InputError("counts must be a genes × samples matrix")
    if not np.all(np.isfinite(y)):
        bad = np.argwhere(~np.isfinite(y))[0]
        raise InputError(
            f"counts has a missing or infinite value (gene row {bad[0] + 1}, sample column "
            f"{bad[1] + 1}); {method} needs complete integer counts"
        )
    if np.any(y < 0) or np.any(y != np.round(y)):
        bad = np.argwhere((y < 0) | (y != np.round(y)))[0]
        raise InputError(
            f"counts must be non-negative integers; gene row {bad[0] + 1}, sample column "
            f"{bad[1] + 1} is {y[bad[0], bad[1]]}. Round estimated counts before {method}."
        )
    return y


def _batches(
    batch: Sequence[object], nsamples: int
) -> tuple[list[str], NDArray[np.intp], NDArray[np.intp]]:
    """Batch levels (R's order), each sample's batch and the batch sizes; two or more each."""
    blevels, bcode = batch_factor(batch, nsamples)
    n_batches = np.bincount(bcode, minlength=len(blevels))
    for level, size in zip(blevels, n_batches, strict=True):
        if size <= 1:
            raise InputError(
                f"ComBat-seq needs at least 2 samples per batch; batch {level} has {size}"
            )
    if len(blevels) < 2:
        raise InputError(f"ComBat-seq needs at least 2 batches; all samples are in {blevels[0]}")
    return blevels, bcode, n_batches


def _checked_covariates(covariates: ArrayLike, nsamples: int) -> FloatArray:
    cov = np.asarray(covariates, dtype=np.float64)
    if cov.ndim == 1:
        cov = cov[:, None]
    if cov.shape[0] != nsamples:
        raise InputError(f"covariates has {cov.shape[0]} rows for {nsamples} samples")
    if not np.all(np.isfinite(cov)):
        raise InputError("covariates must be finite numbers for every sample")
    return cov


def _seq_design(
    blevels: list[str],
    bcode: NDArray[np.intp],
    gcode: NDArray[np.intp] | None,
    glevels: list[str],
    cov: FloatArray | None,
    covariate_names: Sequence[str] | None,
    messages: list[str],
) -> tuple[FloatArray, FloatArray]:
    """sva's ``cbind(batchmod, mod)`` (all-ones columns dropped), checked; and ``mod``.

    ``gcode`` is None for the null model (``full_mod = FALSE`` or one group level).
    """
    nsamples, n_batch = len(bcode), len(blevels)
    batchmod = np.zeros((nsamples, n_batch))
    batchmod[np.arange(nsamples), bcode] = 1.0
    if gcode is not None:
        messages.append("Using full model in ComBat-seq.")
        mod = np.column_stack(
            [np.ones(nsamples)] + [(gcode == k).astype(float) for k in range(1, len(glevels))]
        )
        mod_names = ["(Intercept)"] + [f"group{lv}" for lv in glevels[1:]]
    else:
        messages.append("Using null model in ComBat-seq.")
        mod = np.ones((nsamples, 1))
        mod_names = ["(Intercept)"]
    if cov is not None:
        cov_keep = ~np.all(cov == 1, axis=0)
        mod = np.column_stack([mod, cov[:, cov_keep]])
        mod_names += [
            covariate_names[j] if covariate_names is not None else f"covariate{j + 1}"
            for j in np.flatnonzero(cov_keep)
        ]
    design = np.column_stack([batchmod, mod])
    names = [f"batch{lv}" for lv in blevels] + mod_names
    not_ones = ~np.all(design == 1, axis=0)
    design = design[:, not_ones]
    names = [n for n, k in zip(names, not_ones, strict=True) if k]
    messages.append(f"Adjusting for {design.shape[1] - n_batch} covariate(s) or covariate level(s)")
    check_confounding(design, n_batch, blevels, bcode, names[n_batch:], method="ComBat-Seq")
    if design.shape[1] >= nsamples:
        # A saturated fit: zero residuals, so the dispersions are not estimable.
        check_residual_df(
            [blevels[b] for b in bcode],
            design[:, n_batch:],
            method="ComBat-seq",
            covariate_names=names[n_batch:],
        )
    return design, mod


def _shrink_estimates(
    yk: FloatArray,
    mu_hat: FloatArray,
    gamma_hat: FloatArray,
    phi_hat: FloatArray,
    batches_ind: list[NDArray[np.intp]],
    gene_subset_n: int | None,
    shrink_disp: bool,
    messages: list[str],
) -> tuple[FloatArray, FloatArray]:
    """``shrink = TRUE``: Monte-Carlo empirical Bayes gamma* (and phi* with shrink_disp)."""
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
    return gamma_star, phi_star_mat


def _divergent_warnings(divergent: list[str], keep: NDArray[np.bool_]) -> list[str]:
    """A warning listing the genes zero in a whole model level (infinite coefficient)."""
    n_divergent = sum(1 for levels in divergent if levels)
    if not n_divergent:
        return []
    examples = [
        f"{int(np.flatnonzero(keep)[i]) + 1} ({levels})"
        for i, levels in enumerate(divergent)
        if levels
    ][:5]
    return [
        f"{n_divergent} gene(s) are zero in every sample of a model level (gene rows "
        f"{', '.join(examples)}{', ...' if n_divergent > 5 else ''}): their GLM "
        "coefficient is infinite, so the fit stops at edgeR's iteration limits, as in "
        "sva. Their corrected counts equal sva's but depend on which group level is "
        "the reference (the first in R's sorted order); treat them with caution."
    ]
