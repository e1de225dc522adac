"""Scatter–gather (sharded) versions of the normalization steps, equal to the in-memory ones.

An atlas-scale cohort is cut into *sample shards* (all genes × a range of samples,
:func:`cohortnorm.io.chunked.read_sample_shard`). Each step is written as

* a **per-shard statistic** (``shard_*``): a pure function of one shard (and of small
  gathered vectors), run by one job per shard;
* a **gather** (``gather_*`` / ``choose_*``): combines the shards' statistics, in shard
  order, into per-gene or per-sample vectors;
* an **apply** (``apply_*``): one job per shard computes its samples' output from its
  shard and the gathered vectors.

Every formula is the in-memory module's own (``edger``, ``deseq2``, ``expression``),
called on a shard or on the gathered vectors; nothing is re-derived. The ``sharded_*``
functions run a whole step serially over a source (for tests and small cohorts); the
workflow runs the same pieces as separate jobs. ``docs/sharding.md`` lists which
results are bit-for-bit those of the in-memory path and why.

Memory of every per-shard function: the shard, ``n_genes × samples_per_shard`` float64
cells, plus at most a second copy of it (the Fortran-ordered copy made on reading,
and the transposed block of :func:`cohortnorm.edger.column_quantile` / the log ratios
of :func:`cohortnorm.deseq2.median_ratio_factors`), plus O(n_genes) vectors (the
reference column, geometric means, per-gene partial sums). Gathers hold O(n_genes +
n_samples) numbers. No function needs more than one shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from cohortnorm import combat, combat_seq, edger
from cohortnorm.combat_seq import SeqPlan
from cohortnorm.deseq2 import SIZE_FACTOR_TYPES, SizeFactorType, median_ratio_factors
from cohortnorm.errors import InputError
from cohortnorm.expression import tpm
from cohortnorm.io.chunked import MatrixSource, n_shard_count, shard_columns
from cohortnorm.qc import PCAResult, cross_product, loading_signs, top_genes_by_variance

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")
BoolArray = npt.NDArray[np.bool_]


class ArraySource:
    """An in-memory genes × samples array offering the store's two reads.

    For tests and small cohorts: the ``sharded_*`` functions accept it wherever they
    accept a :class:`cohortnorm.io.chunked.CountStore` or ``H5adSource``.
    """

    def __init__(self, values: npt.ArrayLike) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.shape = self.values.shape

    def read_columns(self, columns: slice | npt.NDArray[np.intp]) -> FloatArray:
        return np.array(self.values[:, columns])

    def read_rows(self, rows: slice | npt.NDArray[np.intp]) -> FloatArray:
        return np.array(self.values[rows, :])


def shards(source: MatrixSource, samples_per_shard: int) -> Iterator[tuple[slice, FloatArray]]:
    """Each shard's columns and values, Fortran-ordered (as ``read_matrix`` gives).

    The in-memory path reads Fortran-ordered matrices; a shard in the same layout sums
    each column in the same order, which is what makes the per-sample sums bitwise equal.
    """
    n_samples = source.shape[1]
    for index in range(n_shard_count(n_samples, samples_per_shard)):
        columns = shard_columns(n_samples, index, samples_per_shard)
        yield columns, np.asfortranarray(source.read_columns(columns), dtype=np.float64)


# --------------------------------------------------------------------------- pass 1


@dataclass(frozen=True)
class ShardSummary:
    """First-pass statistics of one shard, or of the whole cohort once gathered.

    Attributes
    ----------
    lib_size
        Column sums, one per sample of the shard (all samples once gathered).
    gene_totals
        Per-gene sums over the shard's samples.
    expressed
        Per gene, whether any of the shard's counts is positive.
    """

    lib_size: FloatArray
    gene_totals: FloatArray
    expressed: BoolArray


def shard_summary(shard: FloatArray) -> ShardSummary:
    """Library sizes, per-gene totals and positive-count flags of one shard."""
    if np.isnan(shard).any():  # edgeR's message, as calc_norm_factors gives it
        raise ValueError("NA counts not permitted")
    return ShardSummary(shard.sum(axis=0), shard.sum(axis=1), (shard > 0).any(axis=1))


def gather_summaries(parts: Sequence[ShardSummary]) -> ShardSummary:
    """The cohort's summary from its shards' summaries, in shard order.

    Library sizes are concatenated (bitwise those of the whole matrix). Gene totals are
    added shard by shard: exact for whole counts below 2**53 (every count table the
    workflow accepts), otherwise within a few ulps of the whole-matrix sums.
    """
    totals = parts[0].gene_totals.copy()
    expressed = parts[0].expressed.copy()
    for part in parts[1:]:
        totals += part.gene_totals
        expressed |= part.expressed
    return ShardSummary(np.concatenate([p.lib_size for p in parts]), totals, expressed)


# --------------------------------------------------------------------------- filterByExpr


@dataclass(frozen=True)
class FilterPlan:
    """What every shard needs for filterByExpr's second pass."""

    cutoff_cpm: float
    min_sample_size: float


