"""Negative-binomial GLM fitting and Cox-Reid dispersion estimation, ported from edgeR.

Reproduces the pieces of edgeR 3.40.2 that sva's ``ComBat_seq`` relies on:

* ``glmFit.default`` with its two fitting paths: ``mglmOneWay`` (C++ ``fit_one_group``
  Newton-Raphson per group) for one-way layouts and ``mglmLevenberg`` (C++
  ``glm_levenberg::fit``, Levenberg-damped Fisher scoring with ``get_levenberg_start``
  "null" starting values) otherwise, plus ``predFC`` shrinkage when ``prior.count > 0``;
* ``adjustedProfileLik`` (C++ ``compute_apl`` with the Cox-Reid adjustment computed from
  the LAPACK ``dsytrf`` LDLᵀ factorisation of XᵀWX);
* ``estimateGLMCommonDisp.default`` (``dispCoxReid``: R's ``optimize``, i.e. Brent's
  ``fmin``, on the fourth root of the dispersion);
* ``estimateGLMTagwiseDisp.default`` with ``prior.df = 0`` (``dispCoxReidInterpolateTagwise``:
  APL on an 11-point grid, FMM cubic spline and ``maximizeInterpolant``).

Every routine works on all genes at once: the per-gene C++ loops become array operations
over the genes that are still iterating, in blocks of genes small enough for the
temporaries to stay in cache (:data:`~cohortnorm.blocks.CACHE_BLOCK_CELLS`). Blocks are
independent, so the fitting and dispersion routines take ``threads`` and run blocks in
parallel (numpy and scipy release the GIL); the result does not depend on the number of threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import solve_triangular
from scipy.special import gammaln

from cohortnorm.blocks import CACHE_BLOCK_CELLS, cell_slices
from cohortnorm.errors import InputError

FloatArray = NDArray[np.float64]

__all__ = [
    "GlmFit",
    "adjusted_profile_lik",
    "brent_fmin",
    "design_as_factor",
    "estimate_glm_common_disp",
    "estimate_glm_tagwise_disp",
    "glm_coefficients",
    "glm_fit",
    "maximize_interpolant",
    "mglm_levenberg",
    "mglm_one_way",
    "nb_deviance",
    "pred_fc",
]

# Constants of edgeR's C++ sources (utils.h, nbdev.cpp, glm_levenberg.cpp).
_LOW_VALUE = 1e-10
_LOG_LOW_VALUE = math.log(_LOW_VALUE)
_MILDLY_LOW_VALUE = 1e-8
_ONE_TENTHOUSANDTH = 1e-4
_ONE_MILLION = 1e6
_ONE_MILLIONTH = 1e-6
_SUPREMELY_LOW_VALUE = 1e-13
_RIDICULOUSLY_LOW_VALUE = 1e-100


@dataclass
class GlmFit:
    """Result of :func:`glm_fit` (the parts of edgeR's ``DGEGLM`` that ComBat-seq uses).

    Attributes
    ----------
    coefficients : ndarray, genes × coefficients
        Natural-log coefficients; ``predFC``-shrunk when ``prior_count > 0``.
    fitted_values : ndarray, genes × samples
        Fitted means of the unshrunk fit.
    unshrunk_coefficients : ndarray or None
        The unshrunk coefficients when ``prior_count > 0``.
    method : str
        ``"oneway"`` or ``"levenberg"``, as edgeR's ``fit$method``.
    """

    coefficients: FloatArray
    fitted_values: FloatArray
    unshrunk_coefficients: FloatArray | None
    method: str


# --------------------------------------------------------------------------- helpers


def _r_pow(x: ArrayLike, y: float) -> FloatArray:
    """R's ``x^y`` for ``y != 2``: ``R_pow`` uses ``powl`` on x86-64, then rounds to double."""
    xl = np.asarray(x, dtype=np.longdouble)
    return np.asarray(np.power(xl, np.longdouble(y)), dtype=np.float64)


def _as_matrix(value: ArrayLike, shape: tuple[int, int], byrow: bool, what: str) -> FloatArray:
    """Expand a scalar, vector or matrix like edgeR's ``makeCompressedMatrix``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(shape, float(arr))
    if arr.ndim == 1:
        if byrow:
            if arr.shape[0] != shape[1]:
                raise InputError(f"{what} has length {arr.shape[0]}; expected {shape[1]}")
            return np.broadcast_to(arr[None, :], shape).copy()
        if arr.shape[0] != shape[0]:
            raise InputError(f"{what} has length {arr.shape[0]}; expected {shape[0]}")
        return np.broadcast_to(arr[:, None], shape).copy()
    if arr.shape != shape:
        raise InputError(f"{what} has shape {arr.shape}; expected {shape}")
    return arr


#: Counts up to this size get lgamma(y + 1/phi) from a table when phi is common.
_LGAMMA_TABLE = 1 << 16


@cache
def _lgamma_int_table() -> FloatArray:
    """``lgamma(k + 1)`` for ``k = 0 … 65535`` (the same doubles as ``gammaln``)."""
    return gammaln(np.arange(_LGAMMA_TABLE, dtype=np.float64) + 1)


def lgamma_counts(y: FloatArray) -> FloatArray:
    """``gammaln(y + 1)`` for non-negative integer-valued ``y``, small ones from a table.

    The same doubles as ``gammaln``; the look-up replaces one lgamma call per cell.
    """
    table = _lgamma_int_table()
    small = y < table.size
    out = table[np.where(small, y, 0).astype(np.intp)]
    if not small.all():
        out[~small] = gammaln(y[~small] + 1)
    return out


def gene_blocks(ngenes: int, nlibs: int) -> list[slice]:
    """Consecutive row slices of about :data:`~cohortnorm.blocks.CACHE_BLOCK_CELLS` cells
    each: elementwise chains run block by block so that their temporaries (1 MiB each)
    stay in cache instead of streaming genes × samples arrays through memory."""
    return cell_slices(ngenes, nlibs, CACHE_BLOCK_CELLS)


def map_blocks(fn: Callable[[slice], None], blocks: list[slice], threads: int) -> None:
    """Run ``fn`` on every block, on up to ``threads`` threads.

    The blocks are independent and ``fn`` writes only its own rows, so the result does not
    depend on ``threads``; numpy's and scipy's array kernels release the GIL, so threads
    run the elementwise work in parallel.
    """
    if threads <= 1 or len(blocks) <= 1:
        for rows in blocks:
            fn(rows)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(blocks))) as pool:
        for _ in pool.map(fn, blocks):
            pass


class _NbDeviance:
    """Per-gene NB deviance for fixed counts and dispersions, edgeR ``nbinomDeviance``.

    The terms that do not involve ``mu`` (``y + 1e-8``, ``1/phi``, ``y + 1e-8 + 1/phi``)
    are computed once, because ``mglmLevenberg`` evaluates the deviance at every trial
    step. Values are identical to :func:`nb_deviance`: the factor 2 is applied after the
    row sum, which is exact.

    Parameters
    ----------
    y : ndarray, genes × samples
    phi : ndarray, genes × samples or genes × 1
    """

    def __init__(self, y: FloatArray, phi: FloatArray) -> None:
        self.y = y + _MILDLY_LOW_VALUE
        self.phi = phi
        with np.errstate(divide="ignore"):
            self.invphi = 1 / phi
        self.y_r = self.y + self.invphi
        self.pois = phi < _ONE_TENTHOUSANDTH
        self.any_pois = bool(self.pois.any())

    def rows(self, keep: NDArray[np.intp] | NDArray[np.bool_]) -> _NbDeviance:
        """The same object restricted to some genes."""
        out = object.__new__(_NbDeviance)
        out.y, out.phi, out.invphi, out.y_r = (
            self.y[keep],
            self.phi[keep],
            self.invphi[keep],
            self.y_r[keep],
        )
        out.pois = self.pois[keep]
        out.any_pois = bool(out.pois.any())
        return out

    def __call__(self, mu: FloatArray) -> FloatArray:
        """Deviance of every gene at fitted means ``mu`` (same shape as ``y``)."""
        return 2 * self.half_unit(mu).sum(axis=1)

    def half_unit(self, mu: FloatArray) -> FloatArray:
        """Half the unit deviance of every cell, edgeR C++ ``compute_unit_nb_deviance``/2.

        The one copy of the formula: its three branches (negative binomial, the gamma
        limit for ``mu * phi > 1e6``, Poisson for ``phi < 1e-4``). The Poisson branch keeps
        edgeR's ``2/3*resid`` term, which C integer division makes 0.
        """
        y = self.y
        mu = mu + _MILDLY_LOW_VALUE
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # Negative-binomial unit deviance / 2 everywhere; other branches patched below.
            half = y / mu
            np.log(half, out=half)
            half *= y
            tmp = mu + self.invphi
            tmp /= self.y_r
            np.log(tmp, out=tmp)
            tmp *= self.y_r
            half += tmp
            product = mu * self.phi
            gamma = product > _ONE_MILLION
            if self.any_pois:
                gamma &= ~self.pois
            if gamma.any():
                yg, mg = np.broadcast_to(y, mu.shape)[gamma], mu[gamma]
                half[gamma] = ((yg - mg) / mg - np.log(yg / mg)) * mg / (1 + product[gamma])
            if self.any_pois:
                pois = np.broadcast_to(self.pois, mu.shape)
                yp, mp = np.broadcast_to(y, mu.shape)[pois], mu[pois]
                pp = np.broadcast_to(self.phi, mu.shape)[pois]
                resid = yp - mp
                half[pois] = (
                    yp * np.log(yp / mp)
                    - resid
                    - 0.5 * resid * resid * pp * (1 + pp * (0 * resid - yp))
                )
        return half


def nb_unit_deviance(y: FloatArray, mu: FloatArray, phi: FloatArray) -> FloatArray:
    """Unit NB deviance, edgeR C++ ``compute_unit_nb_deviance`` (see _NbDeviance.half_unit).

    Twice the half deviance, which is exact, so a gene's sum equals :func:`nb_deviance`.
    """
    y, mu, phi = np.broadcast_arrays(
        np.asarray(y, dtype=np.float64),
        np.asarray(mu, dtype=np.float64),
        np.asarray(phi, dtype=np.float64),
    )
    deviance = _NbDeviance(np.ascontiguousarray(y), np.ascontiguousarray(phi))
    return 2 * deviance.half_unit(np.ascontiguousarray(mu))


def nb_deviance(y: FloatArray, mu: FloatArray, phi: FloatArray) -> FloatArray:
    """Per-gene NB deviance (unit weights), edgeR ``nbinomDeviance``."""
    y, mu, phi = np.broadcast_arrays(
        np.asarray(y, dtype=np.float64),
        np.asarray(mu, dtype=np.float64),
        np.asarray(phi, dtype=np.float64),
    )
    return _NbDeviance(np.ascontiguousarray(y), np.ascontiguousarray(phi))(mu)


def design_as_factor(design: FloatArray) -> NDArray[np.intp]:
    """0-based group codes of the distinct design rows, edgeR ``designAsFactor``."""
    z = (math.e + math.pi) / 5
    powers = z ** np.arange(design.shape[1], dtype=np.float64)
    key = (design * powers[None, :]).mean(axis=1)
    _, codes = np.unique(key, return_inverse=True)
    return codes.astype(np.intp)


# ------------------------------------------------------------------- one-way layout


def _one_group_start(y: FloatArray, offset: FloatArray) -> FloatArray:
    """Starting intercepts of edgeR C++ ``glm_one_group`` (``-inf`` for all-zero rows)."""
    nonzero = y > _LOW_VALUE
    with np.errstate(divide="ignore"):
        start = np.where(nonzero, y / np.exp(offset), 0.0).sum(axis=1)
        return np.where(nonzero.any(axis=1), np.log(start / y.shape[1]), -np.inf)


def _one_group_newton(
    y: FloatArray,
    offset: FloatArray,
    disp: FloatArray,
    beta: FloatArray,
    maxit: int,
    tol: float,
) -> FloatArray:
    """Newton-Raphson of edgeR C++ ``glm_one_group`` on one block, from ``beta``.

    ``disp`` is genes × samples or genes × 1. Genes leave the working arrays as soon as
    their step falls below ``tol``, so each follows its own C++ iteration.
    """
    beta = beta.copy()
    active = np.flatnonzero(np.isfinite(beta))
    ya, oa, da = y[active], offset[active], disp[active]
    # Row sums as matrix-vector products: several times faster than ``sum(axis=1)`` on
    # short rows (the order of the additions differs, as it does from edgeR's loop).
    ones = np.ones(y.shape[1])
    for _ in range(maxit):
        if active.size == 0:
            break
        mu = beta[active, None] + oa
        np.exp(mu, out=mu)
        denom = mu * da
        denom += 1
        dl = ((ya - mu) / denom) @ ones
        mu /= denom
        step = dl / (mu @ ones)
        beta[active] += step
        going = ~(np.abs(step) < tol)
        if not going.all():
            active, ya, oa, da = active[going], ya[going], oa[going], da[going]
    return beta


def _fit_one_group(
    y: FloatArray,
    offset: FloatArray,
    disp: FloatArray,
    maxit: int = 50,
    tol: float = 1e-10,
    threads: int = 1,
) -> FloatArray:
    """Per-gene intercept by Newton-Raphson, edgeR C++ ``glm_one_group`` (unit weights)."""
    ngenes, nlibs = y.shape
    beta = np.full(ngenes, -np.inf)
    if ngenes == 0:
        return beta
    if np.all(disp == 0):
        # edgeR's Poisson shortcut for all-zero dispersions.
        sum_counts = y.sum(axis=1)
        sum_lib = np.exp(offset).sum(axis=1)
        with np.errstate(divide="ignore"):
            return np.where(sum_counts == 0, -np.inf, np.log(sum_counts / sum_lib))

    def block(rows: slice) -> None:
        yb, ob = y[rows], offset[rows]
        beta[rows] = _one_group_newton(yb, ob, disp[rows], _one_group_start(yb, ob), maxit, tol)

    map_blocks(block, gene_blocks(ngenes, nlibs), threads)
    return beta


def mglm_one_way(
    y: FloatArray,
    design: FloatArray,
    dispersion: FloatArray,
    offset: FloatArray,
    maxit: int = 50,
    tol: float = 1e-10,
    threads: int = 1,
) -> tuple[FloatArray, FloatArray]:
    """Fit a one-way layout group by group, edgeR ``mglmOneWay``.

    Parameters
    ----------
    y, dispersion, offset : ndarray, genes × samples
    design : ndarray, samples × coefficients
        Must be equivalent to a one-way layout.
    maxit, tol
        Newton-Raphson limits of C++ ``glm_one_group``.
    threads : int
        Gene blocks fitted in parallel (the result does not depend on it).

    Returns
    -------
    (coefficients, fitted_values)
    """
    codes = design_as_factor(design)
    ngroups = int(codes.max()) + 1
    if design.shape[1] != ngroups:
        raise InputError("design matrix is not equivalent to a oneway layout")
    first = np.array([np.flatnonzero(codes == g)[0] for g in range(ngroups)])
    unique = design[first]
    identity_like = (
        np.sum(unique == 1) == ngroups and np.sum(unique == 0) == (ngroups - 1) * ngroups
    )
    beta = np.empty((y.shape[0], ngroups))
    for g in range(ngroups):
        cols = codes == g
        beta[:, g] = _fit_one_group(
            y[:, cols], offset[:, cols], dispersion[:, cols], maxit, tol, threads
        )
    beta = np.maximum(beta, -1e8)
    mu = np.exp(offset + beta[:, codes])
    if not identity_like:
        beta = np.linalg.solve(unique, beta.T).T
    # An identity-like design keeps the group order, as edgeR does (``design <- NULL``).
    return beta, mu


# ------------------------------------------------------------ Levenberg-Marquardt


def _xtwx(design: FloatArray, w: FloatArray) -> FloatArray:
    """XᵀWX for every gene (rows of ``w``), edgeR ``compute_xtwx`` (full symmetric)."""
    p = design.shape[1]
    out = np.empty((w.shape[0], p, p))
    for a in range(p):
        for b in range(a + 1):
            val = w @ (design[:, a] * design[:, b])
            out[:, a, b] = val
            out[:, b, a] = val
    return out


def _times_columns(m: FloatArray, design: FloatArray) -> FloatArray:
    """``m @ design`` as one matrix-vector product per column.

    BLAS matrix-vector kernels run single-threaded at these sizes, whereas OpenBLAS
    threads small matrix-matrix products, which is slower and fights the gene-block
    threads for the cores.
    """
    out = np.empty((m.shape[0], design.shape[1]))
    for k in range(design.shape[1]):
        out[:, k] = m @ design[:, k]
    return out


def _linear_predictor(beta: FloatArray, design: FloatArray, offset: FloatArray) -> FloatArray:
    """``offset + beta @ design.T`` summed term by term (no small BLAS matrix product)."""
    eta = offset + beta[:, :1] * design[:, 0]
    for k in range(1, design.shape[1]):
        eta += beta[:, k : k + 1] * design[:, k]
    return eta


def _positive_definite(a: FloatArray) -> NDArray[np.bool_]:
    """Whether each stacked matrix has a Cholesky factor (LAPACK ``dpotrf`` succeeds).

    numpy factorises the whole stack in one call and only reports failure for the stack,
    so the rare failing stack is checked matrix by matrix with :func:`_cholesky_upper`.
    """
    try:
        np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return _cholesky_upper(a)[1]
    return np.ones(a.shape[0], dtype=bool)


def _cholesky_upper(a: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Batched LAPACK ``dpotf2`` (upper): returns U with A = UᵀU and a success mask."""
    m, p, _ = a.shape
    u = np.zeros_like(a)
    ok = np.ones(m, dtype=bool)
    for j in range(p):
        ajj = a[:, j, j] - np.einsum("mi,mi->m", u[:, :j, j], u[:, :j, j])
        bad = ~(ajj > 0)
        ok &= ~bad
        ajj = np.sqrt(np.where(bad, 1.0, ajj))
        u[:, j, j] = ajj
        if j + 1 < p:
            rest = a[:, j, j + 1 :] - np.einsum("mi,mik->mk", u[:, :j, j], u[:, :j, j + 1 :])
            u[:, j, j + 1 :] = rest / ajj[:, None]
    return u, ok


def _levenberg_start(
    y: FloatArray, offset: FloatArray, disp: FloatArray, design: FloatArray
) -> FloatArray:
    """Starting coefficients, edgeR C++ ``get_levenberg_start`` with ``use_null=TRUE``."""
    lib = np.exp(offset)
    weight = lib / (1 + disp * lib)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.log((y * weight / lib).sum(axis=1) / weight.sum(axis=1))
    q, r = np.linalg.qr(design)
    # The start solves R b = Qᵀ(level·1) per gene; by linearity that is level·R⁻¹Qᵀ1, one
    # small solve for all genes (row-local, so gene blocks cannot change it).
    unit = solve_triangular(r, q.sum(axis=0), lower=False)
    return level[:, None] * unit[None, :]


def mglm_levenberg(
    y: FloatArray,
    design: FloatArray,
    dispersion: FloatArray,
    offset: FloatArray,
    start: FloatArray | None = None,
    maxit: int = 200,
    tol: float = 1e-6,
    threads: int = 1,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int64], NDArray[np.bool_]]:
    """Levenberg-damped NB GLM fit, edgeR ``mglmLevenberg`` / C++ ``glm_levenberg::fit``.

    Genes are fitted in blocks (:func:`gene_blocks`, on up to ``threads`` threads);
    within a block all genes iterate together and a gene leaves the working arrays when
    its own stopping rule fires, so each gene follows the per-gene C++ iteration. As in
    edgeR, lambda grows tenfold until ``XᵀWX + λI`` has a Cholesky factor; the damped
    system is then solved by LAPACK for all genes of the block at once.

    Returns
    -------
    (coefficients, fitted_values, deviance, iterations, failed)
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    dispersion = np.ascontiguousarray(dispersion, dtype=np.float64)
    offset = np.ascontiguousarray(offset, dtype=np.float64)
    ngenes, nlibs = y.shape
    beta = np.empty((ngenes, design.shape[1])) if start is None else start.copy()
    mu = np.zeros((ngenes, nlibs))
    dev = np.zeros(ngenes)
    iters = np.zeros(ngenes, dtype=np.int64)
    failed = np.zeros(ngenes, dtype=bool)

    def block(rows: slice) -> None:
        if start is None:
            beta[rows] = _levenberg_start(y[rows], offset[rows], dispersion[rows], design)
        _levenberg_block(
            y[rows],
            design,
            dispersion[rows],
            offset[rows],
            beta[rows],
            mu[rows],
            dev[rows],
            iters[rows],
            failed[rows],
            maxit,
            tol,
        )

    map_blocks(block, gene_blocks(ngenes, nlibs), threads)
    return beta, mu, dev, iters, failed


def _levenberg_block(
    y: FloatArray,
    design: FloatArray,
    disp: FloatArray,
    offset: FloatArray,
    beta: FloatArray,
    mu: FloatArray,
    dev: FloatArray,
    iters: NDArray[np.int64],
    failed: NDArray[np.bool_],
    maxit: int,
    tol: float,
) -> None:
    """:func:`mglm_levenberg` on one block of genes; fills the output views in place."""
    nlibs = y.shape[1]
    p = design.shape[1]
    ymax = y.max(axis=1) if nlibs else np.zeros(y.shape[0])
    allzero = ymax < _LOW_VALUE
    beta[allzero] = np.nan
    # Working arrays hold the genes still iterating, compacted when genes finish.
    idx = np.flatnonzero(~allzero)
    ya, da, oa, ba, yma = y[idx], disp[idx], offset[idx], beta[idx], ymax[idx]
    deviance = _NbDeviance(ya, da)
    mua = np.exp(_linear_predictor(ba, design, oa)) if p else np.exp(oa)
    deva = deviance(mua)
    if p == 0 or idx.size == 0:
        mu[idx], dev[idx] = mua, deva
        return
    lam = np.zeros(idx.size)
    max_info = np.full(idx.size, -1.0)
    eye = np.eye(p)
    it = 0
    while idx.size and it < maxit:
        it += 1
        iters[idx] = it
        denom = mua * da
        denom += 1
        xtwx = _xtwx(design, mua / denom)
        dl = _times_columns((ya - mua) / denom, design)
        diag = np.diagonal(xtwx, axis1=1, axis2=2)
        np.maximum(max_info, diag.max(axis=1), out=max_info)
        if it == 1:
            lam = np.maximum(max_info * _ONE_MILLIONTH, _SUPREMELY_LOW_VALUE)

        m = idx.size
        lev = np.zeros(m, dtype=np.int64)
        low_dev = np.zeros(m, dtype=bool)
        fail_now = np.zeros(m, dtype=bool)
        dbeta = np.zeros((m, p))
        searching = np.arange(m)
        while searching.size:
            s = searching
            whole = s.size == m  # the usual first pass: no gathering needed
            lev[s] += 1
            xs = xtwx if whole else xtwx[s]
            damped = np.empty((s.size, p, p))
            todo = np.arange(s.size)
            while todo.size:
                # edgeR raises lambda tenfold until the Cholesky factorisation succeeds.
                a = xs[todo] + lam[s[todo], None, None] * eye
                ok = _positive_definite(a)
                damped[todo[ok]] = a[ok]
                bad = todo[~ok]
                lam[s[bad]] *= 10
                lam[s[bad]] = np.where(lam[s[bad]] <= 0, _RIDICULOUSLY_LOW_VALUE, lam[s[bad]])
                todo = bad
            step = np.linalg.solve(damped, (dl if whole else dl[s])[:, :, None])[:, :, 0]
            dbeta[s] = step
            beta_new = (ba if whole else ba[s]) + step
            eta = _linear_predictor(beta_new, design, oa if whole else oa[s])
            mu_new = np.exp(eta, out=eta)
            dev_new = (deviance if whole else deviance.rows(s))(mu_new)
            ld = dev_new / yma[s] < _SUPREMELY_LOW_VALUE
            low_dev[s] = ld
            accept = (dev_new <= deva[s]) | ld
            if whole and accept.all():
                ba, mua, deva = beta_new, mu_new, dev_new
            else:
                acc = s[accept]
                ba[acc] = beta_new[accept]
                mua[acc] = mu_new[accept]
                deva[acc] = dev_new[accept]
            rej = s[~accept]
            lam[rej] *= 2
            lam[rej] = np.where(lam[rej] <= 0, _RIDICULOUSLY_LOW_VALUE, lam[rej])
            too_damped = lam[rej] / max_info[rej] > 1 / _SUPREMELY_LOW_VALUE
            fail_now[rej[too_damped]] = True
            searching = rej[~too_damped]

        divergence = np.einsum("mk,mk->m", dl, dbeta)
        stop = fail_now | low_dev | (divergence < tol)
        speed_up = ~stop & (lev == 1)
        lam[speed_up] /= 10
        if stop.any():
            fin = idx[stop]
            beta[fin], mu[fin], dev[fin] = ba[stop], mua[stop], deva[stop]
            failed[fin] = fail_now[stop]
            go = ~stop
            idx, ya, da, oa, ba, yma, mua, deva, lam, max_info = (
                a[go] for a in (idx, ya, da, oa, ba, yma, mua, deva, lam, max_info)
            )
            deviance = deviance.rows(go)
    beta[idx], mu[idx], dev[idx] = ba, mua, deva


# ---------------------------------------------------------------------- glmFit


def _prepare(
    y: ArrayLike, design: ArrayLike | None, dispersion: ArrayLike, offset: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=np.float64)
    if yy.ndim != 2:
        raise InputError("counts must be a genes × samples matrix")
    shape = yy.shape
    x = (
        np.ones((shape[1], 1))
        if design is None
        else np.asarray(design, dtype=np.float64).reshape(shape[1], -1)
    )
    disp = _as_matrix(dispersion, shape, byrow=False, what="dispersion")
    if not np.all(np.isfinite(disp)) or np.any(disp < 0):
        raise InputError("dispersions must be finite non-negative values")
    off = (
        np.broadcast_to(np.log(yy.sum(axis=0))[None, :], shape).copy()
        if offset is None
        else _as_matrix(offset, shape, byrow=True, what="offset")
    )
    if not np.all(np.isfinite(off)):
        raise InputError("offsets must be finite values (a sample has zero library size?)")
    return yy, x, disp, off


def _prepare_full_rank(
    y: ArrayLike, design: ArrayLike | None, dispersion: ArrayLike, offset: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """:func:`_prepare`, refusing a design that is not of full rank (as ``glmFit`` does)."""
    yy, x, disp, off = _prepare(y, design, dispersion, offset)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InputError("Design matrix not of full rank: some coefficients are not estimable")
    return yy, x, disp, off


def _fit_unshrunk(
    y: FloatArray, design: FloatArray, disp: FloatArray, off: FloatArray, threads: int = 1
) -> tuple[FloatArray, FloatArray, str]:
    codes = design_as_factor(design)
    if int(codes.max()) + 1 == design.shape[1]:
        beta, mu = mglm_one_way(y, design, disp, off, threads=threads)
        return beta, mu, "oneway"
    beta, mu, _, _, _ = mglm_levenberg(y, design, disp, off, maxit=250, threads=threads)
    return beta, mu, "levenberg"


def pred_fc(
    y: FloatArray,
    design: FloatArray,
    dispersion: FloatArray,
    offset: FloatArray,
    prior_count: float = 0.125,
    threads: int = 1,
) -> FloatArray:
    """Shrunk log2 coefficients, edgeR ``predFC.default`` (``addPriorCount`` + refit).

    The prior is scaled by each library's size relative to the mean (per gene, since the
    offset may vary by gene) and twice the prior is added to the library sizes.
    """
    lib = np.exp(offset)
    adj_prior = prior_count * lib / lib.mean(axis=1, keepdims=True)
    y_aug = y + adj_prior
    off_aug = np.log(lib + 2 * adj_prior)
    beta, _, _ = _fit_unshrunk(y_aug, design, dispersion, off_aug, threads)
    return beta / math.log(2)


def glm_fit(
    y: ArrayLike,
    design: ArrayLike | None = None,
    dispersion: ArrayLike = 0.0,
    offset: ArrayLike | None = None,
    prior_count: float = 0.125,
    threads: int = 1,
) -> GlmFit:
    """Fit a NB GLM to every gene, reproducing edgeR 3.40 ``glmFit.default``.

    Parameters
    ----------
    y : array_like, genes × samples
        Counts.
    design : array_like, samples × coefficients, optional
        Full-rank design; intercept-only when None.
    dispersion : scalar, per-gene vector or genes × samples matrix
    offset : per-sample vector or genes × samples matrix, optional
        Log library sizes; ``log(colSums(y))`` when None.
    prior_count : float
        When > 0 the returned coefficients are ``predFC`` shrunk, as in edgeR.
    threads : int
        Gene blocks fitted in parallel (the result does not depend on it).

    Returns
    -------
    GlmFit
        Uses ``mglmOneWay`` when the design is a one-way layout, else ``mglmLevenberg``
        with ``maxit = 250``.
    """
    yy, x, disp, off = _prepare_full_rank(y, design, dispersion, offset)
    beta, mu, method = _fit_unshrunk(yy, x, disp, off, threads)
    unshrunk = None
    if prior_count > 0:
        unshrunk = beta
        beta = pred_fc(yy, x, disp, off, prior_count, threads) * math.log(2)
    return GlmFit(beta, mu, unshrunk, method)


def glm_coefficients(
    y: ArrayLike,
    design: ArrayLike | None = None,
    dispersion: ArrayLike = 0.0,
    offset: ArrayLike | None = None,
    prior_count: float = 0.125,
    threads: int = 1,
) -> FloatArray:
    """``glmFit(...)$coefficients`` alone: the coefficients of :func:`glm_fit`.

    With ``prior_count > 0`` edgeR's coefficients come from the ``predFC`` refit only, so
    the unshrunk fit (needed just for the fitted values) is skipped. Same parameters as
    :func:`glm_fit`.
    """
    if prior_count <= 0:
        return glm_fit(y, design, dispersion, offset, prior_count, threads).coefficients
    yy, x, disp, off = _prepare_full_rank(y, design, dispersion, offset)
    return pred_fc(yy, x, disp, off, prior_count, threads) * math.log(2)


# -------------------------------------------------------- adjusted profile likelihood


def _dsytf2_upper_logdiag(a: FloatArray) -> float:
    """Half the sum of log |D| diagonal after LAPACK ``dsytf2`` (uplo='U'), one matrix.

    Bunch-Kaufman pivoting (with 2×2 blocks) as in LAPACK; used for the rare genes whose
    XᵀWX needs a pivot.
    """
    a = a.copy()
    n = a.shape[0]
    alpha = (1 + math.sqrt(17.0)) / 8
    k = n - 1
    while k >= 0:
        kstep = 1
        absakk = abs(a[k, k])
        if k > 0:
            imax = int(np.argmax(np.abs(a[:k, k])))
            colmax = abs(a[imax, k])
        else:
            imax, colmax = 0, 0.0
        if max(absakk, colmax) == 0 or math.isnan(absakk):
            kp = k
        else:
            if absakk >= alpha * colmax:
                kp = k
            else:
                row = np.abs(a[imax, imax + 1 : k + 1])
                jmax = imax + 1 + int(np.argmax(row))
                rowmax = abs(a[imax, jmax])
                if imax > 0:
                    rowmax = max(rowmax, float(np.max(np.abs(a[:imax, imax]))))
                if absakk >= alpha * colmax * (colmax / rowmax):
                    kp = k
                elif abs(a[imax, imax]) >= alpha * rowmax:
                    kp = imax
                else:
                    kp = imax
                    kstep = 2
            kk = k - kstep + 1
            if kp != kk:
                tmp = a[:kp, kk].copy()
                a[:kp, kk] = a[:kp, kp]
                a[:kp, kp] = tmp
                tmp = a[kp + 1 : kk, kk].copy()
                a[kp + 1 : kk, kk] = a[kp, kp + 1 : kk]
                a[kp, kp + 1 : kk] = tmp
                a[kk, kk], a[kp, kp] = a[kp, kp], a[kk, kk]
                if kstep == 2:
                    a[k - 1, k], a[kp, k] = a[kp, k], a[k - 1, k]
            if kstep == 1:
                r1 = 1.0 / a[k, k]
                x = a[:k, k].copy()
                for j in range(k):
                    a[: j + 1, j] -= r1 * x[j] * x[: j + 1]
                a[:k, k] *= r1
            elif k > 1:
                d12 = a[k - 1, k]
                d22 = a[k - 1, k - 1] / d12
                d11 = a[k, k] / d12
                t = 1.0 / (d11 * d22 - 1.0)
                d12 = t / d12
                for j in range(k - 2, -1, -1):
                    wkm1 = d12 * (d11 * a[j, k - 1] - a[j, k])
                    wk = d12 * (d22 * a[j, k] - a[j, k - 1])
                    a[: j + 1, j] -= a[: j + 1, k] * wk + a[: j + 1, k - 1] * wkm1
                    a[j, k] = wk
                    a[j, k - 1] = wkm1
        k -= kstep
    diag = np.diagonal(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where((diag < _LOW_VALUE) | ~np.isfinite(diag), _LOG_LOW_VALUE, np.log(diag))
    return float(logs.sum() * 0.5)


def _cox_reid_adjustment(design: FloatArray, w: FloatArray) -> FloatArray:
    """Half log-det of XᵀWX per gene as edgeR's ``adj_coxreid::compute`` gets it."""
    p = design.shape[1]
    if p == 1:
        return np.log(np.abs(w.sum(axis=1))) / 2
    a = _xtwx(design, w)
    m = a.shape[0]
    alpha = (1 + math.sqrt(17.0)) / 8
    simple = np.ones(m, dtype=bool)
    # Vectorised dsytf2 for genes that only take 1×1 pivots without interchanges (the
    # usual case for XᵀWX); the others are redone one by one with full pivoting.
    for k in range(p - 1, -1, -1):
        absakk = np.abs(a[:, k, k])
        colmax = np.abs(a[:, :k, k]).max(axis=1) if k > 0 else np.zeros(m)
        singular = (np.maximum(absakk, colmax) == 0) | np.isnan(absakk)
        simple &= singular | (absakk >= alpha * colmax)
        if k == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = np.where(singular, 0.0, 1.0 / a[:, k, k])
        x = a[:, :k, k].copy()
        a[:, :k, :k] -= r1[:, None, None] * x[:, :, None] * x[:, None, :]
        a[:, :k, k] = np.where(singular[:, None], a[:, :k, k], x * r1[:, None])
    diag = np.diagonal(a, axis1=1, axis2=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where((diag < _LOW_VALUE) | ~np.isfinite(diag), _LOG_LOW_VALUE, np.log(diag))
    out = logs.sum(axis=1) * 0.5
    if not simple.all():
        full = _xtwx(design, w[~simple])
        out[~simple] = [_dsytf2_upper_logdiag(mat) for mat in full]
    return out


def _nb_loglik(
    y: FloatArray, mu: FloatArray, r: FloatArray, lgamma_yr: FloatArray, lgamma_y1: FloatArray
) -> FloatArray:
    """The NB log-likelihood of each cell, C++ ``compute_apl``'s terms left to right.

    ``r`` is ``1 / dispersion``; ``lgamma_yr`` and ``lgamma_y1`` are ``lgamma(y + r)``
    and ``lgamma(y + 1)``, which the callers take from tables where they can.
    """
    logmur = np.log(mu + r)
    nb = y * np.log(mu)
    nb -= y * logmur
    nb += r * np.log(r)
    logmur *= r
    nb -= logmur
    nb += lgamma_yr
    nb -= lgamma_y1
    nb -= gammaln(r)
    return nb


class _AplData:
    """The dispersion-free parts of ``adjustedProfileLik`` for one (y, design, offset).

    edgeR evaluates the APL of the same counts, design and offsets at many dispersions:
    about a dozen in Brent's search for the common dispersion and 11 on the tagwise grid.
    Computed once here: ``lgamma(y + 1)``, the one-way layout's groups with their
    starting values and the tables that turn ``lgamma(y + 1/phi)`` into look-ups (the
    same doubles as computing it). Each evaluation starts the one-group Newton-Raphson
    from the previous evaluation's solution rather than edgeR's Poisson start: it
    converges to the same root (``|step| < 1e-10``, quadratic convergence) in fewer
    iterations, so the APL differs from a cold start only by rounding, about 1e-13
    relative; the row sums of the iterations use matrix-vector products for the same
    reason and with the same effect.

    Parameters
    ----------
    y, offset : ndarray, genes × samples
    design : ndarray, samples × coefficients
    threads : int
        Gene blocks evaluated in parallel (the values do not depend on it).
    """

    def __init__(
        self, y: FloatArray, design: FloatArray, offset: FloatArray, threads: int = 1
    ) -> None:
        self.threads = threads
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.design = design
        self.offset = np.ascontiguousarray(offset, dtype=np.float64)
        ngenes, nlibs = self.y.shape
        self.blocks = gene_blocks(ngenes, nlibs)
        self.codes = design_as_factor(design)
        ngroups = int(self.codes.max()) + 1 if nlibs else 0
        self.oneway = ngroups == design.shape[1]
        self.group_y: list[FloatArray] = []
        self.group_offset: list[FloatArray] = []
        self.group_start: list[FloatArray] = []
        if self.oneway:
            for g in range(ngroups):
                cols = np.flatnonzero(self.codes == g)
                yg, og = self.y[:, cols], self.offset[:, cols]
                self.group_y.append(yg)
                self.group_offset.append(og)
                self.group_start.append(_one_group_start(yg, og))
        # Per-gene dispersions: lgamma(y + r) is computed once per distinct count of a gene
        # (filled on first use, per block: see _distinct_counts).
        self.distinct: dict[int, tuple[FloatArray, NDArray[np.intp], NDArray[np.intp]]] = {}
        # Integer counts below this index lgamma(y + r) tables (common dispersions).
        self.table_size = 0
        if self.y.size and np.array_equal(self.y, np.floor(self.y)) and self.y.min() >= 0:
            self.table_size = int(min(self.y.max(), _LGAMMA_TABLE - 1)) + 1
            self.table_index = np.minimum(self.y, self.table_size - 1).astype(np.intp)
        if self.table_size:
            self.lgamma_y1 = lgamma_counts(self.y)
        else:
            self.lgamma_y1 = gammaln(self.y + 1)

    def __call__(self, dispersion: float | FloatArray) -> FloatArray:
        """APL of every gene at one dispersion (scalar or per gene)."""
        return self.evaluate([dispersion])[:, 0]

    def evaluate(self, dispersions: list[float | FloatArray]) -> FloatArray:
        """APL of every gene (rows) at each dispersion (columns; scalar or per gene).

        Blocks of genes are the outer loop, so a block's counts stay in cache across the
        dispersions.
        """
        ngenes = self.y.shape[0]
        disps = [np.broadcast_to(np.asarray(d, dtype=np.float64), (ngenes,)) for d in dispersions]
        out = np.empty((ngenes, len(disps)))
        if any(np.any(d <= 0) or not np.all(np.isfinite(d)) for d in disps):
            # Zero dispersions take edgeR's Poisson branches: use the general code.
            for k, d in enumerate(disps):
                out[:, k] = _apl_matrices(
                    self.y,
                    self.design,
                    np.repeat(d[:, None], self.y.shape[1], axis=1),
                    self.offset,
                    True,
                )
            return out
        tables: list[FloatArray | None] = []
        for disp in dispersions:
            if np.ndim(disp) == 0 and self.table_size:
                # One dispersion for all genes: lgamma(k + r) for k = 0, 1, ... is looked up
                # (the same double as lgamma(y + r) for y == k).
                r = 1 / np.float64(disp)
                tables.append(gammaln(np.arange(self.table_size, dtype=np.float64) + r))
            else:
                tables.append(None)

        def block(rows: slice) -> None:
            for k, d in enumerate(disps):
                out[rows, k] = self._block(rows, d[rows], tables[k])

        map_blocks(block, self.blocks, self.threads)
        return out

    def _block(self, rows: slice, disp: FloatArray, table: FloatArray | None) -> FloatArray:
        """APL for the genes ``rows`` (``adjustedProfileLik`` with ``adjust=TRUE``)."""
        yb, ob = self.y[rows], self.offset[rows]
        d = disp[:, None]
        if self.oneway:
            beta = np.empty((yb.shape[0], len(self.group_y)))
            for g, (yg, og, start) in enumerate(
                zip(self.group_y, self.group_offset, self.group_start, strict=True)
            ):
                beta[:, g] = _one_group_newton(yg[rows], og[rows], d, start[rows], 50, 1e-10)
                start[rows] = beta[:, g]
            np.maximum(beta, -1e8, out=beta)
            mu = ob + beta[:, self.codes]
            np.exp(mu, out=mu)
        else:
            disp_matrix = np.repeat(d, yb.shape[1], axis=1)
            _, mu, _, _, _ = mglm_levenberg(yb, self.design, disp_matrix, ob, maxit=250)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 1 / d
            if table is None:
                values, gene, where = self._distinct_counts(rows)
                lgamma_yr = gammaln(values + r[gene, 0])[where]
            else:
                lgamma_yr = table[self.table_index[rows]]
                beyond = yb >= self.table_size
                if beyond.any():
                    lgamma_yr[beyond] = gammaln(yb[beyond] + r[0, 0])
            nb = _nb_loglik(yb, mu, r, lgamma_yr, self.lgamma_y1[rows])
            nb[mu == 0] = 0.0
            apl = nb.sum(axis=1)
            w = d * mu
            w += 1
            np.divide(mu, w, out=w)
        return apl - _cox_reid_adjustment(self.design, w)

    def _distinct_counts(
        self, rows: slice
    ) -> tuple[FloatArray, NDArray[np.intp], NDArray[np.intp]]:
        """Distinct counts of each gene in ``rows``: (values, their gene, cell → index).

        A gene's counts repeat across samples (zeros, small counts), so evaluating
        ``lgamma(y + r)`` once per distinct (gene, count) and scattering it back saves
        about half of the lgamma calls on the tagwise grid; the values are the same.
        """
        key = rows.start
        if key not in self.distinct:
            yb = self.y[rows]
            order = np.argsort(yb, axis=1, kind="stable")
            ranked = np.take_along_axis(yb, order, axis=1)
            first = np.ones(ranked.shape, dtype=bool)
            first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
            ids = np.cumsum(first.ravel()).reshape(ranked.shape) - 1
            where = np.empty(ranked.shape, dtype=np.intp)
            np.put_along_axis(where, order, ids, axis=1)
            gene = np.repeat(np.arange(yb.shape[0]), first.sum(axis=1))
            self.distinct[key] = (ranked[first], gene, where)
        return self.distinct[key]


def adjusted_profile_lik(
    dispersion: ArrayLike,
    y: ArrayLike,
    design: ArrayLike | None,
    offset: ArrayLike | None,
    adjust: bool = True,
) -> FloatArray:
    """Cox-Reid adjusted profile log-likelihood per gene, edgeR ``adjustedProfileLik``.

    Reproduces C++ ``compute_apl``: samples with a fitted mean of exactly 0 add nothing to
    the log-likelihood and get working weight 0 (checked against edgeR 3.40.2 on genes
    that are zero in a whole group).
    """
    yy, x, disp, off = _prepare(y, design, dispersion, offset)
    if adjust and yy.shape[1] and np.all(disp == disp[:, :1]):
        # One dispersion per gene (edgeR's usual call): the blocked evaluation.
        return _AplData(yy, x, off)(disp[:, 0])
    return _apl_matrices(yy, x, disp, off, adjust)


def _apl_matrices(
    yy: FloatArray, x: FloatArray, disp: FloatArray, off: FloatArray, adjust: bool
) -> FloatArray:
    """:func:`adjusted_profile_lik` on full genes × samples matrices (any dispersions)."""
    _, mu, _ = _fit_unshrunk(yy, x, disp, off)
    nonzero = mu != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1 / disp
        lgamma_y1 = gammaln(yy + 1)
        nb = _nb_loglik(yy, mu, r, gammaln(yy + r), lgamma_y1)
        pois = yy * np.log(mu) - mu - lgamma_y1
        loglik = np.where(disp > 0, nb, pois)
    apl = np.where(nonzero, loglik, 0.0).sum(axis=1)
    if not adjust:
        return apl
    with np.errstate(divide="ignore", invalid="ignore"):
        w = mu / (1 + disp * mu)
    return apl - _cox_reid_adjustment(x, w)


# --------------------------------------------------------------------- optimisers


def brent_fmin(f: Callable[[float], float], ax: float, bx: float, tol: float) -> float:
    """Minimise ``f`` on ``[ax, bx]``: exact port of R's ``Brent_fmin`` (``optimize``)."""
    c = (3.0 - math.sqrt(5.0)) * 0.5
    eps = math.sqrt(np.finfo(float).eps)
    a, b = ax, bx
    v = a + c * (b - a)
    w = x = v
    d = e = 0.0
    fx = f(x)
    fv = fw = fx
    tol3 = tol / 3.0
    while True:
        xm = (a + b) * 0.5
        tol1 = eps * abs(x) + tol3
        t2 = tol1 * 2.0
        if abs(x - xm) <= t2 - (b - a) * 0.5:
            break
        p = q = r = 0.0
        if abs(e) > tol1:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = (q - r) * 2.0
            if q > 0.0:
                p = -p
            else:
                q = -q
            r = e
            e = d
        if abs(p) >= abs(q * 0.5 * r) or p <= q * (a - x) or p >= q * (b - x):
            e = b - x if x < xm else a - x
            d = c * e
        else:
            d = p / q
            u = x + d
            if not (u - a >= t2 and b - u >= t2):
                d = tol1
                if x >= xm:
                    d = -d
        if abs(d) >= tol1:
            u = x + d
        elif d > 0.0:
            u = x + tol1
        else:
            u = x - tol1
        fu = f(u)
        if fx <= fu:
            if u < x:
                a = u
            else:
                b = u
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, fv = w, fw
            w, fw = x, fx
            x, fx = u, fu
        elif fu <= fw or w == x:
            v, fv = w, fw
            w, fw = u, fu
        elif fu <= fv or v == x or v == w:
            v, fv = u, fu
    return x


def _fmm_spline(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Forsythe-Malcolm-Moler cubic spline coefficients (R ``fmm_spline``), row-wise."""
    n = x.shape[0]
    m = y.shape[0]
    b = np.zeros((m, n))
    c = np.zeros((m, n))
    d = np.zeros((m, n))
    if n < 3:
        t = y[:, 1] - y[:, 0]
        b[:, 0] = t / (x[1] - x[0])
        b[:, 1] = b[:, 0]
        return b, c, d
    nm1 = n - 1
    # 0-based transcription of the 1-based C code.
    d[:, 0] = x[1] - x[0]
    c[:, 1] = (y[:, 1] - y[:, 0]) / d[:, 0]
    for i in range(1, nm1):
        d[:, i] = x[i + 1] - x[i]
        b[:, i] = 2.0 * (d[:, i - 1] + d[:, i])
        c[:, i + 1] = (y[:, i + 1] - y[:, i]) / d[:, i]
        c[:, i] = c[:, i + 1] - c[:, i]
    b[:, 0] = -d[:, 0]
    b[:, nm1] = -d[:, n - 2]
    c[:, 0] = 0.0
    c[:, nm1] = 0.0
    if n > 3:
        c[:, 0] = c[:, 2] / (x[3] - x[1]) - c[:, 1] / (x[2] - x[0])
        c[:, nm1] = c[:, n - 2] / (x[nm1] - x[n - 3]) - c[:, n - 3] / (x[n - 2] - x[n - 4])
        c[:, 0] = c[:, 0] * d[:, 0] * d[:, 0] / (x[3] - x[0])
        c[:, nm1] = -c[:, nm1] * d[:, n - 2] * d[:, n - 2] / (x[nm1] - x[n - 4])
    for i in range(1, n):
        t = d[:, i - 1] / b[:, i - 1]
        b[:, i] = b[:, i] - t * d[:, i - 1]
        c[:, i] = c[:, i] - t * c[:, i - 1]
    c[:, nm1] = c[:, nm1] / b[:, nm1]
    for i in range(n - 2, -1, -1):
        c[:, i] = (c[:, i] - d[:, i] * c[:, i + 1]) / b[:, i]
    b[:, nm1] = (y[:, nm1] - y[:, n - 2]) / d[:, n - 2] + d[:, n - 2] * (
        c[:, n - 2] + 2.0 * c[:, nm1]
    )
    for i in range(nm1):
        b[:, i] = (y[:, i + 1] - y[:, i]) / d[:, i] - d[:, i] * (c[:, i + 1] + 2.0 * c[:, i])
        d[:, i] = (c[:, i + 1] - c[:, i]) / d[:, i]
        c[:, i] = 3.0 * c[:, i]
    c[:, nm1] = 3.0 * c[:, nm1]
    d[:, nm1] = d[:, n - 2]
    return b, c, d


def maximize_interpolant(x: ArrayLike, y: ArrayLike) -> FloatArray:
    """Row-wise maximiser of the spline through ``(x, y[i])``, edgeR ``maximizeInterpolant``.

    Ports C++ ``interpolator::find_max``: an FMM cubic spline, then the stationary points
    of the two segments next to the best grid point.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if xs.shape[0] != ys.shape[1]:
        raise InputError("number of columns must equal number of spline points")
    if np.any(np.diff(xs) <= 0):
        raise InputError("spline points must be unique and sorted")
    m, n = ys.shape
    b, c, d = _fmm_spline(xs, ys)
    at = np.argmax(ys, axis=1)
    rows = np.arange(m)
    maxed = ys[rows, at].copy()
    x_max = xs[at].copy()

    def segment(seg: NDArray[np.intp], valid: NDArray[np.bool_]) -> None:
        segc = np.where(valid, seg, 0)
        sd, sc, sb = d[rows, segc], c[rows, segc], b[rows, segc]
        qa, qb, qc = 3 * sd, 2 * sc, sb
        with np.errstate(divide="ignore", invalid="ignore"):
            back = qb * qb - 4 * qa * qc
            solvable = back >= 0
            front = -qb / (2 * qa)
            sol = front - np.sqrt(np.where(solvable, back, 0.0)) / (2 * qa)
            width = xs[np.minimum(segc + 1, n - 1)] - xs[segc]
            inside = valid & solvable & (sol > 0) & (sol < width)
            temp = ((sd * sol + sc) * sol + sb) * sol + ys[rows, segc]
        better = inside & (temp > maxed)
        maxed[better] = temp[better]
        x_max[better] = sol[better] + xs[segc[better]]

    segment(at - 1, at > 0)
    segment(at, at < n - 1)
    return x_max


# --------------------------------------------------------------------- dispersions


def _default_design(nlibs: int, design: ArrayLike | None) -> FloatArray:
    if design is None:
        return np.ones((nlibs, 1))
    return np.asarray(design, dtype=np.float64).reshape(nlibs, -1)


def estimate_glm_common_disp(
    y: ArrayLike,
    design: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    interval: tuple[float, float] = (0.0, 4.0),
    tol: float = 1e-5,
    min_row_sum: float = 5,
    subset: int | None = 10000,
    threads: int = 1,
) -> float:
    """Common dispersion by Cox-Reid APL, edgeR 3.40 ``estimateGLMCommonDisp.default``.

    Calls ``dispCoxReid``: genes with row sum < ``min_row_sum`` are dropped, then R's
    ``optimize`` (Brent ``fmin``, ``tol = 1e-5``) maximises the summed APL over
    ``dispersion^(1/4)`` in ``interval^(1/4)``. The ``systematicSubset`` step is not
    ported: ``dispCoxReid`` only applies it when ``subset <= ngenes/2`` (genes passing the
    row-sum filter), which raises ``NotImplementedError`` here; ComBat-seq passes
    ``subset = nrow(counts)``, i.e. ``subset=None``, which never subsets.

    Parameters
    ----------
    y : array_like, genes × samples
    design : array_like, samples × coefficients, optional
    offset : per-sample vector or genes × samples matrix, optional
        ``log(colSums(y))`` when None.
    interval, tol, min_row_sum, subset
        As edgeR's (``subset=None``: no subsetting).
    threads : int
        Gene blocks evaluated in parallel (the result does not depend on it).

    Returns
    -------
    float
        The dispersion, or NaN when the design leaves no residual degrees of freedom.
    """
    yy = np.asarray(y, dtype=np.float64)
    x = _default_design(yy.shape[1], design)
    if x.shape[1] >= yy.shape[1]:
        return float("nan")
    off = np.log(yy.sum(axis=0)) if offset is None else np.asarray(offset, dtype=np.float64)
    off = _as_matrix(off, yy.shape, byrow=True, what="offset")
    keep = yy.sum(axis=1) >= min_row_sum
    yy, off = yy[keep], off[keep]
    if yy.shape[0] < 1:
        raise InputError("no data rows with required number of counts")
    if subset is not None and subset <= yy.shape[0] / 2:
        raise NotImplementedError(
            f"systematicSubset (subset={subset} of {yy.shape[0]} genes) is not ported; "
            "pass subset=None"
        )

    apl = _AplData(yy, x, off, threads)

    def negative_total(par: float) -> float:
        return -float(np.sum(apl(float(_r_pow(par, 4.0)))))

    lo, hi = _r_pow(np.array(interval), 0.25)
    best = brent_fmin(negative_total, float(lo), float(hi), tol)
    return float(_r_pow(best, 4.0))


def estimate_glm_tagwise_disp(
    y: ArrayLike,
    design: ArrayLike | None,
    dispersion: ArrayLike,
    offset: ArrayLike | None = None,
    prior_df: float = 0.0,
    min_row_sum: float = 5,
    grid_npts: int = 11,
    grid_range: tuple[float, float] = (-6.0, 6.0),
    threads: int = 1,
) -> FloatArray:
    """Tagwise dispersions, edgeR 3.40 ``estimateGLMTagwiseDisp.default`` with ``prior.df=0``.

    Runs ``dispCoxReidInterpolateTagwise``: genes with row sum < ``min_row_sum`` keep the
    starting dispersion; for the others the APL is evaluated at
    ``dispersion * 2^seq(-6, 6, length=11)`` and the spline maximiser is taken. With
    ``prior.df = 0`` the trended moving-average smoothing has weight 0, so it is skipped;
    other ``prior_df`` values raise ``NotImplementedError``. ``threads`` gene blocks are
    evaluated in parallel (the result does not depend on it).
    """
    if prior_df != 0:
        raise NotImplementedError("only prior_df=0 (as ComBat-seq uses) is ported")
    yy = np.asarray(y, dtype=np.float64)
    ntags, nlibs = yy.shape
    if ntags == 0:
        return np.zeros(0)
    x = _default_design(nlibs, design)
    if x.shape[1] >= nlibs:
        return np.full(ntags, np.nan)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InputError("design matrix must be full column rank")
    off = np.log(yy.sum(axis=0)) if offset is None else np.asarray(offset, dtype=np.float64)
    off = _as_matrix(off, yy.shape, byrow=True, what="offset")
    disp = _as_matrix(dispersion, (ntags, 1), byrow=False, what="dispersion")[:, 0].copy()
    ok = yy.sum(axis=1) >= min_row_sum
    if not ok.all():
        if ok.any():
            disp[ok] = _tagwise_grid(yy[ok], x, off[ok], disp[ok], grid_npts, grid_range, threads)
        return disp
    return _tagwise_grid(yy, x, off, disp, grid_npts, grid_range, threads)


def _tagwise_grid(
    y: FloatArray,
    design: FloatArray,
    offset: FloatArray,
    disp: FloatArray,
    grid_npts: int,
    grid_range: tuple[float, float],
    threads: int = 1,
) -> FloatArray:
    pts = np.linspace(grid_range[0], grid_range[1], grid_npts)
    apl = _AplData(y, design, offset, threads).evaluate([disp * _r_pow(2.0, pt) for pt in pts])
    best = maximize_interpolant(pts, apl)
    return disp * _pow2(best)


def _pow2(e: FloatArray) -> FloatArray:
    """``2^e`` elementwise as R computes it (``powl`` rounded to double)."""
    base = np.full(e.shape, 2.0, dtype=np.longdouble)
    return np.asarray(np.power(base, e.astype(np.longdouble)), dtype=np.float64)
