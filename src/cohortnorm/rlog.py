"""DESeq2's regularized log transformation (``rlog``), number for number.

Reproduces ``rlog`` / ``rlogData`` of DESeq2 1.38.3 (Love, Huber & Anders 2014, Genome
Biology 15:550), without a supplied ``intercept``: the beta-prior variance estimated from
the data (``matchWeightedUpperQuantileForVariance``), then, per gene, a negative binomial
GLM with one intercept and one coefficient per sample, fitted by DESeq2's ridge-penalised
IRLS (C++ ``fitBeta``: QR form, deviance convergence ``betaTol = 1e-4``, ``maxit = 100``,
``minmu = 0.5``). The rlog value is the fitted log2 mean of each sample.

The dispersions are an input: DESeq2 uses the trend (``dispFit``, the fitted dispersion
function at each gene's ``baseMean``). ``blind=TRUE`` means the trend of the ``~1`` fit;
``blind=FALSE`` the trend of the design's fit. The rlog model itself does not depend on
the design, so both cases run through :func:`rlog` with the matching ``dispersions``.

The IRLS runs for all genes at once. The rlog design ``[1 | I]`` makes each penalised
normal-equation system an "arrow" matrix whose solution has a closed form, so each
iteration costs O(genes × samples) instead of a (samples + 1)² QR per gene; the iterates
are the same least-squares solutions DESeq2's QR computes, up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

from cohortnorm.errors import InputError

__all__ = [
    "RlogResult",
    "estimate_beta_prior_var",
    "rlog",
    "sparse_test",
    "weighted_quantile_hmisc",
]

_LOG2E = float(np.log2(np.exp(1.0)))
_LN2_SQ = float(np.log(2.0) ** 2)
_QNORM_0975 = 1.959963984540054  # qnorm(0.975) in R
_INTERCEPT_LAMBDA = 1e-6  # DESeq2's (almost flat) prior on the rlog intercept, log2 scale
_LARGE = 30.0  # fitBeta stops a gene whose |beta| (natural log) exceeds this


@dataclass
class RlogResult:
    """Output of :func:`rlog`.

    Attributes
    ----------
    values
        rlog values, genes × samples (log2 scale); all-zero genes are 0.
    beta_prior_var
        The beta-prior variance used (``attr(rld, "betaPriorVar")``).
    intercept
        Fitted intercept per gene, log2 scale (``mcols(rld)$rlogIntercept``); −inf for
        all-zero genes.
    iterations
        IRLS iterations per gene (``maxit`` for a gene stopped as diverging); 0 for
        all-zero genes.
    sparse_share
        :func:`sparse_test` of the normalised counts; DESeq2's ``rlog`` warns when it is
        above 0.1 (many genes dominated by one sample: VST is recommended instead).
    """

    values: np.ndarray | pd.DataFrame
    beta_prior_var: float
    intercept: np.ndarray
    iterations: np.ndarray
    sparse_share: float


def _row_means(x: np.ndarray) -> np.ndarray:
    # R's rowMeans accumulates in long double; so does this, then rounds once.
    return (np.sum(x, axis=1, dtype=np.longdouble) / x.shape[1]).astype(np.float64)


def _round15(v: float) -> float:
    # R's as.character() of a double keeps 15 significant digits
    return float(f"{v:.15g}")


def _round15_close(sorted_unique: np.ndarray) -> np.ndarray:
    """Values rounded to 15 significant digits where that can merge neighbours.

    Two values can share a 15-digit label only if they differ by less than 1e-13
    relative; only those are rounded here (exactly, through text), which keeps every
    merge of R's character table. The others are left as they are: they stay apart, and
    the caller rounds the one or two values it returns.
    """
    out = sorted_unique.copy()
    if out.size < 2:
        return out
    gap = np.diff(out)
    scale = np.maximum(np.abs(out[1:]), np.abs(out[:-1]))
    close = gap <= 1e-13 * scale
    marked = np.zeros(out.size, dtype=bool)
    marked[:-1] |= close
    marked[1:] |= close
    for i in np.flatnonzero(marked):
        out[i] = _round15(out[i])
    return out


def weighted_quantile_hmisc(x: np.ndarray, weights: np.ndarray, prob: float) -> float:
    """Weighted quantile as DESeq2's copy of Hmisc ``wtd.quantile(normwt=TRUE)``.

    Parameters
    ----------
    x
        Values.
    weights
        One weight per value; NA or zero weights drop the value.
    prob
        The probability, in [0, 1].

    Returns
    -------
    float
        The quantile, ``type = "quantile"``: weights rescaled to sum to the number of
        values, equal values merged, then linear interpolation between the values at the
        cumulative-weight positions ``floor(1 + (n − 1)·prob)`` and the next one.

    Notes
    -----
    When any two values are exactly equal, Hmisc merges them through a character table,
    which rounds **every** value to 15 significant digits; this is reproduced.
    """
    x = np.asarray(x, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    drop = np.isnan(w) | (w == 0)
    x, w = x[~drop], w[~drop]
    ok = ~np.isnan(x + w)
    x, w = x[ok], w[ok]
    n_values = len(x)
    if n_values == 0:
        raise InputError("No values with a non-zero weight to take a weighted quantile of.")
    w = (w * n_values) / float(np.sum(w, dtype=np.longdouble))
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    has_ties = n_values > 1 and bool(np.any(x[1:] == x[:-1]))
    if has_ties:
        # as.numeric(as.character(x)): every value to 15 significant digits, then equal
        # labels merged with their weights summed
        first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
        uniq = x[first]
        rounded = _round15_close(uniq)
        group = np.flatnonzero(np.r_[True, rounded[1:] != rounded[:-1]])
        sums = np.add.reduceat(w.astype(np.longdouble), first[group])
        x = rounded[group]
        w = sums.astype(np.float64)
    cum = np.cumsum(w.astype(np.longdouble)).astype(np.float64)
    total = float(np.sum(w, dtype=np.longdouble))
    pos = 1.0 + (total - 1.0) * prob
    low = max(np.floor(pos), 1.0)
    high = min(low + 1.0, total)
    frac = pos % 1.0

    def value_at(t: float) -> float:
        # approx(cumsum(w), x, method="constant", f=1, rule=2)
        if t < cum[0]:
            v = float(x[0])
        elif t > cum[-1]:
            v = float(x[-1])
        else:
            v = float(x[np.searchsorted(cum, t, side="left")])
        return _round15(v) if has_ties else v

    return (1.0 - frac) * value_at(low) + frac * value_at(high)


def estimate_beta_prior_var(
    normalized: np.ndarray, base_mean: np.ndarray, dispersions: np.ndarray
) -> float:
    """The rlog beta-prior variance, as ``rlogData`` estimates it.

    Parameters
    ----------
    normalized
        Normalised counts ``K_ij / s_j`` of the genes that are not all zero.
    base_mean
        Their row means.
    dispersions
        Their trend dispersions (``dispFit``).

    Returns
    -------
    float
        ``(Q_w(|log2(q + 0.5) − log2(baseMean + 0.5)|, 0.95) / qnorm(0.975))²`` with gene
        weights ``1/(1/baseMean + dispFit)`` (DESeq2 ``matchWeightedUpperQuantileForVariance``).
    """
    log_counts = np.log2(normalized + 0.5)
    lfc = log_counts - np.log2(base_mean + 0.5)[:, None]
    weights = 1.0 / (1.0 / base_mean + dispersions)
    # as.numeric(matrix) is column-major: all genes of sample 1, then sample 2, ...
    values = np.abs(lfc.T.ravel())
    w = np.tile(weights, normalized.shape[1])
    sd = weighted_quantile_hmisc(values, w, 0.95) / _QNORM_0975
    return sd**2


def sparse_test(normalized: np.ndarray) -> float:
    """Share of genes DESeq2's ``sparseTest`` counts as dominated by one sample.

    Among genes whose normalised counts sum to more than 100, the share whose largest
    value is more than 90% of the sum. DESeq2's ``rlog`` warns when this is above 0.1
    (rlog is then not recommended; VST is).

    Parameters
    ----------
    normalized
        Normalised counts, genes × samples.

    Returns
    -------
    float
        The share (0 when no gene sums to more than 100).
    """
    sums = normalized.sum(axis=1)
    big = sums > 100
    if not big.any():
        return 0.0
    ratio = normalized[big].max(axis=1) / sums[big]
    return float(np.mean(ratio > 0.9))


def _nb_loglik_parts(y: np.ndarray, size: np.ndarray) -> np.ndarray:
    # The part of log NB(y; size, mu) that does not depend on mu; it is constant during
    # the IRLS, so it is computed once.
    return gammaln(y + size) - gammaln(size) - gammaln(y + 1.0)


def _deviance(y: np.ndarray, mu: np.ndarray, size: np.ndarray, const: np.ndarray) -> np.ndarray:
    # -2 * sum_j log dnbinom(y, size, mu); size/(size+mu) written with log1p for accuracy
    log_p = -np.log1p(mu / size)  # log(size / (size + mu))
    log_q = np.log(mu / (size + mu))
    ll = const + size * log_p + np.where(y > 0, y * log_q, 0.0)
    return -2.0 * ll.sum(axis=1)


def _fit_rlog_irls(
    y: np.ndarray,
    sf: np.ndarray,
    alpha: np.ndarray,
    beta0: np.ndarray,
    lambda_nat: float,
    lambda0_nat: float,
    tol: float,
    maxit: int,
    min_mu: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge-penalised NB IRLS for the rlog design, all genes at once.

    Returns the natural-log intercepts, the per-sample coefficients and the iterations.
    Follows DESeq2's C++ ``fitBeta`` (QR branch) step by step; the linear solve uses the
    closed form of the arrow-shaped penalised normal equations.
    """
    n_genes, n_samples = y.shape
    size = 1.0 / alpha
    const = _nb_loglik_parts(y, size[:, None])
    b0 = beta0.copy()
    b = np.zeros((n_genes, n_samples))
    mu = np.maximum(sf[None, :] * np.exp(b0[:, None] + b), min_mu)
    dev_old = np.zeros(n_genes)
    iters = np.zeros(n_genes, dtype=np.int64)
    active = np.arange(n_genes)
    for t in range(maxit):
        if active.size == 0:
            break
        iters[active] += 1
        ya, mua, ala = y[active], mu[active], alpha[active]
        w = mua / (1.0 + ala[:, None] * mua)
        z = np.log(mua / sf[None, :]) + (ya - mua) / mua
        # [sum w + l0, w'; w, diag(w) + l] [b0; b] = [w'z; w*z]
        c = w * lambda_nat / (w + lambda_nat)
        nb0 = (c * z).sum(axis=1) / (lambda0_nat + c.sum(axis=1))
        nb = w * (z - nb0[:, None]) / (w + lambda_nat)
        b0[active] = nb0
        b[active] = nb
        large = (np.abs(nb0) > _LARGE) | (np.abs(nb) > _LARGE).any(axis=1)
        new_mu = np.maximum(sf[None, :] * np.exp(nb0[:, None] + nb), min_mu)
        dev = _deviance(ya, new_mu, size[active][:, None], const[active])
        conv = np.abs(dev - dev_old[active]) / (np.abs(dev) + 0.1)
        # a diverging gene keeps its last coefficients but not the new means (as in C++)
        keep_mu = ~large
        mu[active[keep_mu]] = new_mu[keep_mu]
        stop_bad = large | np.isnan(conv)
        iters[active[stop_bad]] = maxit
        done = stop_bad | ((t > 0) & (conv < tol))
        dev_old[active] = dev
        active = active[~done]
    return b0, b, iters