def plan_filter(
    lib_size: FloatArray,
    *,
    group: npt.ArrayLike | None = None,
    design: npt.ArrayLike | None = None,
    min_count: float = 10,
    large_n: float = 10,
    min_prop: float = 0.7,
) -> FilterPlan:
    """filterByExpr's cutoff (from the median library size) and minimum sample size.

    Both need the whole cohort: the gathered library sizes and the sample sheet.
    """
    return FilterPlan(
        edger.filter_cutoff_cpm(lib_size, min_count),
        edger.filter_min_sample_size(
            lib_size.size, group=group, design=design, large_n=large_n, min_prop=min_prop
        ),
    )


def shard_reaching_cutoff(
    shard: FloatArray, shard_lib_size: FloatArray, plan: FilterPlan
) -> npt.NDArray[np.int64]:
    """Per gene, how many of the shard's samples reach the CPM cutoff."""
    return edger.samples_reaching_cpm(shard, shard_lib_size, plan.cutoff_cpm)


def gather_filter(
    reached: Sequence[npt.NDArray[np.int64]],
    gene_totals: FloatArray,
    plan: FilterPlan,
    min_total_count: float = 15,
) -> BoolArray:
    """filterByExpr's keep vector from the shards' counts (integers: exact) and totals."""
    return edger.filter_keep(
        np.sum(reached, axis=0), gene_totals, plan.min_sample_size, min_total_count
    )


def sharded_filter_by_expr(
    source: MatrixSource, samples_per_shard: int, **options: object
) -> BoolArray:
    """``edgeR::filterByExpr`` in two passes over sample shards (see module notes).

    ``options`` are :func:`plan_filter`'s (``group``, ``design``, ``min_count``,
    ``large_n``, ``min_prop``) and ``min_total_count``.
    """
    min_total_count = float(options.pop("min_total_count", 15))  # type: ignore[arg-type]
    summary = gather_summaries([shard_summary(s) for _, s in shards(source, samples_per_shard)])
    plan = plan_filter(summary.lib_size, **options)  # type: ignore[arg-type]
    reached = [
        shard_reaching_cutoff(s, summary.lib_size[c], plan)
        for c, s in shards(source, samples_per_shard)
    ]
    return gather_filter(reached, summary.gene_totals, plan, min_total_count)


# --------------------------------------------------------------------------- calcNormFactors


def shard_reference_statistics(
    shard: FloatArray, shard_lib_size: FloatArray, expressed: BoolArray, p: float = 0.75
) -> tuple[FloatArray, npt.NDArray[np.longdouble]]:
    """Each sample's raw upper-quartile factor and ``sum(sqrt(counts))`` over the
    cohort's expressed genes: what decides TMM's and TMMwsp's reference sample, and
    (the first) the upper-quartile factors themselves."""
    values = shard[expressed]
    with np.errstate(divide="ignore", invalid="ignore"):
        f75 = edger.upper_quartile_factors(values, shard_lib_size, p)
    return f75, edger.sqrt_column_sums(values)


def choose_reference(method: str, f75: FloatArray, sqrt_sums: npt.NDArray[np.longdouble]) -> int:
    """The reference sample (0-based, cohort-wide) of TMM or TMMwsp, as edgeR picks it."""
    if method == "TMMwsp":
        return int(np.argmax(sqrt_sums.astype(np.float64)))
    return edger.tmm_reference(f75, lambda: sqrt_sums)


def shard_log_sums(shard: FloatArray, rows: BoolArray | None = None) -> FloatArray:
    """Per gene, the sum of the shard's ``log(count)`` (-inf where a count is 0).

    Gathered by :func:`gather_log_means`: RLE's and DESeq2's log geometric means.
    """
    values = shard if rows is None else shard[rows]
    with np.errstate(divide="ignore"):
        return np.log(values).sum(axis=1)


