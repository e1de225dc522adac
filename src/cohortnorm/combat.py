"""Empirical-Bayes batch correction of continuous expression data (ComBat).

Reproduces sva 3.46.0 ``ComBat(dat, batch, mod, par.prior, mean.only, ref.batch)``
number for number (docs/methods.md §5), with three kinds of departure, all reported in
:attr:`CombatResult.messages` or as :class:`~cohortnorm.errors.InputError`:

* where sva stops with a terse error (confounded design, a single batch, a gene with
  fewer than two values in a batch, ...) we raise ``InputError`` naming the covariate,
  batch or gene and what to change;
* where sva silently does something surprising (missing values switch *every* gene to
  another variance estimator; the non-parametric prior can underflow to NaN) the result
  is the same as sva's but a message says so;
* the reference batch's own shrinkage step is skipped, because sva overwrites its result
  (``gamma.star = 0``, ``delta.star = 1``) and its ``it.sol`` only iterates on rounding
  noise there (the ref batch's ``gamma.hat`` is ~1e-17), which could fail to converge.

Memory: the data are processed in gene blocks in two passes (fit and sufficient
statistics; then adjustment), so beyond the input and the output only a block of
temporaries is alive. The shrinkage steps only need per-gene, per-batch sufficient
statistics of the standardised data ``s`` (count ``n``, mean ``m`` and centred sum of
squares ``S``), because ``sum((s - g)^2) = S + n (m - g)^2`` exactly; this centred form
is also numerically safer than ``sum(s^2) - 2 g sum(s) + n g^2``.

Underflow in the non-parametric prior: sva evaluates
``LH_j = (2π d_j)^(-n/2) exp(-Σ(x - g_j)²/(2 d_j))`` in linear space. When every ``LH_j``
of a gene underflows to 0 (large batches, outlying genes) sva returns NaN for that gene's
whole batch, and when the largest ``LH_j`` is subnormal sva's weights lose precision. A
log-sum-exp evaluation would give finite, more accurate numbers there, i.e. *different*
numbers from sva, so :func:`combat` evaluates in linear space like sva (same NaNs, same
values to rounding) and adds a message counting the NaN genes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cohortnorm.blocks import (
    BLOCK_CELLS,
    CACHE_BLOCK_CELLS,
    available_cpus,
    cell_slices,
    slices,
)
from cohortnorm.errors import InputError
from cohortnorm.model_matrix import (
    batch_factor,
    check_confounding,
    check_residual_df,
    design_column_names,
    design_matrix,
    factor_levels,
)

__all__ = [
    "CombatResult",
    "check_residual_df",
    "combat",
    "design_column_names",
    "design_matrix",
    "factor_levels",
]

# sva it.sol convergence threshold on the (signed) relative change.
_CONV = 1e-4


@dataclass
class CombatResult:
    """Output of :func:`combat`.

    Attributes
    ----------
    adjusted
        Batch-corrected data, genes × samples, same order as the input.
    gamma_star, delta_star
        Shrunken additive and multiplicative batch effects, batches × genes. Columns of
        genes not adjusted (``zero_variance_genes``) are NaN.
    gamma_hat, delta_hat
        The per-batch least-squares estimates they were shrunk from (batches × genes,
        NaN for ``zero_variance_genes``). With a reference batch ``gamma_hat`` holds the
        reference batch's mean and the other batches' contrasts to it, as in sva.
    batch_levels
        Batch labels in the order of the rows above (sorted as R's ``factor`` sorts).
    zero_variance_genes
        Boolean mask of genes returned unchanged because they are constant within a batch.
    messages
        Notes for the user (what sva prints, and what sva does silently).
    """

    adjusted: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    gamma_hat: np.ndarray
    delta_hat: np.ndarray
    batch_levels: list[str]
    zero_variance_genes: np.ndarray
    messages: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- fitting


@dataclass
class _Model:
    design: np.ndarray  # samples × p, batch columns first
    n_batch: int
    batch_idx: np.ndarray  # sample → batch index
    n_per_batch: np.ndarray
    ref: int | None
    has_na: bool
    xtx: np.ndarray
    batch_design: np.ndarray
    btb: np.ndarray


def _ls_fit(block: np.ndarray, x: np.ndarray, xtx: np.ndarray) -> np.ndarray:
    """Coefficients (p × genes) of sva's ``solve(crossprod(X), tcrossprod(t(X), Y))``."""
    return np.linalg.solve(xtx, (block @ x).T)


def _ls_fit_na(block: np.ndarray, x: np.ndarray, gene_ids: np.ndarray, names: Sequence[str]):
    """Per-gene fit on the non-missing values: sva ``Beta.NA``, vectorised over genes."""
    ok = ~np.isnan(block)
    y0 = np.where(ok, block, 0.0)
    w = ok.astype(float)
    xtwx = np.einsum("gk,kp,kq->gpq", w, x, x, optimize=True)
    xtwy = (y0 @ x)[..., None]
    ranks = np.linalg.matrix_rank(xtwx, hermitian=True)
    bad = np.flatnonzero(ranks < x.shape[1])
    if bad.size:
        shown = ", ".join(str(names[i]) for i in gene_ids[bad[:5]])
        raise InputError(
            f"{bad.size} gene(s) ({shown}{', ...' if bad.size > 5 else ''}) have too few "
            "non-missing values to fit batch and covariates (a batch or covariate level "
            "has no value left). Remove these genes or impute their missing values."
        )
    return np.linalg.solve(xtwx, xtwy)[..., 0].T


def _row_vars(x: np.ndarray) -> np.ndarray:
    """genefilter ``rowVars(x, na.rm=TRUE)``: centred, divisor n − 1, NA when n ≤ 1."""
    n = np.sum(~np.isnan(x), axis=1).astype(float)
    mean = np.nansum(x, axis=1) / n
    dev = x - mean[:, None]
    n[n <= 1] = np.nan
    return np.nansum(dev * dev, axis=1) / (n - 1)


def _standardise(
    block: np.ndarray, model: _Model, gene_ids: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise one gene block as sva does: ``s.data``, ``stand.mean``, ``var.pooled``."""
    x = model.design
    if model.has_na:
        beta = _ls_fit_na(block, x, gene_ids, names)
    else:
        beta = _ls_fit(block, x, model.xtx)
    # Products are taken as (p × genes)ᵀ @ (samples × p)ᵀ so that they come out genes ×
    # samples in row order, like the block: mixing orders makes every later pass strided.
    fitted = beta.T @ x.T
    if model.ref is not None:
        cols = model.batch_idx == model.ref
        resid = block[:, cols] - fitted[:, cols]
    else:
        resid = block - fitted
    del fitted
    if model.has_na:
        var_pooled = _row_vars(resid)
    else:
        var_pooled = (resid * resid) @ np.full(resid.shape[1], 1.0 / resid.shape[1])
    del resid
    s, stand_mean = standardise_given(block, beta, var_pooled, model)
    return s, stand_mean, var_pooled


def standardise_given(
    block: np.ndarray, beta: np.ndarray, var_pooled: np.ndarray, model: _Model
) -> tuple[np.ndarray, np.ndarray]:
    """sva's ``s.data`` and ``stand.mean`` of ``block`` from the fitted ``beta`` (p ×
    genes) and ``var.pooled``; ``model`` may hold only some samples' design rows
    (a sample shard, ``cohortnorm.sharded``) with the cohort's ``n_per_batch``."""
    x, nb = model.design, model.n_batch
    if model.ref is not None:
        grand_mean = beta[model.ref]
    else:
        grand_mean = (model.n_per_batch / model.n_per_batch.sum()) @ beta[:nb]
    stand_mean = beta[nb:].T @ x[:, nb:].T
    stand_mean += grand_mean[:, None]
    s = block - stand_mean
    s /= np.sqrt(var_pooled)[:, None]
    return s, stand_mean


# --------------------------------------------------------------------------- shrinkage


def _it_sol(
    n: np.ndarray,
    mean: np.ndarray,
    ss: np.ndarray,
    g_hat: np.ndarray,
    d_hat: np.ndarray,
    g_bar: float,
    t2: float,
    a: float,
    b: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """sva ``it.sol``: joint fixed-point iteration over all genes of one batch.

    The stopping rule is a maximum over *all* genes, so the genes are never split into
    blocks here. ``sum((s - g)^2)`` comes from the sufficient statistics.
    """
    g_old, d_old = g_hat, d_hat
    change = 1.0
    count = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        while change > _CONV:
            g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
            sum2 = ss + n * (mean - g_new) ** 2
            d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            # sva divides by the signed old value: negative ratios never block convergence.
            rel = np.concatenate([np.abs(g_new - g_old) / g_old, np.abs(d_new - d_old) / d_old])
            change = float(np.max(rel))
            g_old, d_old = g_new, d_new
            count += 1
            if math.isnan(change):
                raise InputError(
                    "Parametric ComBat failed: the shrinkage iteration produced NaN (sva "
                    "stops with 'missing value where TRUE/FALSE needed'). This happens "
                    "when a batch effect estimate is exactly 0 or a variance is NaN; try "
                    "parametric=False or remove constant/near-constant genes."
                )
    return g_new, d_new, count


def _int_eprior_rows(
    rows: slice,
    n: np.ndarray,
    mean: np.ndarray,
    ss: np.ndarray,
    g: np.ndarray,
    d: np.ndarray,
    prefactor: dict[float, np.ndarray],
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """sva ``int.eprior`` for the genes ``rows``; prior support is all other genes."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        # sum_k (x_ik - g_j)^2 = S_i + n_i (m_i - g_j)^2, in linear space like sva (see
        # combat() notes on underflow).
        lh = np.subtract.outer(mean[rows], g)
        np.square(lh, out=lh)
        n_rows = n[rows]
        lh *= n_rows[:, None]
        lh += ss[rows][:, None]
        lh /= 2.0 * d
        np.negative(lh, out=lh)
        np.exp(lh, out=lh)
        uniq = np.unique(n_rows)
        if uniq.size == 1:
            lh *= prefactor[float(uniq[0])]
        else:
            for value in uniq:
                sel = n_rows == value
                lh[sel] *= prefactor[float(value)]
        idx = np.arange(rows.start, rows.stop)
        lh[idx - rows.start, idx] = 0.0  # leave gene i out of its own prior
        sums = lh @ weights
        bad = np.flatnonzero(np.isnan(sums[:, 2]))
        if bad.size:
            # sva sets NaN likelihoods (Inf * 0) to 0; only those rows need the fix-up.
            sub = lh[bad]
            sub[np.isnan(sub)] = 0.0
            sums[bad] = sub @ weights
        return sums[:, 0] / sums[:, 2], sums[:, 1] / sums[:, 2]


def _int_eprior(
    n: np.ndarray,
    mean: np.ndarray,
    ss: np.ndarray,
    g: np.ndarray,
    d: np.ndarray,
    block_size: int | None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    genes = g.size
    if block_size is None:
        block_size = max(1, min(genes, BLOCK_CELLS // max(genes, 1)))
    with np.errstate(over="ignore", divide="ignore"):
        # sva: 1/(2*pi*d)^(n/2), kept in linear space so overflow/underflow match R.
        prefactor = {float(v): 1.0 / (2.0 * np.pi * d) ** (v / 2.0) for v in np.unique(n)}
    weights = np.column_stack([g, d, np.ones(genes)])
    g_star = np.empty(genes)
    d_star = np.empty(genes)
    gene_blocks = slices(genes, block_size)
    workers = min(len(gene_blocks), available_cpus() if threads is None else max(1, threads))

    def run(rows: slice) -> None:
        g_star[rows], d_star[rows] = _int_eprior_rows(rows, n, mean, ss, g, d, prefactor, weights)

    if workers > 1:
        # numpy releases the GIL in the ufuncs and BLAS calls that dominate here.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, gene_blocks))
    else:
        for rows in gene_blocks:
            run(rows)
    return g_star, d_star


# --------------------------------------------------------------------------- ComBat


def combat(
    data: np.ndarray,
    batch: Sequence[object],
    covariates: np.ndarray | None = None,
    parametric: bool = True,
    mean_only: bool = False,
    ref_batch: str | None = None,
    block_size: int | None = None,
    *,
    gene_names: Sequence[str] | None = None,
    covariate_names: Sequence[str] | None = None,
    threads: int | None = None,
) -> CombatResult:
    """Adjust continuous data (e.g. log-CPM) for batch with empirical Bayes ComBat.

    Reproduces sva 3.46.0 ``ComBat(dat, batch, mod, par.prior, prior.plots=FALSE,
    mean.only, ref.batch)`` (docs/methods.md §5), to ~1e-12 on the references.

    Parameters
    ----------
    data
        genes × samples, float. NaN marks a missing value (handled as sva does).
    batch
        One label per sample. Levels are sorted as R's ``factor()`` sorts them, unless a
        ``pandas.Categorical`` gives the order. Needs at least two levels.
    covariates
        The ``mod`` matrix, samples × p, as R's ``model.matrix`` gives it (with the
        intercept column; see :func:`design_matrix`). ``None`` for no covariates.
    parametric
        ``par.prior``: parametric priors (``it.sol``); ``False`` for the non-parametric
        ``int.eprior``, which here is vectorised in gene blocks (O(G²·n) arithmetic but
        no Python loop) and multi-threaded over blocks.
    mean_only
        Adjust only the batch means. Forced on when a batch has a single sample.
    ref_batch
        Label of a reference batch whose samples are returned unchanged and to which the
        other batches are adjusted.
    block_size
        Genes per block. Default: blocks of ~128k cells in the fit and adjustment, and
        ~32 MB block × genes temporaries in the non-parametric step.
    gene_names, covariate_names
        Only used to name genes/covariate columns in error messages.
    threads
        Worker threads of the non-parametric step (default: this process's CPUs).

    Returns
    -------
    CombatResult

    Raises
    ------
    InputError
        Shapes disagree; fewer than two batches (sva: a ``contrasts`` error); unknown
        ``ref_batch``; rank-deficient design (covariate confounded with batch, covariates
        confounded with each other, a covariate level only in one batch making up that
        batch); a gene with fewer than two non-missing values in a batch (sva: an NA
        variance and a ``BiocParallel`` error), or too few to fit the design; a NaN in
        the parametric iteration; non-finite covariates.
    """
    messages: list[str] = []
    dat, names, levels, batch_idx = _combat_input(data, batch, gene_names)
    n_genes, n_samples = dat.shape
    n_batch = len(levels)
    n_per_batch = np.bincount(batch_idx, minlength=n_batch)
    zero, has_nan = _zero_variance_genes(dat, batch_idx, n_per_batch, messages)
    keep = np.flatnonzero(~zero)
    mean_only = _mean_only(levels, n_per_batch, mean_only, messages)
    design, ref = _combat_design(
        levels, batch_idx, n_per_batch, covariates, covariate_names, ref_batch, messages
    )
    # Rows are gathered block by block (dat[keep[rows]]) rather than copying dat[keep].
    work_names = np.asarray(names, dtype=object)[keep]
    has_na = _check_missing_values(dat, keep, has_nan, work_names, levels, batch_idx, mean_only)
    if has_na:
        messages.append(_missing_values_message(dat, keep[has_nan[keep]]))
    batch_design = design[:, :n_batch]
    model = _Model(
        design=design,
        n_batch=n_batch,
        batch_idx=batch_idx,
        n_per_batch=n_per_batch,
        ref=ref,
        has_na=has_na,
        xtx=design.T @ design,
        batch_design=batch_design,
        btb=batch_design.T @ batch_design,
    )
    block = max(1, block_size or CACHE_BLOCK_CELLS // n_samples)
    # Without zero-variance genes the kept genes are all genes: a slice is a view, where an
    # index array would gather a copy of every block.
    genes = slice(None) if keep.size == n_genes else keep
    gamma_hat, cnt, mean, ss = _batch_statistics(dat, genes, keep.size, model, block, work_names)
    delta_hat, gamma_star, delta_star, nan_genes = _shrink(
        cnt, mean, ss, gamma_hat, ref, parametric, mean_only, block_size, threads
    )
    if nan_genes.any():
        shown = ", ".join(str(v) for v in work_names[nan_genes][:5])
        messages.append(
            f"Non-parametric ComBat: for {int(nan_genes.sum())} gene(s) ({shown}"
            f"{', ...' if nan_genes.sum() > 5 else ''}) the prior likelihood of every other "
            "gene underflowed to 0 in some batch, so (as in sva) all their adjusted values "
            "are NaN. Use parametric=True, or remove these outlying genes."
        )
    adjusted = _adjust(dat, zero, genes, model, gamma_star, delta_star, block, work_names)

    def widen(values: np.ndarray) -> np.ndarray:
        out = np.full((n_batch, n_genes), np.nan)
        out[:, keep] = values
        return out

    return CombatResult(
        adjusted=adjusted,
        gamma_star=widen(gamma_star),
        delta_star=widen(delta_star),
        gamma_hat=widen(gamma_hat),
        delta_hat=widen(delta_hat),
        batch_levels=levels,
        zero_variance_genes=zero,
        messages=messages,
    )


# The steps of combat(), in order.


def _combat_input(
    data: np.ndarray, batch: Sequence[object], gene_names: Sequence[str] | None
) -> tuple[np.ndarray, Sequence[str], list[str], np.ndarray]:
    """The data as float, gene names for messages, the batch levels and indices."""
    dat = np.asarray(data, dtype=float)
    if dat.ndim != 2:
        raise InputError(f"ComBat needs a genes × samples matrix; got {dat.ndim} dimension(s).")
    n_genes, n_samples = dat.shape
    names: Sequence[str] = (
        list(gene_names) if gene_names is not None else [f"row {i + 1}" for i in range(n_genes)]
    )
    # Block by block: a whole-matrix boolean temporary is an eighth of the data each time.
    if any(
        np.isinf(dat[rows]).any() for rows in cell_slices(n_genes, n_samples, CACHE_BLOCK_CELLS)
    ):
        raise InputError("The data contain infinite values; ComBat needs finite values or NaN.")
    levels, batch_idx = batch_factor(batch, n_samples)
    if len(levels) < 2:
        raise InputError(
            f"ComBat needs at least two batches; all samples are in batch {levels[0]!r} "
            "(sva stops with 'contrasts can be applied only to factors with 2 or more "
            "levels'). Nothing to correct: skip batch correction."
        )
    return dat, names, levels, batch_idx


def _mean_only(
    levels: list[str], n_per_batch: np.ndarray, mean_only: bool, messages: list[str]
) -> bool:
    """``mean.only``, forced on (as sva does) when a batch has a single sample."""
    if (n_per_batch == 1).any() and not mean_only:
        single = [levels[b] for b in np.flatnonzero(n_per_batch == 1)]
        messages.append(
            f"Batch(es) {', '.join(single)} have a single sample, so only batch means are "
            "adjusted (sva switches to mean.only=TRUE)."
        )
        return True
    if mean_only:
        messages.append("Using the 'mean only' version of ComBat.")
    return mean_only


def _zero_variance_genes(
    dat: np.ndarray, batch_idx: np.ndarray, n_per_batch: np.ndarray, messages: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """sva's zero-variance genes (constant in a batch of two or more), and genes with NaN.

    var() of a vector with NA is NA, which which() ignores, so genes with NaN are never
    flagged. Both masks come from one pass over the data.
    """
    n_genes, n_samples = dat.shape
    zero = np.zeros(n_genes, dtype=bool)
    has_nan = np.zeros(n_genes, dtype=bool)
    for rows in cell_slices(n_genes, n_samples, CACHE_BLOCK_CELLS):
        has_nan[rows] = np.isnan(dat[rows]).any(axis=1)
        for b in range(len(n_per_batch)):
            if n_per_batch[b] > 1:
                sub = dat[rows][:, batch_idx == b]
                zero[rows] |= sub.max(axis=1) == sub.min(axis=1)
    if zero.any():
        messages.append(
            f"Found {int(zero.sum())} genes with uniform expression within a single batch "
            "(all zeros); these will not be adjusted for batch."
        )
    if n_genes - int(zero.sum()) < 2:
        raise InputError(
            "Fewer than two genes vary within every batch; ComBat needs many genes to "
            "estimate its priors."
        )
    return zero, has_nan


def _combat_design(
    levels: list[str],
    batch_idx: np.ndarray,
    n_per_batch: np.ndarray,
    covariates: np.ndarray | None,
    covariate_names: Sequence[str] | None,
    ref_batch: str | None,
    messages: list[str],
) -> tuple[np.ndarray, int | None]:
    """sva's design ``cbind(batchmod, mod)`` without all-ones columns, checked for rank."""
    n_samples, n_batch = len(batch_idx), len(levels)
    batchmod = np.zeros((n_samples, n_batch))
    batchmod[np.arange(n_samples), batch_idx] = 1.0
    ref: int | None = None
    if ref_batch is not None:
        if str(ref_batch) not in levels:
            raise InputError(
                f"Reference batch {ref_batch!r} is not one of the batches ({', '.join(levels)})."
            )
        ref = levels.index(str(ref_batch))
        batchmod[:, ref] = 1.0
        messages.append(
            f"Using batch {levels[ref]} as the reference: its {n_per_batch[ref]} samples are "
            "returned unchanged and the other batches are adjusted towards it (the pooled "
            "variance is taken from the reference batch only)."
        )
    if covariates is None:
        mod = np.empty((n_samples, 0))
    else:
        mod = np.asarray(covariates, dtype=float)
        if mod.ndim == 1:
            mod = mod[:, None]
        if mod.shape[0] != n_samples:
            raise InputError(
                f"The covariate matrix has {mod.shape[0]} rows but the data have "
                f"{n_samples} samples; give one row per sample, in column order."
            )
        if not np.isfinite(mod).all():
            raise InputError("The covariate matrix contains missing or infinite values.")
    cov_labels = (
        list(covariate_names)
        if covariate_names is not None
        else [f"covariate column {k + 1}" for k in range(mod.shape[1])]
    )
    design = np.column_stack([batchmod, mod])
    labels = [f"batch {level}" for level in levels] + cov_labels
    all_ones = np.all(design == 1.0, axis=0)
    if ref is not None:
        all_ones[ref] = False
    design = design[:, ~all_ones]
    labels = [label for label, drop in zip(labels, all_ones, strict=True) if not drop]
    check_confounding(design, n_batch, levels, batch_idx, labels[n_batch:], method="ComBat")
    if n_samples - design.shape[1] <= 0:
        check_residual_df(
            [levels[b] for b in batch_idx], design[:, n_batch:], covariate_names=labels[n_batch:]
        )
    return design, ref


def _check_missing_values(
    dat: np.ndarray,
    keep: np.ndarray,
    has_nan: np.ndarray,
    work_names: np.ndarray,
    levels: list[str],
    batch_idx: np.ndarray,
    mean_only: bool,
) -> bool:
    """Whether a kept gene has a missing value; refuse genes too sparse in a batch."""
    na_genes = has_nan[keep]
    if not na_genes.any():
        return False
    with_na = dat[keep[na_genes]]
    need = 1 if mean_only else 2
    for b in range(len(levels)):
        counts = np.sum(~np.isnan(with_na[:, batch_idx == b]), axis=1)
        bad = np.flatnonzero(counts < need)
        if bad.size:
            shown = ", ".join(str(v) for v in work_names[na_genes][bad[:5]])
            raise InputError(
                f"{bad.size} gene(s) ({shown}{', ...' if bad.size > 5 else ''}) have fewer "
                f"than {need} non-missing value(s) in batch {levels[b]}, so their batch "
                "variance is undefined (sva fails with a BiocParallel error). Remove these "
                "genes or impute their missing values."
            )
    return True


def _missing_values_message(dat: np.ndarray, genes_with_na: np.ndarray) -> str:
    return (
        f"Found {int(np.isnan(dat[genes_with_na]).sum())} missing values in "
        f"{int(genes_with_na.size)} genes. As sva does, every gene is then fitted on its "
        "non-missing values and the pooled variance becomes the centred variance with "
        "divisor n−1 (not the mean squared residual), for complete genes too. Missing values "
        "stay missing."
    )


def _batch_statistics(
    dat: np.ndarray,
    genes: slice | np.ndarray,
    n_keep: int,
    model: _Model,
    block: int,
    work_names: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pass 1: fit, standardise, and keep per-gene per-batch sufficient statistics of s.

    Returns ``gamma_hat`` and the count, mean and centred sum of squares of the
    standardised data per batch (each batches × kept genes).
    """
    n_batch, batch_idx = model.n_batch, model.batch_idx
    ids = np.arange(n_keep)
    gamma_hat = np.empty((n_batch, n_keep))
    cnt = np.empty((n_batch, n_keep))
    mean = np.empty((n_batch, n_keep))
    ss = np.empty((n_batch, n_keep))
    for rows in slices(n_keep, block):
        gene_rows = rows if isinstance(genes, slice) else genes[rows]
        s, _, _ = _standardise(dat[gene_rows], model, ids[rows], work_names)
        if model.has_na:
            gamma_hat[:, rows] = _ls_fit_na(s, model.batch_design, ids[rows], work_names)
        else:
            gamma_hat[:, rows] = _ls_fit(s, model.batch_design, model.btb)
        for b in range(n_batch):
            sb = s[:, batch_idx == b]
            if model.has_na:
                c = np.sum(~np.isnan(sb), axis=1).astype(float)
                m = np.nansum(sb, axis=1) / c
            else:  # the same sums without nansum's copy
                c = np.full(sb.shape[0], float(model.n_per_batch[b]))
                m = np.sum(sb, axis=1) / c
            dev = sb - m[:, None]
            dev *= dev
            cnt[b, rows], mean[b, rows] = c, m
            ss[b, rows] = np.nansum(dev, axis=1) if model.has_na else np.sum(dev, axis=1)
    return gamma_hat, cnt, mean, ss


def _shrink(
    cnt: np.ndarray,
    mean: np.ndarray,
    ss: np.ndarray,
    gamma_hat: np.ndarray,
    ref: int | None,
    parametric: bool,
    mean_only: bool,
    block_size: int | None,
    threads: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The priors and the empirical Bayes estimates: delta_hat, gamma*, delta*, NaN genes."""
    n_batch, n_keep = gamma_hat.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        # genefilter rowVars: NA (here NaN) when n <= 1.
        delta_hat = np.where(cnt > 1, ss / (cnt - 1), np.nan)
    if mean_only:
        delta_hat = np.ones_like(delta_hat)
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1, ddof=1)
    m_d = delta_hat.mean(axis=1)
    s2_d = delta_hat.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_prior = (2 * s2_d + m_d**2) / s2_d
        b_prior = (m_d * s2_d + m_d**3) / s2_d
    gamma_star = np.empty((n_batch, n_keep))
    delta_star = np.empty((n_batch, n_keep))
    nan_genes = np.zeros(n_keep, dtype=bool)
    for b in range(n_batch):
        if b == ref:
            # sva computes then overwrites these; see the module notes.
            gamma_star[b], delta_star[b] = 0.0, 1.0
            continue
        if parametric:
            if mean_only:
                gamma_star[b] = (t2[b] * gamma_hat[b] + gamma_bar[b]) / (t2[b] + 1.0)
                delta_star[b] = 1.0
            else:
                gamma_star[b], delta_star[b], _ = _it_sol(
                    cnt[b],
                    mean[b],
                    ss[b],
                    gamma_hat[b],
                    delta_hat[b],
                    gamma_bar[b],
                    t2[b],
                    a_prior[b],
                    b_prior[b],
                )
        else:
            gamma_star[b], delta_star[b] = _int_eprior(
                cnt[b], mean[b], ss[b], gamma_hat[b], delta_hat[b], block_size, threads
            )
            nan_genes |= np.isnan(gamma_star[b])
    return delta_hat, gamma_star, delta_star, nan_genes


def _adjust(
    dat: np.ndarray,
    zero: np.ndarray,
    genes: slice | np.ndarray,
    model: _Model,
    gamma_star: np.ndarray,
    delta_star: np.ndarray,
    block: int,
    work_names: np.ndarray,
) -> np.ndarray:
    """Pass 2: adjust. sva's expression, in its order of operations."""
    n_keep = gamma_star.shape[1]
    ids = np.arange(n_keep)
    # Every kept gene is overwritten below; only the others are copied now.
    adjusted = np.empty_like(dat)
    adjusted[zero] = dat[zero]
    sqrt_dstar = np.sqrt(delta_star)
    for rows in slices(n_keep, block):
        gene_rows = rows if isinstance(genes, slice) else genes[rows]
        block_data = dat[gene_rows]
        s, stand_mean, var_pooled = _standardise(block_data, model, ids[rows], work_names)
        adjusted[gene_rows] = adjust_standardised(
            s, stand_mean, var_pooled, gamma_star[:, rows], sqrt_dstar[:, rows], model, block_data
        )
    return adjusted


def adjust_standardised(
    s: np.ndarray,
    stand_mean: np.ndarray,
    var_pooled: np.ndarray,
    gamma_star: np.ndarray,
    sqrt_dstar: np.ndarray,
    model: _Model,
    block_data: np.ndarray,
) -> np.ndarray:
    """sva's ``bayesdata`` from the standardised ``s`` (overwritten), in sva's order of
    operations; the reference batch's samples are returned unchanged. ``model`` may
    hold only a sample shard's design rows."""
    s -= gamma_star.T @ model.batch_design.T
    s /= np.take(sqrt_dstar.T, model.batch_idx, axis=1)
    s *= np.sqrt(var_pooled)[:, None]
    s += stand_mean
    if model.ref is not None:
        cols = model.batch_idx == model.ref
        s[:, cols] = block_data[:, cols]
    return s
