"""ComBat-ref: reference-batch adjustment of RNA-seq counts (Zhang et al. 2024/2025).

Written from the published method (X. Zhang et al., "ComBat-ref: reference batch
adjustment for RNA-seq count data") and the project's algorithm notes; no code of the
authors' scripts is used. The method builds on ComBat-seq (:mod:`cohortnorm.combat_seq`,
whose edgeR pieces and negative-binomial quantile functions it reuses):

1. genes with no reads in some batch are set aside and returned unchanged;
2. each batch gets **one pooled dispersion**, edgeR's ``estimateGLMCommonDisp`` on that
   batch's samples (with the condition as design when the batch has residual degrees of
   freedom, else intercept only);
3. the **reference** is the batch with the smallest dispersion (the first on a tie); its
   counts are returned exactly as given;
4. a negative-binomial GLM ``~ batch + condition`` (edgeR ``glmFit``, ``prior.count =
   1e-4``, the reference as the batch baseline) gives the fitted means ``mu`` and the
   batch effects ``gamma_b`` relative to the reference;
5. every count of another batch is moved to the same quantile of the reference batch's
   distribution: ``qnbinom(pnbinom(y, mu, phi_b), mu·exp(-gamma_b), phi_ref)``, where
   ``mu`` is floored at 1e-4 and, for genes lower in batch b than in the reference
   (``gamma_b < -0.2``), the new mean is capped at the gene's largest fitted mean among
   the reference samples. A count whose CDF is within 1e-6 of 1 is kept.

With ``genewise_disp=True`` each batch's per-gene dispersions come from edgeR's
``estimateGLMTagwiseDisp`` (``prior.df = 0``) around its pooled value, when the batch has
residual degrees of freedom; otherwise the pooled value is used for every gene.

Differences from the authors' R script (``ComBat_ref``), decided here:

* **Batch labels do not matter.** The script moves the reference batch to the first
  position by comparing the labels with a number, which works only for labels ``1..k``;
  with other labels it keeps the first batch and attaches the dispersions to the wrong
  batches. This module always keeps the batch with the smallest dispersion, and equals the
  script's output when it is run with the labels recoded as ``1..k``
  (``as.integer(as.factor(batch))``).
* **A single condition gets an intercept.** For one condition (or ``full_mod=False``) the
  script's design keeps only the ``k-1`` batch indicators, with no intercept, so the
  reference batch's fitted mean is its library size and the output is meaningless (counts
  in the millions). Here the design is ``~ batch`` (intercept plus ``k-1`` indicators),
  the model the method describes. The per-batch dispersions and the choice of the
  reference are the same as the script's; the corrected counts differ from its output
  in this case, by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from cohortnorm.blocks import available_cpus
from cohortnorm.combat import check_residual_df
from cohortnorm.combat_seq import checked_counts, factor_codes, pnbinom, qnbinom
from cohortnorm.edger_glm import estimate_glm_common_disp, estimate_glm_tagwise_disp, glm_fit
from cohortnorm.errors import InputError
from cohortnorm.model_matrix import rank

FloatArray = NDArray[np.float64]

__all__ = ["CombatRefResult", "combat_ref"]

#: The script's floor on the fitted means before the quantile match.
_MU_FLOOR = 1e-4
#: Genes with ``gamma_b`` below this have their new mean capped at the reference's largest.
_CAP_BELOW = -0.2
#: A count whose CDF is this close to 1 is kept.
_P_TOL = 1e-6


@dataclass
class CombatRefResult:
    """Output of :func:`combat_ref`.

    Attributes
    ----------
    adjusted : ndarray of int64, genes × samples
        Corrected counts; the reference batch's columns and the set-aside genes are the
        input counts.
    params : DataFrame
        One row per batch (level order): ``batch``, ``n_samples``, ``dispersion`` (edgeR
        common dispersion of the batch), ``dispersion_design`` (``"condition"`` or
        ``"intercept"``), ``reference`` (True for the kept batch).
    reference : str
        The reference batch.
    gamma_hat : DataFrame, kept genes × other batches
        Batch effects relative to the reference (natural log, ``predFC``-shrunk with prior
        count 1e-4), columns named by batch.
    phi : DataFrame, kept genes × batches
        Dispersion used for each batch (its common value, or the genewise values).
    kept_genes : ndarray of bool, genes
        Genes adjusted (not all-zero within any batch).
    capped : dict of str to int
        Per non-reference batch, genes whose new mean was capped (``gamma_b < -0.2``).
    messages : list of str
        Progress lines, as the script prints them.
    """

    adjusted: NDArray[np.int64]
    params: pd.DataFrame
    reference: str
    gamma_hat: pd.DataFrame
    phi: pd.DataFrame
    kept_genes: NDArray[np.bool_]
    capped: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def _used(values: Sequence[object]) -> Sequence[object]:
    """A pandas Categorical (or categorical Series) without its unused categories."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Categorical(values).remove_unused_categories()
    if isinstance(values, pd.Categorical):
        return values.remove_unused_categories()
    return values