def gather_log_means(parts: Sequence[FloatArray], n_samples: int) -> FloatArray:
    """Per gene, the mean of ``log(count)`` over all samples, from the shards' sums."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total / n_samples


def shard_norm_factors(
    shard: FloatArray,
    shard_lib_size: FloatArray,
    expressed: BoolArray,
    method: str,
    *,
    ref_counts: FloatArray | None = None,
    ref_lib_size: float | None = None,
    geo_mean: FloatArray | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
    p: float = 0.75,
) -> FloatArray:
    """The shard's samples' raw (not yet rescaled) normalization factors.

    Parameters
    ----------
    ref_counts, ref_lib_size
        TMM/TMMwsp: the reference sample's counts on the expressed genes and its
        library size (broadcast to every shard).
    geo_mean
        RLE: the cohort's geometric mean of each expressed gene.
    """
    values = shard[expressed]
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "upperquartile":
            return edger.upper_quartile_factors(values, shard_lib_size, p)
        if method == "RLE":
            usable = geo_mean > 0  # type: ignore[operator]
            return (
                edger.column_median(values[usable], row_divisor=geo_mean[usable]) / shard_lib_size
            )  # type: ignore[index]
        if method == "TMM":
            return edger.tmm_factors_against(
                values,
                shard_lib_size,
                ref_counts,
                ref_lib_size,  # type: ignore[arg-type]
                logratio_trim,
                sum_trim,
                do_weighting,
                a_cutoff,
            )
        if method == "TMMwsp":
            return edger.tmmwsp_factors_against(
                values,
                shard_lib_size,
                ref_counts,
                ref_lib_size,  # type: ignore[arg-type]
                logratio_trim,
                sum_trim,
                do_weighting,
            )
    raise ValueError(f"unknown normalization method {method!r}; use one of {edger.NORM_METHODS}")


def sharded_norm_factors(
    source: MatrixSource,
    samples_per_shard: int,
    method: str = "TMM",
    *,
    p: float = 0.75,
    **options: float,
) -> FloatArray:
    """``edgeR::calcNormFactors`` over sample shards, equal to :func:`edger.calc_norm_factors`.

    Passes: (1) library sizes and expressed genes; (2, TMM/TMMwsp) upper quartiles and
    square-root sums choose the reference, whose column is then read once; (2, RLE) the
    per-gene log sums give the geometric means; (3) each shard's raw factors; the
    gather divides by their geometric mean.
    """
    if method not in edger.NORM_METHODS:
        raise ValueError(
            f"unknown normalization method {method!r}; use one of {edger.NORM_METHODS}"
        )
    trims = (options.get("logratio_trim", 0.3), options.get("sum_trim", 0.05))
    if not all(0 <= trim < 0.5 for trim in trims):
        raise ValueError(
            f"logratio_trim={trims[0]} and sum_trim={trims[1]}: each is the fraction "
            "trimmed from both ends, so it must lie in [0, 0.5)"
        )
    summary = gather_summaries([shard_summary(s) for _, s in shards(source, samples_per_shard)])
    sizes, expressed = summary.lib_size, summary.expressed
    edger.require_reads(sizes)
    n_samples = sizes.size
    if not expressed.any() or n_samples == 1 or method == "none":
        return np.ones(n_samples)
    extra: dict[str, object] = {}
    if method in ("TMM", "TMMwsp"):
        stats = [
            shard_reference_statistics(s, sizes[c], expressed, p)
            for c, s in shards(source, samples_per_shard)
        ]
        ref = choose_reference(
            method, np.concatenate([f for f, _ in stats]), np.concatenate([q for _, q in stats])
        )
        extra = {
            "ref_counts": source.read_columns(slice(ref, ref + 1))[expressed, 0],
            "ref_lib_size": float(sizes[ref]),
        }
    elif method == "RLE":
        log_sums = [shard_log_sums(s, expressed) for _, s in shards(source, samples_per_shard)]
        geo_mean = np.exp(gather_log_means(log_sums, n_samples))
        if not (geo_mean > 0).any():
            raise ValueError(
                "RLE needs at least one gene with a positive count in every sample; "
                "use TMM or TMMwsp for sparse data"
            )
        extra = {"geo_mean": geo_mean}
    raw = np.concatenate(
        [
            shard_norm_factors(s, sizes[c], expressed, method, p=p, **extra, **options)  # type: ignore[arg-type]
            for c, s in shards(source, samples_per_shard)
        ]
    )
    if method == "upperquartile" and not np.all(raw > 0):
        raise ValueError(
            f"the {p} quantile of the counts is zero in {int(np.sum(~(raw > 0)))} "
            "sample(s): upper-quartile normalization is undefined; use TMM or a higher p"
        )
    return edger.rescale_factors(raw)


# --------------------------------------------------------------------------- DESeq2


def shard_positive_log_sums(shard: FloatArray) -> tuple[FloatArray, BoolArray]:
    """poscounts: per gene, the sum of ``log`` over the shard's positive counts, and
    whether it has any."""
    with np.errstate(divide="ignore"):
        logs = np.log(shard)
    logs[~np.isfinite(logs)] = 0.0
    return logs.sum(axis=1), (shard > 0).any(axis=1)


def gather_deseq2_log_means(
    parts: Sequence[FloatArray],
    n_samples: int,
    type: SizeFactorType,
    any_positive: BoolArray | None = None,
) -> FloatArray:
    """DESeq2's log geometric mean of each gene (-inf where it has no usable mean)."""
    log_means = gather_log_means(parts, n_samples)
    if type == "poscounts":
        log_means[~any_positive] = -np.inf  # type: ignore[operator]
    return log_means