def rlog(
    counts: np.ndarray | pd.DataFrame,
    size_factors: np.ndarray | pd.Series,
    dispersions: np.ndarray | pd.Series,
    beta_prior_var: float | None = None,
    *,
    beta_tol: float = 1e-4,
    maxit: int = 100,
    min_mu: float = 0.5,
) -> RlogResult:
    """Regularized log transformation, as DESeq2's ``rlog`` (``rlogData``).

    Reproduces DESeq2 1.38.3 ``rlog(dds, blind, fitType)`` from the point where the
    dispersion trend is known, with no ``intercept`` argument.

    Parameters
    ----------
    counts
        Raw counts, genes × samples (non-negative integers).
    size_factors
        DESeq2 size factors, one per sample (``estimateSizeFactors``).
    dispersions
        The fitted trend dispersion of each gene, ``dispFit`` (the dispersion function at
        the gene's ``baseMean``): from the ``~1`` fit for ``blind=TRUE``, from the design's
        fit for ``blind=FALSE``. All-zero genes may be NaN; every other gene needs a
        positive finite value.
    beta_prior_var
        The prior variance of the per-sample coefficients (log2 scale); estimated from the
        data as DESeq2 does when None.
    beta_tol, maxit, min_mu
        ``fitNbinomGLMs`` settings as ``rlogData`` passes them.

    Returns
    -------
    RlogResult
        rlog values (a DataFrame with the labels of ``counts`` when ``counts`` is one),
        the beta-prior variance, the intercepts and the iteration counts.

    Raises
    ------
    InputError
        For negative, non-finite or fractional counts, a size factor that is not positive, a missing
        or non-positive dispersion on a gene with counts, or a fit that DESeq2 would hand
        to its ``optim`` fallback (not reproduced here).

    Notes
    -----
    The model is ``log μ_ij = log s_j + β0 + β_j`` with a normal prior of variance
    ``beta_prior_var`` on every ``β_j`` (and a flat-ish ``1e-6`` ridge on ``β0``); rlog
    is ``(β0 + β_j)/ln 2``. DESeq2 warns (``sparseTest``) when many genes are dominated by
    one sample; see :func:`sparse_test`.

    References
    ----------
    Love MI, Huber W, Anders S (2014) Moderated estimation of fold change and dispersion for
    RNA-seq data with DESeq2. Genome Biology 15:550.
    """
    # One function, over 120 lines with its docstring: it follows DESeq2's rlog() and
    # rlogData() step by step (prior variance, ridge fit, transform), so that it reads
    # side by side with the R source; each step is a call into this module.
    frame = counts if isinstance(counts, pd.DataFrame) else None
    k = np.asarray(counts, dtype=float)
    if k.ndim != 2:
        raise InputError(f"rlog needs a genes × samples count table; got {k.ndim} dimension(s).")
    n_genes, n_samples = k.shape
    gene_names = (
        list(frame.index) if frame is not None else [f"row {i + 1}" for i in range(n_genes)]
    )
    sample_names = (
        list(frame.columns) if frame is not None else [f"column {j + 1}" for j in range(n_samples)]
    )
    bad = ~np.isfinite(k) | (k < 0)
    if bad.any():
        gi, sj = np.argwhere(bad)[0]
        raise InputError(
            f"rlog needs non-negative counts; gene {gene_names[gi]}, sample {sample_names[sj]} "
            f"has {k[gi, sj]}. Give raw counts."
        )
    frac = k != np.round(k)
    if frac.any():
        gi, sj = np.argwhere(frac)[0]
        raise InputError(
            f"rlog needs whole-number counts, as DESeq2 does; gene {gene_names[gi]}, sample "
            f"{sample_names[sj]} has {k[gi, sj]} ({int(frac.sum())} such cell(s)). Round "
            "estimated counts first (as DESeq2's DESeqDataSetFromTximport does)."
        )
    sf = np.asarray(size_factors, dtype=float).ravel()
    if sf.shape[0] != n_samples:
        raise InputError(
            f"rlog got {sf.shape[0]} size factors for {n_samples} samples. "
            "Give one size factor per sample, in the table's column order."
        )
    if not (np.isfinite(sf) & (sf > 0)).all():
        j = int(np.flatnonzero(~(np.isfinite(sf) & (sf > 0)))[0])
        raise InputError(
            f"The size factor of sample {sample_names[j]} is {sf[j]}; size factors must be "
            "positive. Check that the sample has counts."
        )
    alpha = np.asarray(dispersions, dtype=float).ravel()
    if alpha.shape[0] != n_genes:
        raise InputError(
            f"rlog got {alpha.shape[0]} dispersions for {n_genes} genes. "
            "Give one dispersion per gene, in the table's row order."
        )
    all_zero = k.sum(axis=1) == 0
    nz = ~all_zero
    bad_alpha = nz & ~(np.isfinite(alpha) & (alpha > 0))
    if bad_alpha.any():
        i = int(np.flatnonzero(bad_alpha)[0])
        raise InputError(
            f"The dispersion of gene {gene_names[i]} is {alpha[i]}; rlog needs a positive "
            f"dispersion for every gene with counts ({int(bad_alpha.sum())} gene(s) lack one)."
        )

    q = k[nz] / sf[None, :]
    base_mean = _row_means(q)
    if beta_prior_var is None:
        beta_prior_var = estimate_beta_prior_var(q, base_mean, alpha[nz])
    if not (np.isfinite(beta_prior_var) and beta_prior_var > 0):
        raise InputError(
            f"The rlog beta-prior variance is {beta_prior_var}; it must be positive. "
            "This happens when every sample has the same normalised counts."
        )
    lambda_nat = (1.0 / beta_prior_var) / _LN2_SQ
    lambda0_nat = _INTERCEPT_LAMBDA / _LN2_SQ
    # the rlog design is rank deficient, so DESeq2 starts at log(baseMean) and 0
    b0, b, iters_nz = _fit_rlog_irls(
        k[nz],
        sf,
        alpha[nz],
        np.log(base_mean),
        lambda_nat,
        lambda0_nat,
        beta_tol,
        maxit,
        min_mu,
    )
    unstable = np.isnan(b0) | np.isnan(b).any(axis=1)
    if unstable.any():
        names = [gene_names[i] for i in np.flatnonzero(nz)[unstable][:5]]
        raise InputError(
            f"The rlog fit gave no coefficients for {int(unstable.sum())} gene(s) (first: "
            f"{', '.join(map(str, names))}). DESeq2 re-fits such genes with optim, which "
            "cohortnorm does not reproduce; remove these genes or use the VST instead."
        )
    b0_log2 = _LOG2E * b0
    b_log2 = _LOG2E * b
    values = np.zeros((n_genes, n_samples))
    values[nz] = b0_log2[:, None] + b_log2
    intercept = np.full(n_genes, -np.inf)
    intercept[nz] = b0_log2
    iterations = np.zeros(n_genes, dtype=np.int64)
    iterations[nz] = iters_nz
    out: np.ndarray | pd.DataFrame = values
    if frame is not None:
        out = pd.DataFrame(values, index=frame.index, columns=frame.columns)
    share = sparse_test(k / sf[None, :])
    return RlogResult(out, float(beta_prior_var), intercept, iterations, share)