def _match_to_reference(
    counts: FloatArray,
    mu_old: FloatArray,
    phi_old: FloatArray,
    mu_new: FloatArray,
    phi_new: FloatArray,
) -> FloatArray:
    """Map each count to the same NB quantile of the reference distribution.

    ``p = pnbinom(y, 1/phi_old, mu_old)``; cells with ``|p - 1| < 1e-6`` keep ``y``, the
    others become ``qnbinom(p, 1/phi_new, mu_new)`` (R's left-continuous search, from
    :mod:`cohortnorm.combat_seq`). Zeros are mapped too. All arrays genes × samples.
    """
    size_old = 1 / phi_old
    size_new = 1 / phi_new
    p = pnbinom(counts, size_old, mu_old)
    move = ~(np.abs(p - 1) < _P_TOL)
    out = counts.copy()
    if not move.any():
        return out
    pm, sn, mn = p[move], size_new[move], mu_new[move]
    so, mo = size_old[move], mu_old[move]
    # Start at the count's standardised position in the new distribution (speed only).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.sqrt((mn + mn * mn / sn) / (mo + mo * mo / so))
        start = np.rint(mn + (counts[move] - mo) * scale)
    out[move] = qnbinom(pm, sn, mn, start, gammaln(sn))
    return out


def combat_ref(
    counts: ArrayLike,
    batch: Sequence[object],
    group: Sequence[object] | None = None,
    full_mod: bool = True,
    genewise_disp: bool = False,
    threads: int | None = None,
) -> CombatRefResult:
    """Adjust counts towards the least-dispersed batch, as published for ComBat-ref.

    Parameters
    ----------
    counts : array_like, genes × samples
        Non-negative integer counts (the workflow passes the filtered counts).
    batch : sequence
        Batch label per sample. Levels are sorted, as R's ``as.factor``, unless a pandas
        ``Categorical`` is given (its category order is kept). The labels never change
        which batch is the reference.
    group : sequence, optional
        Biological condition per sample; modelled (``~ 0 + group``) when ``full_mod`` and
        it has more than one level.
    full_mod : bool
        Include ``group`` in the model.
    genewise_disp : bool
        Per-gene dispersions (edgeR tagwise, ``prior.df = 0``) instead of one per batch.
    threads : int, optional
        Gene blocks processed in parallel (default: the CPUs this process may use); the
        result does not depend on it.

    Returns
    -------
    CombatRefResult

    Raises
    ------
    InputError
        Malformed counts, fewer than 2 batches, a batch with one sample, a condition
        confounded with batch, or a design without residual degrees of freedom.

    Notes
    -----
    Reproduces the authors' ``ComBat_ref`` run with batch labels ``1..k`` when there are
    at least two conditions; with a single condition the design has an intercept (see the
    module docstring), so the counts differ from the script's (which are meaningless).
    """
    # One function, over 120 lines: it follows the published ComBat-ref algorithm step by
    # step (checks, pooled dispersions per batch, reference choice, GLM fit, quantile
    # mapping), each step a call into combat_seq or edger_glm, so that the order of the
    # paper's steps is visible in one place.
    y = np.asarray(counts, dtype=np.float64)
    checked_counts(y, "ComBat-ref")
    ngenes, nsamples = y.shape
    if len(batch) != nsamples:
        raise InputError(f"batch has {len(batch)} labels for {nsamples} samples")
    # Unused categories of a Categorical are dropped, as R's droplevels would.
    bcode, blevels = factor_codes(_used(batch), "batch")
    n_batch = len(blevels)
    n_per = np.bincount(bcode, minlength=n_batch)
    small = [f"{lv} ({n})" for lv, n in zip(blevels, n_per, strict=True) if n <= 1]
    if small:
        raise InputError(
            f"ComBat-ref needs at least 2 samples per batch; batch {', '.join(small)} has "
            "fewer. Merge it with a similar batch or remove its samples."
        )
    if n_batch < 2:
        raise InputError(
            f"ComBat-ref needs at least 2 batches; all samples are in batch {blevels[0]}"
        )
    messages = [f"Found {n_batch} batches"]
    n_threads = available_cpus() if threads is None else max(1, int(threads))
    batches_ind = [np.flatnonzero(bcode == k) for k in range(n_batch)]

    keep = np.ones(ngenes, dtype=bool)
    for ind in batches_ind:
        keep &= np.any(y[:, ind] != 0, axis=1)
    yk = y[keep]

    glevels: list[str] = []
    gcode = np.zeros(nsamples, dtype=np.intp)
    if group is not None:
        if len(group) != nsamples:
            raise InputError(f"group has {len(group)} labels for {nsamples} samples")
        gcode, glevels = factor_codes(_used(group), "group")
    full = full_mod and len(glevels) > 1
    if full:
        messages.append("Using full model in ComBat-ref.")
        mod = np.zeros((nsamples, len(glevels)))
        mod[np.arange(nsamples), gcode] = 1.0
        mod_names = [f"group{lv}" for lv in glevels]
    else:
        messages.append("Using null model in ComBat-ref (intercept and batch).")
        mod = np.ones((nsamples, 1))
        mod_names = ["(Intercept)"]

    # Dispersion per batch. The script's rule: intercept only when the batch has no more
    # samples than the condition model has columns, or lacks a condition.
    messages.append("Estimating dispersions")
    n_mod = mod.shape[1] if full else 0
    common = np.empty(n_batch)
    disp_design: list[FloatArray | None] = []
    for k, ind in enumerate(batches_ind):
        mod_b = mod[ind]
        use = None if (n_per[k] <= n_mod or rank(mod_b) < mod.shape[1]) else mod_b
        disp_design.append(use)
        common[k] = estimate_glm_common_disp(yk[:, ind], use, subset=None, threads=n_threads)
        messages.append(f"Batch {blevels[k]} dispersion = {common[k]:.7g}")
    ref = int(np.argmin(common))
    messages.append(f"Reference batch: {blevels[ref]}")

    if genewise_disp:
        phi = np.empty((yk.shape[0], n_batch))
        for k, ind in enumerate(batches_ind):
            if disp_design[k] is None:
                phi[:, k] = common[k]
            else:
                phi[:, k] = estimate_glm_tagwise_disp(
                    yk[:, ind], disp_design[k], common[k], prior_df=0, threads=n_threads
                )
    else:
        phi = np.repeat(common[None, :], yk.shape[0], axis=0)

    # Design: the reference is the batch baseline; the others get indicators, in the
    # method's position order (the reference takes the first level's place and vice versa).
    order = list(range(n_batch))
    order[0], order[ref] = order[ref], order[0]
    others = order[1:]
    batch_cols = np.column_stack([(bcode == k).astype(float) for k in others])
    design = np.column_stack([batch_cols, mod])
    names = [f"batch{blevels[k]}" for k in others] + mod_names
    if rank(design) < design.shape[1]:
        raise InputError(
            "The condition is confounded with batch: some condition occurs in one batch only "
            f"and coincides with it (design columns {', '.join(names)}). ComBat-ref cannot "
            "separate the two; correct without the condition or collect a balanced design."
        )
    if design.shape[1] >= nsamples:
        # the group indicators span the intercept: one of them is the baseline
        check_residual_df(
            [blevels[b] for b in bcode],
            mod[:, 1:] if full else None,
            method="ComBat-ref",
            covariate_names=mod_names[1:] if full else None,
        )

    messages.append("Fitting the GLM model")
    offset = np.log(yk.sum(axis=0))
    fit = glm_fit(yk, design, phi[:, bcode], offset, prior_count=1e-4, threads=n_threads)
    gamma_hat = fit.coefficients[:, : len(others)]
    mu_hat = fit.fitted_values

    messages.append("Adjusting the data")
    adjusted_kept = yk.copy()
    ref_ind = batches_ind[ref]
    ref_max = mu_hat[:, ref_ind].max(axis=1)
    capped: dict[str, int] = {}
    for j, k in enumerate(others):
        ind = batches_ind[k]
        mu_old = np.maximum(mu_hat[:, ind], _MU_FLOOR)
        mu_new = mu_old * np.exp(-gamma_hat[:, j])[:, None]
        cap = gamma_hat[:, j] < _CAP_BELOW
        mu_new[cap] = np.minimum(mu_new[cap], ref_max[cap, None])
        capped[blevels[k]] = int(cap.sum())
        phi_old = np.repeat(phi[:, k][:, None], ind.size, axis=1)
        phi_new = np.repeat(phi[:, ref][:, None], ind.size, axis=1)
        adjusted_kept[:, ind] = _match_to_reference(yk[:, ind], mu_old, phi_old, mu_new, phi_new)
    adjusted = y.copy()
    adjusted[keep] = adjusted_kept

    params = pd.DataFrame(
        {
            "batch": blevels,
            "n_samples": n_per.astype(int),
            "dispersion": common,
            "dispersion_design": ["intercept" if d is None else "condition" for d in disp_design],
            "reference": [k == ref for k in range(n_batch)],
        }
    )
    return CombatRefResult(
        adjusted=adjusted.astype(np.int64),
        params=params,
        reference=blevels[ref],
        gamma_hat=pd.DataFrame(gamma_hat, columns=[blevels[k] for k in others]),
        phi=pd.DataFrame(phi, columns=blevels),
        kept_genes=keep,
        capped=capped,
        messages=messages,
    )