def usable_genes(
    log_means: FloatArray, control_genes: npt.ArrayLike | None = None
) -> npt.NDArray[np.intp]:
    """The genes whose ratios form the medians: finite log means, and control genes."""
    usable = np.isfinite(log_means)
    if control_genes is not None:
        chosen = np.zeros(log_means.size, dtype=bool)
        chosen[np.asarray(control_genes)] = True
        usable &= chosen
    return np.flatnonzero(usable)


def shard_size_factors(
    shard: FloatArray, log_means: FloatArray, rows: npt.NDArray[np.intp], type: SizeFactorType
) -> FloatArray:
    """The shard's samples' median-of-ratios factors (poscounts not yet re-centred)."""
    return median_ratio_factors(shard, log_means, rows, type)


def sharded_size_factors(
    source: MatrixSource,
    samples_per_shard: int,
    type: SizeFactorType = "ratio",
    *,
    control_genes: npt.ArrayLike | None = None,
) -> FloatArray:
    """``DESeq2::estimateSizeFactors`` over sample shards (:func:`deseq2.size_factors`).

    Assumes checked counts (the store's conversion refuses negative, missing and
    all-zero samples); a sample without reads is refused here too.
    """
    if type not in SIZE_FACTOR_TYPES:
        raise ValueError(f"unknown size factor type {type!r}; use one of {SIZE_FACTOR_TYPES}")
    sums, positive, sizes = [], None, []
    for _, shard in shards(source, samples_per_shard):
        sizes.append(shard.sum(axis=0))
        if type == "ratio":
            sums.append(shard_log_sums(shard))
        else:
            log_sum, any_positive = shard_positive_log_sums(shard)
            sums.append(log_sum)
            positive = any_positive if positive is None else positive | any_positive
    edger.require_reads(np.concatenate(sizes))
    log_means = gather_deseq2_log_means(sums, source.shape[1], type, positive)
    rows = usable_genes(log_means, control_genes)
    if type == "ratio" and rows.size == 0:
        raise ValueError(
            "every gene contains at least one zero, cannot compute log geometric means"
        )
    factors = np.concatenate(
        [shard_size_factors(s, log_means, rows, type) for _, s in shards(source, samples_per_shard)]
    )
    return edger.rescale_factors(factors) if type == "poscounts" else factors


# --------------------------------------------------------------------------- CPM, logCPM, TPM


def apply_cpm(
    shard: FloatArray,
    shard_effective_size: FloatArray,
    *,
    log: bool = False,
    prior_count: float = 2.0,
    mean_effective_size: float | None = None,
) -> FloatArray:
    """The shard's CPM or logCPM from the gathered effective library sizes
    (``lib.size × norm.factors``); logCPM's prior needs the cohort's mean of them."""
    if log and mean_effective_size is None:
        raise ValueError("logCPM of a shard needs the mean effective library size of the cohort")
    return edger.cpm(
        shard,
        shard_effective_size,
        log=log,
        prior_count=prior_count,
        mean_lib_size=mean_effective_size,
    )


def apply_tpm(shard: FloatArray, lengths: FloatArray) -> FloatArray:
    """The shard's TPM: per sample, so the shard alone suffices (``lengths`` per gene,
    or the shard's genes × samples effective lengths)."""
    return tpm(shard, lengths)


def sharded_apply(
    source: MatrixSource, samples_per_shard: int, apply: Callable[[slice, FloatArray], FloatArray]
) -> Iterator[tuple[slice, FloatArray]]:
    """Each shard's columns and ``apply(columns, shard)``, one shard at a time."""
    for columns, shard in shards(source, samples_per_shard):
        yield columns, apply(columns, shard)


# --------------------------------------------------------------------------- ComBat


@dataclass(frozen=True)
class CombatPlan:
    """The cohort-wide ComBat model (from the sample sheet only) and its options."""

    model: combat._Model
    levels: list[str]
    parametric: bool
    mean_only: bool
    messages: list[str]

    def shard(self, columns: slice) -> combat._Model:
        """The model restricted to the design rows of a shard's samples."""
        return replace(
            self.model,
            design=self.model.design[columns],
            batch_idx=self.model.batch_idx[columns],
            batch_design=self.model.batch_design[columns],
        )


def plan_combat(
    batch: Sequence[object],
    covariates: npt.ArrayLike | None = None,
    *,
    parametric: bool = True,
    mean_only: bool = False,
    ref_batch: str | None = None,
    covariate_names: Sequence[str] | None = None,
) -> CombatPlan:
    """ComBat's batch levels, design and checks, as :func:`combat.combat` makes them."""
    messages: list[str] = []
    _, _, levels, batch_idx = combat._combat_input(np.empty((0, len(batch))), batch, None)
    n_batch = len(levels)
    n_per_batch = np.bincount(batch_idx, minlength=n_batch)
    mean_only = combat._mean_only(levels, n_per_batch, mean_only, messages)
    design, ref = combat._combat_design(
        levels,
        batch_idx,
        n_per_batch,
        covariates,
        covariate_names,
        ref_batch,
        messages,  # type: ignore[arg-type]
    )
    batch_design = design[:, :n_batch]
    model = combat._Model(
        design=design,
        n_batch=n_batch,
        batch_idx=batch_idx,
        n_per_batch=n_per_batch,
        ref=ref,
        has_na=False,
        xtx=design.T @ design,
        batch_design=batch_design,
        btb=batch_design.T @ batch_design,
    )
    return CombatPlan(model, levels, parametric, mean_only, messages)


def _complete(shard: FloatArray, columns: slice) -> None:
    if not np.isfinite(shard).all():
        raise InputError(
            f"samples {columns.start + 1} to {columns.stop} hold a missing or infinite value: "
            "the sharded ComBat needs complete data (the in-memory ComBat handles missing "
            "values as sva does; run it instead, or remove those genes)"
        )


def combat_shard_fit(
    shard: FloatArray, columns: slice, plan: CombatPlan
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Pass 1: ``Y X`` (genes × p) over the shard, and each gene's largest and smallest
    value per batch (NaN for a batch without samples here), for the zero-variance genes."""
    _complete(shard, columns)
    model = plan.shard(columns)
    n_batch = model.n_batch
    highest = np.full((n_batch, shard.shape[0]), np.nan)
    lowest = np.full((n_batch, shard.shape[0]), np.nan)
    for b in range(n_batch):
        in_batch = model.batch_idx == b
        if in_batch.any():
            highest[b] = shard[:, in_batch].max(axis=1)
            lowest[b] = shard[:, in_batch].min(axis=1)
    return shard @ model.design, highest, lowest


@dataclass(frozen=True)
class CombatFit:
    """Gathered per-gene quantities; ``keep`` are the genes ComBat adjusts."""

    keep: BoolArray
    beta: FloatArray  # p × kept genes
    var_pooled: FloatArray | None = None
    gamma_hat: FloatArray | None = None
    mean: FloatArray | None = None
    gamma_star: FloatArray | None = None
    delta_star: FloatArray | None = None
    delta_hat: FloatArray | None = None


def gather_combat_fit(
    parts: Sequence[tuple[FloatArray, FloatArray, FloatArray]], plan: CombatPlan
) -> CombatFit:
    """The zero-variance genes (constant in a batch of two or more) and sva's ``B.hat``."""
    xty = np.sum([p[0] for p in parts], axis=0)
    highest = np.fmax.reduce([p[1] for p in parts])
    lowest = np.fmin.reduce([p[2] for p in parts])
    several = plan.model.n_per_batch > 1
    zero = (highest[several] == lowest[several]).any(axis=0)
    if zero.size - int(zero.sum()) < 2:
        raise InputError(
            "Fewer than two genes vary within every batch; ComBat needs many genes to "
            "estimate its priors."
        )
    keep = ~zero
    return CombatFit(keep, np.linalg.solve(plan.model.xtx, xty[keep].T))


def combat_shard_residuals(
    shard: FloatArray, columns: slice, plan: CombatPlan, fit: CombatFit
) -> FloatArray:
    """Pass 2: the shard's part of ``var.pooled``, ``Σ r² / n`` over its residuals
    (those of the reference batch only, when there is one)."""
    model = plan.shard(columns)
    resid = shard[fit.keep] - fit.beta.T @ model.design.T
    ref = plan.model.ref
    n = plan.model.batch_idx.size if ref is None else int(plan.model.n_per_batch[ref])
    if ref is not None:
        resid = resid[:, model.batch_idx == ref]
    return (resid * resid) @ np.full(resid.shape[1], 1.0 / n)


def _standardised(
    shard: FloatArray, columns: slice, plan: CombatPlan, fit: CombatFit
) -> tuple[combat._Model, FloatArray, FloatArray, FloatArray]:
    model = plan.shard(columns)
    block = np.ascontiguousarray(shard[fit.keep])
    s, stand_mean = combat.standardise_given(block, fit.beta, fit.var_pooled, model)  # type: ignore[arg-type]
    return model, block, s, stand_mean


def combat_shard_batch_sums(
    shard: FloatArray, columns: slice, plan: CombatPlan, fit: CombatFit
) -> tuple[FloatArray, FloatArray]:
    """Pass 3: the shard's ``s Bᵀ`` (genes × batches, for ``gamma.hat``) and per-batch
    sums of the standardised data (batches × genes, for their means)."""
    model, _, s, _ = _standardised(shard, columns, plan, fit)
    sums = np.stack([s[:, model.batch_idx == b].sum(axis=1) for b in range(model.n_batch)])
    return s @ model.batch_design, sums


def combat_shard_squares(
    shard: FloatArray, columns: slice, plan: CombatPlan, fit: CombatFit
) -> FloatArray:
    """Pass 4: per batch, the shard's ``Σ (s − m)²`` about the gathered batch means."""
    model, _, s, _ = _standardised(shard, columns, plan, fit)
    out = np.zeros((model.n_batch, s.shape[0]))
    for b in range(model.n_batch):
        dev = s[:, model.batch_idx == b] - fit.mean[b][:, None]  # type: ignore[index]
        dev *= dev
        out[b] = dev.sum(axis=1)
    return out


def combat_shard_apply(
    shard: FloatArray, columns: slice, plan: CombatPlan, fit: CombatFit
) -> FloatArray:
    """Pass 5: the shard's adjusted data (genes ComBat does not adjust are copied)."""
    model, block, s, stand_mean = _standardised(shard, columns, plan, fit)
    adjusted = np.array(shard)
    adjusted[fit.keep] = combat.adjust_standardised(
        s,
        stand_mean,
        fit.var_pooled,  # type: ignore[arg-type]
        fit.gamma_star,  # type: ignore[arg-type]
        np.sqrt(fit.delta_star),  # type: ignore[arg-type]
        model,
        block,
    )
    return adjusted


def sharded_combat(
    source: MatrixSource, samples_per_shard: int, plan: CombatPlan, *, threads: int | None = None
) -> tuple[CombatFit, Iterator[tuple[slice, FloatArray]]]:
    """sva's ``ComBat`` over sample shards (batches may span shards), equal to
    :func:`combat.combat` on complete data within 1e-12 relative.

    Four statistic passes (``Y X``; residual squares; per-batch sums; per-batch squares
    about the means) give sva's ``B.hat``, ``var.pooled``, ``gamma.hat`` and the
    sufficient statistics (n, m, S) from which :func:`combat._shrink` — the in-memory
    code itself — computes the priors and the parametric or non-parametric estimates;
    a fifth pass adjusts each shard. Returns the fit and a lazy iterator of adjusted
    shards.
    """

    def each(step: Callable[..., T]) -> list[T]:
        return [step(s, c, plan, fit) for c, s in shards(source, samples_per_shard)]

    fit = gather_combat_fit(
        [combat_shard_fit(s, c, plan) for c, s in shards(source, samples_per_shard)], plan
    )
    fit = replace(fit, var_pooled=np.sum(each(combat_shard_residuals), axis=0))
    parts = each(combat_shard_batch_sums)
    model = plan.model
    gamma_hat = np.linalg.solve(model.btb, np.sum([p[0] for p in parts], axis=0).T)
    n = model.n_per_batch.astype(float)[:, None]
    mean = np.sum([p[1] for p in parts], axis=0) / n
    fit = replace(fit, gamma_hat=gamma_hat, mean=mean)
    ss = np.sum(each(combat_shard_squares), axis=0)
    cnt = np.broadcast_to(n, mean.shape).copy()
    delta_hat, gamma_star, delta_star, _ = combat._shrink(
        cnt, mean, ss, gamma_hat, model.ref, plan.parametric, plan.mean_only, None, threads
    )
    fit = replace(fit, gamma_star=gamma_star, delta_star=delta_star, delta_hat=delta_hat)
    return fit, sharded_apply(
        source, samples_per_shard, lambda c, s: combat_shard_apply(s, c, plan, fit)
    )


# --------------------------------------------------------------------------- QC PCA


def shard_gene_sums(shard: FloatArray) -> FloatArray:
    """Pass 1 of the PCA: per-gene sums over the shard's samples (for the gene means)."""
    return shard.sum(axis=1)


def shard_gene_squares(shard: FloatArray, gene_mean: FloatArray) -> FloatArray:
    """Pass 2: per-gene ``Σ (x − mean)²`` over the shard's samples (for the variances)."""
    dev = shard - gene_mean[:, None]
    dev *= dev
    return dev.sum(axis=1)


def shard_gene_cross_product(
    shard: FloatArray, genes: npt.NDArray[np.intp], gene_mean: FloatArray
) -> FloatArray:
    """Pass 3: the shard's ``Σ_samples x̃ x̃ᵀ`` over the chosen genes, ``x̃`` centred
    (genes × genes: memory is ``len(genes)²`` plus the shard's rows of those genes)."""
    centred = shard[genes] - gene_mean[genes][:, None]
    return cross_product(centred)


@dataclass(frozen=True)
class PCAAxes:
    """The gathered PCA: genes used, their means, loadings (genes × k) and scales."""

    genes: npt.NDArray[np.intp]
    gene_mean: FloatArray
    loadings: FloatArray
    variance: FloatArray
    variance_ratio: FloatArray


def gather_pca_axes(
    gram: FloatArray,
    genes: npt.NDArray[np.intp],
    gene_mean: FloatArray,
    n_samples: int,
    n_pcs: int = 5,
) -> PCAAxes:
    """Eigenvectors of the gathered cross-product: the right singular vectors of the
    centred samples × genes matrix, signed as :func:`cohortnorm.qc.pca` signs them."""
    k = max(0, min(n_pcs, n_samples - 1, len(genes)))
    eigenvalues, vectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:k]
    squares = np.clip(eigenvalues[order], 0.0, None)
    vt = vectors[:, order].T
    loadings = (vt * loading_signs(vt)[:, None]).T if k else np.empty((len(genes), 0))
    total = float(np.trace(gram))
    variance = squares / max(n_samples - 1, 1)
    ratio = squares / total if total > 0 else np.zeros(k)
    return PCAAxes(genes, gene_mean, loadings, variance, ratio)


def shard_pca_scores(shard: FloatArray, axes: PCAAxes) -> FloatArray:
    """The shard's samples' scores (samples × k): centred data times the loadings."""
    centred = shard[axes.genes] - axes.gene_mean[axes.genes][:, None]
    return centred.T @ axes.loadings


def sharded_pca(
    source: MatrixSource, samples_per_shard: int, *, top_genes: int = 1000, n_pcs: int = 5
) -> PCAResult:
    """:func:`cohortnorm.qc.pca` over sample shards, through the gene × gene
    cross-product of the top variable genes (see ``docs/sharding.md`` for accuracy)."""
    n_samples = source.shape[1]
    sums = [shard_gene_sums(s) for _, s in shards(source, samples_per_shard)]
    gene_mean = np.sum(sums, axis=0) / n_samples
    squares = [shard_gene_squares(s, gene_mean) for _, s in shards(source, samples_per_shard)]
    genes = top_genes_by_variance(np.sum(squares, axis=0) / n_samples, top_genes)
    gram = np.sum(
        [
            shard_gene_cross_product(s, genes, gene_mean)
            for _, s in shards(source, samples_per_shard)
        ],
        axis=0,
    )
    axes = gather_pca_axes(gram, genes, gene_mean, n_samples, n_pcs)
    scores = np.vstack([shard_pca_scores(s, axes) for _, s in shards(source, samples_per_shard)])
    return PCAResult(scores, axes.variance, axes.variance_ratio, genes)


# --------------------------------------------------------------------------- ComBat-seq


def seq_shard_nonzero(shard: FloatArray, columns: slice, plan: SeqPlan) -> BoolArray:
    """Pass 1 (sample shards): per batch × gene, whether the shard has a nonzero count
    of that gene in that batch (sva keeps genes nonzero somewhere in every batch)."""
    codes = plan.bcode[columns]
    out = np.zeros((len(plan.blevels), shard.shape[0]), dtype=bool)
    for k in np.unique(codes):
        out[k] = (shard[:, codes == k] != 0).any(axis=1)
    return out


def gather_seq_keep(parts: Sequence[BoolArray]) -> BoolArray:
    """The genes ComBat-seq adjusts: nonzero in every batch."""
    return np.logical_or.reduce(list(parts)).all(axis=0)


def seq_shard_lib_size(shard: FloatArray, keep: BoolArray) -> FloatArray:
    """Pass 2 (sample shards): each sample's sum over the kept genes."""
    return shard[keep].sum(axis=0)


def seq_common_dispersions(
    source: MatrixSource, plan: SeqPlan, keep: BoolArray, lib_size: FloatArray, threads: int = 1
) -> list[float]:
    """The pooled pass: each batch's common dispersion over all kept genes.

    edgeR maximises the adjusted profile likelihood summed over every gene, so this
    step reads one batch at a time whole (kept genes × that batch's samples): its
    memory is ``n_kept_genes × batch size``, the largest of the sharded ComBat-seq.
    """
    common = []
    for k, ind in enumerate(plan.batches_ind):
        y_b = np.asarray(source.read_columns(ind), dtype=np.float64)[keep]
        common.append(combat_seq.batch_common_dispersion(y_b, plan, k, lib_size[ind], threads))
    return common


def seq_gene_block(
    block: FloatArray,
    keep: BoolArray,
    plan: SeqPlan,
    common: Sequence[float],
    lib_size: FloatArray,
    threads: int = 1,
) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
    """One gene block (those genes × all samples): adjusted counts, and the kept genes'
    ``gamma.hat`` and dispersions. Every step after the pooled ones is per gene."""
    yk = block[keep]
    if yk.shape[0] == 0:  # nothing to fit in this block: every gene stays as it is
        empty = np.empty((0, len(plan.blevels)))
        return block.astype(np.int64), empty, empty
    phi_hat = combat_seq.batch_dispersions(yk, plan, threads, common, lib_size)
    gamma_hat, mu_hat, phi_matrix = combat_seq.fit_batch_glm(yk, plan, phi_hat, lib_size, threads)
    adjusted = block.copy()
    adjusted[keep] = combat_seq.adjust_kept_counts(
        yk, mu_hat, phi_matrix, gamma_hat, phi_hat, plan.bcode, threads
    )
    return adjusted.astype(np.int64), gamma_hat, phi_hat


def sharded_combat_seq(
    source: MatrixSource,
    samples_per_shard: int,
    genes_per_block: int,
    plan: SeqPlan,
    threads: int = 1,
) -> Iterator[tuple[slice, npt.NDArray[np.int64]]]:
    """sva's ``ComBat_seq`` (``shrink = FALSE``) over gene blocks, equal to
    :func:`combat_seq.combat_seq`.

    Two sample-shard passes (kept genes; library sizes over them), the pooled pass
    (:func:`seq_common_dispersions`), then one job per gene block of all samples.
    Yields each block's rows and adjusted counts.
    """
    nonzero = [seq_shard_nonzero(s, c, plan) for c, s in shards(source, samples_per_shard)]
    keep = gather_seq_keep(nonzero)
    lib_size = np.concatenate(
        [seq_shard_lib_size(s, keep) for _, s in shards(source, samples_per_shard)]
    )
    common = seq_common_dispersions(source, plan, keep, lib_size, threads)
    n_genes = source.shape[0]
    for start in range(0, n_genes, genes_per_block):
        rows = slice(start, min(start + genes_per_block, n_genes))
        block = np.asarray(source.read_rows(rows), dtype=np.float64)
        adjusted, _, _ = seq_gene_block(block, keep[rows], plan, common, lib_size, threads)
        yield rows, adjusted
