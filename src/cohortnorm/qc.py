"""Quality-control numerics: per-sample summaries, PCA, batch/condition metrics, flags.

Everything here works on in-memory arrays (genes × samples, log scale unless stated)
and returns small summaries — quantiles, histograms, PC scores, a correlation matrix —
that :mod:`cohortnorm.plots` draws. Nothing reads or writes files.

The expensive passes over a full matrix (quantiles, histograms, whiskers, RLE) run in
blocks of samples, so a 60,000 × 1,000 matrix needs only a few block-sized temporaries
on top of the matrix itself. PCA and the correlation heatmap use the most variable
genes only (``top_genes``); the heatmap draws at most :data:`HEATMAP_MAX_SAMPLES`
samples, chosen by :func:`heatmap_samples`.

No sample × sample product goes to BLAS as ``x @ x.T``: numpy sends that form to
``syrk``, which crashes (SIGSEGV) in the multithreaded OpenBLAS 0.3.31 that numpy 2.4
bundles once there are about 15,000 or more samples (docs/blas.md). Such products go
through :func:`cross_product` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cohortnorm.blocks import BLOCK_CELLS, cell_slices, slices

#: 1.4826 · MAD estimates the standard deviation of normal data.
MAD_SCALE = 1.4826
#: Above this many samples and top genes the PCA uses a randomized SVD.
EXACT_SVD_LIMIT = 2000
#: Most samples drawn in the correlation heatmap (a stated, stratified subset beyond).
HEATMAP_MAX_SAMPLES = 500
#: Rows of the left operand per BLAS call in :func:`cross_product`.
CROSS_PRODUCT_ROWS = 2048
#: Cramér's V between batch and condition from which the verdict is ``confounded``.
CONFOUNDED_CRAMERS_V = 0.8
#: Largest |batch_r2 - condition_r2| for which the verdict is ``unclear``.
UNCLEAR_R2_MARGIN = 0.05
#: The verdict rule, as written to the ``verdict_rule`` column of the metrics.
VERDICT_RULE = (
    f"confounded if Cramér's V(batch, condition) >= {CONFOUNDED_CRAMERS_V:g}; "
    "undetermined if batch_r2 or condition_r2 is missing; "
    f"unclear if |batch_r2 - condition_r2| <= {UNCLEAR_R2_MARGIN:g}; "
    "else the factor with the larger R²"
)


@dataclass(frozen=True)
class PCAResult:
    """Principal components of the top variable genes.

    Attributes
    ----------
    scores
        samples × k principal component scores.
    variance
        Variance of each PC's scores (squared singular value / (n - 1)).
    variance_ratio
        Each PC's share of the total variance of the genes used.
    genes
        Row indices (into the input matrix) of the genes used, most variable first.
    """

    scores: np.ndarray
    variance: np.ndarray
    variance_ratio: np.ndarray
    genes: np.ndarray


@dataclass(frozen=True)
class MAHistograms:
    """2D histograms of M (sample - pseudo-reference) against A (their mean).

    Attributes
    ----------
    samples
        Names of the samples drawn.
    counts
        panels × a_bins × m_bins gene counts.
    a_edges, m_edges
        Bin edges of A and M.
    n_samples
        Samples in the cohort (``len(samples)`` may be smaller: panels are limited).
    """

    samples: list[str]
    counts: np.ndarray
    a_edges: np.ndarray
    m_edges: np.ndarray
    n_samples: int


@dataclass
class StageQC:
    """Everything QC computes for one stage (raw, normalized, batch-corrected).

    Attributes
    ----------
    samples
        Sample names, in column order.
    distribution
        Per-sample quantiles and Tukey whiskers (see :func:`distribution_summary`).
    density_edges, density
        Common bin edges and samples × bins density of each sample's values.
    rle
        Per-sample summary of the relative log expression (value - gene median).
    pca
        PCA of the top variable genes.
    correlation
        Pearson correlation over the top variable genes between the samples
        ``correlation_samples`` (all of them up to :data:`HEATMAP_MAX_SAMPLES`).
    linkage
        Average-linkage clustering of ``1 - correlation`` (scipy linkage matrix).
    ma
        MA histograms of the first samples against the pseudo-reference.
    metrics
        One row of :func:`stage_metrics`, as a dict.
    per_sample
        Per-sample table: median, IQR, median RLE, RLE IQR, PC scores, PCA distance.
    correlation_samples
        Column indices (increasing) of the samples in ``correlation``.
    gene_variance
        Variance of each gene across samples (``values.var(axis=1)``), which chose the
        top genes; :func:`cohortnorm.diagnostics.gpca_delta` reuses it.
    """

    samples: list[str]
    distribution: pd.DataFrame
    density_edges: np.ndarray
    density: np.ndarray
    rle: pd.DataFrame
    pca: PCAResult
    correlation: np.ndarray
    linkage: np.ndarray
    ma: MAHistograms
    metrics: dict[str, object]
    per_sample: pd.DataFrame
    condition: np.ndarray | None = None
    batch: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)
    correlation_samples: np.ndarray | None = None
    gene_variance: np.ndarray | None = None


def _as_float(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a genes × samples matrix, got shape {values.shape}")
    return values


def sorted_quantiles(rows: np.ndarray, probabilities: Sequence[float]) -> np.ndarray:
    """Quantiles of each row of an already sorted matrix, as :func:`numpy.quantile`.

    The same order statistics and the same interpolation (``method="linear"``, numpy's
    ``_lerp``) as ``numpy.quantile(rows, probabilities, axis=1)``, so the numbers are
    identical; only the sort is shared by every quantile, the minimum, the maximum
    and the whiskers, instead of one selection per call.

    Parameters
    ----------
    rows
        m × n, each row sorted increasingly, n >= 1.
    probabilities
        Probabilities in [0, 1].

    Returns
    -------
    numpy.ndarray
        len(probabilities) × m.
    """
    n = rows.shape[1]
    result = np.empty((len(probabilities), rows.shape[0]))
    for i, probability in enumerate(probabilities):
        virtual = (n - 1) * float(probability)
        if virtual >= n - 1:
            result[i] = rows[:, n - 1]
            continue
        previous = int(np.floor(virtual))
        gamma = virtual - previous
        low, high = rows[:, previous], rows[:, previous + 1]
        difference = high - low
        # numpy's _lerp: from the nearer end, so that gamma 0 and 1 give the ends exactly.
        result[i] = high - difference * (1 - gamma) if gamma >= 0.5 else low + difference * gamma
    return result


#: Columns of :func:`distribution_summary`.
DISTRIBUTION_COLUMNS = ["min", "q1", "median", "q3", "max", "mean", "iqr", "whislo", "whishi"]


def _distribution_rows(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The :data:`DISTRIBUTION_COLUMNS` of each row of ``chunk`` (samples × genes).

    One sort per row gives the quartiles, the ends and the whiskers (the first sorted
    value at or above q1 - 1.5 IQR, the last at or below q3 + 1.5 IQR); the mean is
    taken on the unsorted row, so its summation order is numpy's usual one. The sorted
    rows are returned too.
    """
    mean = chunk.mean(axis=1)
    ordered = np.sort(chunk, axis=1)
    q1, median, q3 = sorted_quantiles(ordered, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    rows = np.arange(len(ordered))
    first = np.array(
        [np.searchsorted(r, v, side="left") for r, v in zip(ordered, low, strict=True)]
    )
    last = np.array(
        [np.searchsorted(r, v, side="right") - 1 for r, v in zip(ordered, high, strict=True)]
    )
    whislo, whishi = ordered[rows, first], ordered[rows, last]
    table = np.column_stack(
        [ordered[:, 0], q1, median, q3, ordered[:, -1], mean, iqr, whislo, whishi]
    )
    return table, ordered


def _summary_frame(table: np.ndarray, samples: Sequence[str] | None) -> pd.DataFrame:
    n = len(table)
    index = pd.Index(list(samples) if samples is not None else range(n), name="sample")
    return pd.DataFrame(table, index=index, columns=DISTRIBUTION_COLUMNS)


def _sample_block(values: np.ndarray, block: slice) -> np.ndarray:
    """Columns ``block`` of ``values`` as a C-ordered samples × genes copy."""
    return np.array(values[:, block].T, order="C", dtype=np.float64)


def distribution_summary(
    values: np.ndarray,
    samples: Sequence[str] | None = None,
    *,
    center: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-sample quantiles and Tukey whiskers, computed block-wise.

    Parameters
    ----------
    values
        genes × samples, finite.
    samples
        Sample names for the index (default ``0..n-1``).
    center
        Optional per-gene values subtracted first (e.g. gene medians, for RLE).

    Returns
    -------
    pandas.DataFrame
        One row per sample with ``min, q1, median, q3, max, mean, iqr, whislo, whishi``
        (quantiles as :func:`numpy.quantile`); the whiskers are the most extreme values
        within 1.5 IQR of the quartiles, as in :meth:`matplotlib.axes.Axes.boxplot`.
    """
    values = _as_float(values)
    n = values.shape[1]
    table = np.empty((n, len(DISTRIBUTION_COLUMNS)))
    for block in cell_slices(n, values.shape[0], BLOCK_CELLS):
        chunk = _sample_block(values, block)
        if center is not None:
            chunk -= center[None, :]
        table[block] = _distribution_rows(chunk)[0]
    return _summary_frame(table, samples)


@dataclass(frozen=True)
class GeneSummary:
    """Per-gene mean, variance (``ddof=0``) and median across samples, and the range.

    Attributes
    ----------
    mean, variance, median
        One value per gene, as ``values.mean(axis=1)``, ``values.var(axis=1)`` and
        ``numpy.median(values, axis=1)``.
    low, high
        Smallest and largest value of the matrix.
    """

    mean: np.ndarray
    variance: np.ndarray
    median: np.ndarray
    low: float
    high: float


def gene_summary(values: np.ndarray) -> GeneSummary:
    """:class:`GeneSummary` of a genes × samples matrix in one pass over blocks of genes.

    Each block is a small C-ordered copy, so the three statistics and the range cost
    one read of the matrix and no matrix-sized temporary (``values.var(axis=1)`` alone
    makes two).
    """
    values = _as_float(values)
    n_genes, n = values.shape
    mean, variance, median = np.empty(n_genes), np.empty(n_genes), np.empty(n_genes)
    low, high = np.inf, -np.inf
    for rows in cell_slices(n_genes, n, BLOCK_CELLS):
        block = np.array(values[rows], order="C")
        if n == 0:
            mean[rows] = variance[rows] = median[rows] = np.nan
            continue
        mean[rows] = block.mean(axis=1)
        variance[rows] = block.var(axis=1)
        block.sort(axis=1)
        low, high = min(low, float(block[:, 0].min())), max(high, float(block[:, -1].max()))
        half = n // 2
        # numpy.median: the middle value, or the mean of the two middle ones.
        median[rows] = block[:, half] if n % 2 else block[:, half - 1 : half + 1].mean(axis=1)
    return GeneSummary(mean, variance, median, low, high)


def _bin_counts(chunk: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of each row of ``chunk`` (samples × genes) in the equal-width ``edges``;
    values outside go to the end bins."""
    n_bins = len(edges) - 1
    width = edges[1] - edges[0]
    index = np.clip(((chunk - edges[0]) / width).astype(np.int64), 0, n_bins - 1)
    index += np.arange(chunk.shape[0])[:, None] * n_bins
    return np.bincount(index.ravel(), minlength=chunk.shape[0] * n_bins).reshape(
        chunk.shape[0], n_bins
    )


def _sorted_bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`_bin_counts` of rows already sorted, by binary search: a value's bin
    (``floor((x - edges[0]) / width)``, clipped) never decreases along a sorted row, so
    each bin's count is the distance between the first positions reaching it and the
    next bin. The same counts, from about 17 probes per bin instead of a pass per value.
    """
    n_bins = len(edges) - 1
    width = edges[1] - edges[0]
    m, n = ordered.shape
    targets = np.arange(1, n_bins)[None, :]
    low = np.zeros((m, n_bins - 1), dtype=np.int64)
    high = np.full((m, n_bins - 1), n, dtype=np.int64)
    rows = np.arange(m)[:, None]
    while (active := low < high).any():
        middle = (low + high) // 2
        values = ordered[rows, np.minimum(middle, n - 1)]
        bins = np.clip(((values - edges[0]) / width).astype(np.int64), 0, n_bins - 1)
        below = active & (bins < targets)  # the first position of the bin is further on
        low = np.where(below, middle + 1, low)
        high = np.where(active & ~below, middle, high)
    starts = np.concatenate([np.zeros((m, 1), np.int64), low, np.full((m, 1), n)], axis=1)
    return np.diff(starts, axis=1)


def _smoothed_density(counts: np.ndarray, edges: np.ndarray, smooth_bins: float) -> np.ndarray:
    """Histogram counts (samples × bins) smoothed and scaled to integrate to 1."""
    counts = np.asarray(counts, dtype=np.float64)
    width = edges[1] - edges[0]
    if smooth_bins > 0:
        radius = int(np.ceil(4 * smooth_bins))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / smooth_bins) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(counts, ((0, 0), (radius, radius)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=1)
        counts = windows @ kernel
    totals = counts.sum(axis=1, keepdims=True) * width
    return counts / np.where(totals > 0, totals, 1.0)


def density_histograms(
    values: np.ndarray, edges: np.ndarray, *, smooth_bins: float = 1.5
) -> np.ndarray:
    """Per-sample densities on common bins, vectorised (no per-point plotting).

    Parameters
    ----------
    values
        genes × samples.
    edges
        Increasing, equally spaced bin edges; values outside go to the end bins.
    smooth_bins
        Standard deviation, in bins, of the Gaussian kernel smoothing each histogram
        (0 for none).

    Returns
    -------
    numpy.ndarray
        samples × bins densities (each integrates to 1 over ``edges``).
    """
    values = _as_float(values)
    edges = np.asarray(edges, dtype=np.float64)
    n = values.shape[1]
    counts = np.empty((n, len(edges) - 1))
    for block in cell_slices(n, values.shape[0], BLOCK_CELLS):
        counts[block] = _bin_counts(values[:, block].T, edges)
    return _smoothed_density(counts, edges, smooth_bins)


def top_variable_genes(
    values: np.ndarray, n: int, *, variance: np.ndarray | None = None
) -> np.ndarray:
    """Row indices of the ``n`` genes with the largest variance across samples.

    Ties are broken by row order; genes with zero variance are never chosen.
    ``variance`` (``values.var(axis=1)``, e.g. :attr:`GeneSummary.variance`) saves the
    pass over the matrix when already known.
    """
    if variance is None:
        variance = _as_float(values).var(axis=1)
    return top_genes_by_variance(variance, n)


def top_genes_by_variance(variance: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` largest positive ``variance`` entries' indices, ties by index order.

    Shared with the sharded PCA (``cohortnorm.sharded``), which gathers the variances.
    """
    order = np.lexsort((np.arange(len(variance)), -variance))
    order = order[variance[order] > 0]
    return order[: min(n, len(order))]


def _svd(matrix: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets: exact for small matrices, else randomized.

    Exact: the top ``k`` eigenvectors of the smaller Gram matrix (LAPACK ``syevr`` with an
    index range), then one multiplication by ``matrix`` each way, so the singular values
    and vectors come from ``matrix`` itself. The same triplets as a full SVD up to
    rounding, at a fraction of its cost: the full SVD computed every singular vector of a
    1,000 × 1,000 matrix to keep five.
    """
    if min(matrix.shape) <= EXACT_SVD_LIMIT:
        from scipy.linalg import eigh

        n, g = matrix.shape
        small = min(n, g)
        k = min(k, small)
        gram = cross_product(matrix) if n <= g else cross_product(matrix.T)
        eigenvalues, vectors = eigh(gram, subset_by_index=[small - k, small - 1])
        eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
        right = matrix.T @ vectors if n <= g else vectors  # genes × k, along V
        norms = np.linalg.norm(right, axis=0)
        # Rank deficient (e.g. duplicated samples): an eigenvalue at rounding level of the
        # largest is a zero singular value, whose vector would be rounding noise; it gets
        # a zero component, as the full SVD gives one at rounding level.
        top = max(float(eigenvalues[0]), 0.0) if k else 0.0
        zero = (eigenvalues <= max(n, g) * np.finfo(float).eps * top) | (norms == 0)
        right = np.where(zero, 0.0, right / np.where(zero, 1.0, norms))
        scaled = matrix @ right  # samples × k: U · s
        s = np.linalg.norm(scaled, axis=0)
        return scaled / np.where(s > 0, s, 1.0), s, right.T
    rng = np.random.default_rng(seed)
    oversample = min(k + 10, min(matrix.shape))
    q, _ = np.linalg.qr(matrix @ rng.standard_normal((matrix.shape[1], oversample)))
    for _ in range(4):
        q, _ = np.linalg.qr(matrix.T @ q)
        q, _ = np.linalg.qr(matrix @ q)
    u_small, s, vt = np.linalg.svd(q.T @ matrix, full_matrices=False)
    return (q @ u_small)[:, :k], s[:k], vt[:k]


def pca(
    values: np.ndarray,
    *,
    top_genes: int = 1000,
    n_pcs: int = 5,
    seed: int = 0,
    variance: np.ndarray | None = None,
) -> PCAResult:
    """PCA of the samples on the ``top_genes`` most variable genes (centred, not scaled).

    Parameters
    ----------
    values
        genes × samples, log scale.
    top_genes
        Genes used (config ``qc.top_variable_genes``).
    n_pcs
        Components kept; at most ``samples - 1`` and the number of genes used.
    seed
        Seed of the randomized SVD used when both dimensions exceed 2,000.
    variance
        Per-gene variance when already known (see :func:`top_variable_genes`).

    Returns
    -------
    PCAResult
        Scores with a deterministic sign: each component's largest-magnitude gene
        loading is positive.
    """
    values = _as_float(values)
    genes = top_variable_genes(values, top_genes, variance=variance)
    n_samples = values.shape[1]
    k = max(0, min(n_pcs, n_samples - 1, len(genes)))
    if k == 0:
        empty = np.empty((n_samples, 0))
        return PCAResult(empty, np.empty(0), np.empty(0), genes)
    matrix = values[genes].T  # samples × genes
    matrix = matrix - matrix.mean(axis=0)
    u, s, vt = _svd(matrix, k, seed)
    signs = loading_signs(vt)
    scores = u * s * signs
    total = float(np.square(matrix).sum())
    variance = s**2 / max(n_samples - 1, 1)
    ratio = s**2 / total if total > 0 else np.zeros(k)
    return PCAResult(scores, variance, ratio, genes)


def loading_signs(vt: np.ndarray) -> np.ndarray:
    """The sign making each component's largest-magnitude gene loading positive."""
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return signs


def _codes(labels: Sequence[object]) -> np.ndarray:
    return pd.factorize(pd.Series(list(labels)).astype(str), sort=True)[0]


def factor_r2(scores: np.ndarray, labels: Sequence[object], weights: np.ndarray) -> float:
    """Variance of the PCs explained by a factor: weighted mean R² over PCs.

    For each PC, R² of the least-squares fit of its scores on the one-hot coded
    factor (an intercept plus level indicators, i.e. the group means); the R² are
    averaged with weights ``weights`` (the PC variances).

    Parameters
    ----------
    scores
        samples × k PC scores.
    labels
        One factor level per sample.
    weights
        k non-negative weights.

    Returns
    -------
    float
        In [0, 1]; NaN with fewer than two levels or no variance.
    """
    scores = np.asarray(scores, dtype=np.float64)
    codes = _codes(labels)
    n_levels = codes.max() + 1 if len(codes) else 0
    if n_levels < 2 or scores.shape[1] == 0:
        return float("nan")
    centred = scores - scores.mean(axis=0)
    total = np.square(centred).sum(axis=0)
    sums = np.zeros((n_levels, scores.shape[1]))
    np.add.at(sums, codes, centred)
    sizes = np.bincount(codes, minlength=n_levels)[:, None]
    between = (np.square(sums) / sizes).sum(axis=0)
    valid = total > 0
    weights = np.asarray(weights, dtype=np.float64)
    if not valid.any() or weights[valid].sum() <= 0:
        return float("nan")
    r2 = between[valid] / total[valid]
    return float(np.clip(np.average(r2, weights=weights[valid]), 0.0, 1.0))


def cross_product(left: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
    """``left @ right.T`` by blocks of rows of ``left``, never through BLAS ``syrk``.

    numpy hands ``x @ x.T`` (one buffer, transposed) to BLAS ``syrk``. The multithreaded
    ``dsyrk`` of OpenBLAS 0.3.31, bundled with numpy 2.4, dies with SIGSEGV for about
    15,000 or more rows on AVX-512 CPUs (docs/blas.md). Each block here is a copy, so
    numpy calls ``gemm`` with two distinct operands, which is not affected; blocks of
    :data:`CROSS_PRODUCT_ROWS` rows keep every single call small as well. For a Gram
    matrix only the blocks on and below the diagonal are multiplied (as ``syrk`` does)
    and the rest is their transpose, so the result is exactly symmetric.

    Parameters
    ----------
    left
        m × k.
    right
        n × k; ``left`` when omitted (the Gram matrix ``left @ left.T``).

    Returns
    -------
    numpy.ndarray
        m × n float64.
    """
    left = np.asarray(left, dtype=np.float64)
    gram = right is None
    right = left if right is None else np.asarray(right, dtype=np.float64)
    result = np.empty((left.shape[0], right.shape[0]))
    blocks = slices(left.shape[0], CROSS_PRODUCT_ROWS)
    for rows in blocks:
        columns = slice(0, rows.stop if gram else right.shape[0])
        np.matmul(
            np.array(left[rows], order="C", copy=True),
            right[columns].T,
            out=result[rows, columns],
        )
    if gram:
        for rows in blocks:
            result[rows, rows.stop :] = result[rows.stop :, rows].T
    return result


def silhouette(points: np.ndarray, labels: Sequence[object]) -> float:
    """Mean silhouette width of samples grouped by ``labels`` (Euclidean distance).

    s(i) = (b - a) / max(a, b), with a the mean distance to the other members of its
    own group and b the smallest mean distance to another group; a sample alone in
    its group has s = 0 (as in Rousseeuw 1987 and scikit-learn).

    Parameters
    ----------
    points
        samples × d coordinates (e.g. PC scores).
    labels
        One group label per sample.

    Returns
    -------
    float
        In [-1, 1]; NaN with fewer than two groups or as many groups as samples.
    """
    return silhouettes(points, [labels])[0]


def silhouettes(points: np.ndarray, groupings: Sequence[Sequence[object]]) -> list[float]:
    """:func:`silhouette` of several groupings of the same points, in one pass.

    The sample × sample distances are made for a block of samples at a time and
    summed per group of every grouping at once, so 17,000 samples need neither a
    17,000² matrix nor one pass per grouping.

    Parameters
    ----------
    points
        samples × d coordinates.
    groupings
        Label sequences, one label per sample each.

    Returns
    -------
    list of float
        One mean silhouette width per grouping (NaN as in :func:`silhouette`).
    """
    points = np.asarray(points, dtype=np.float64)
    n = points.shape[0]
    codes = [_codes(labels) for labels in groupings]
    for labels in codes:
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} points")
    levels = [int(c.max()) + 1 if n else 0 for c in codes]
    used = [i for i, k in enumerate(levels) if 2 <= k < n]
    results = [float("nan")] * len(codes)
    if not used:
        return results
    offsets = np.concatenate([[0], np.cumsum([levels[i] for i in used])])
    one_hot = np.zeros((n, int(offsets[-1])))
    for offset, i in zip(offsets, used, strict=False):
        one_hot[np.arange(n), offset + codes[i]] = 1.0
    squared = np.square(points).sum(axis=1)
    sums = np.empty((n, one_hot.shape[1]))  # samples × groups: total distance to each group
    for rows in cell_slices(n, n, BLOCK_CELLS):
        # |x - y|² = |x|² + |y|² - 2 x·y, in place on the block's Gram matrix.
        distance = cross_product(points[rows], points)
        distance *= -2.0
        distance += squared[rows, None]
        distance += squared[None, :]
        np.maximum(distance, 0.0, out=distance)
        np.sqrt(distance, out=distance)
        distance[np.arange(distance.shape[0]), np.arange(n)[rows]] = 0.0
        sums[rows] = distance @ one_hot
    for start, stop, i in zip(offsets[:-1], offsets[1:], used, strict=True):
        group, group_sums = codes[i], sums[:, start:stop]
        sizes = one_hot[:, start:stop].sum(axis=0)
        own_size = sizes[group]
        a = group_sums[np.arange(n), group] / np.maximum(own_size - 1, 1)
        mean_other = group_sums / sizes
        mean_other[np.arange(n), group] = np.inf
        b = mean_other.min(axis=1)
        denominator = np.maximum(a, b)
        s = np.where(denominator > 0, (b - a) / np.where(denominator > 0, denominator, 1), 0.0)
        s[own_size == 1] = 0.0
        results[i] = float(s.mean())
    return results


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 · MAD); falls back to 1.2533 · mean absolute deviation
    when the MAD is 0, and to all-zero z when that is 0 too."""
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values)
    deviation = np.abs(values - median)
    scale = MAD_SCALE * np.median(deviation)
    if scale <= 0:
        scale = 1.2533 * deviation.mean()
    if scale <= 0:
        return np.zeros_like(values)
    return (values - median) / scale


def pca_distance(pca_result: PCAResult) -> np.ndarray:
    """Distance of each sample to the median sample in PC space, each PC scaled to unit
    variance (a Mahalanobis distance, PCs being uncorrelated)."""
    scores = pca_result.scores
    if scores.shape[1] == 0:
        return np.zeros(scores.shape[0])
    scale = np.sqrt(np.where(pca_result.variance > 0, pca_result.variance, 1.0))
    centred = (scores - np.median(scores, axis=0)) / scale
    return np.sqrt(np.square(centred).sum(axis=1))


def ma_histograms(
    values: np.ndarray,
    samples: Sequence[str],
    *,
    max_panels: int = 12,
    bins: int = 60,
    reference: np.ndarray | None = None,
) -> MAHistograms:
    """MA histograms of the first ``max_panels`` samples against the pseudo-reference.

    The pseudo-reference is the gene-wise mean over all samples; M = sample - reference
    and A = (sample + reference) / 2. Ranges are shared by all panels (M clipped to its
    0.1-99.9 % quantiles). ``reference`` (the gene means, e.g. :attr:`GeneSummary.mean`)
    saves a pass over the matrix when already known.
    """
    values = _as_float(values)
    if reference is None:
        reference = values.mean(axis=1)
    shown = min(max_panels, values.shape[1])
    columns = values[:, :shown]
    m = columns - reference[:, None]
    a = (columns + reference[:, None]) / 2
    if m.size:
        m_low, m_high = np.quantile(m, [0.001, 0.999])
        a_low, a_high = float(a.min()), float(a.max())
    else:
        m_low = m_high = a_low = a_high = 0.0
    m_limit = max(abs(m_low), abs(m_high), 1e-6)
    a_edges = np.linspace(a_low, a_high if a_high > a_low else a_low + 1, bins + 1)
    m_edges = np.linspace(-m_limit, m_limit, bins + 1)
    counts = (
        np.stack(
            [
                np.histogram2d(a[:, j], np.clip(m[:, j], -m_limit, m_limit), [a_edges, m_edges])[0]
                for j in range(shown)
            ]
        )
        if shown
        else np.zeros((0, bins, bins))
    )
    return MAHistograms(list(samples)[:shown], counts, a_edges, m_edges, values.shape[1])


def heatmap_samples(
    n: int,
    condition: Sequence[object] | None = None,
    batch: Sequence[object] | None = None,
    *,
    limit: int = HEATMAP_MAX_SAMPLES,
) -> np.ndarray:
    """The samples drawn in the correlation heatmap: all, or a stratified subset.

    Up to ``limit`` samples, all are drawn. Beyond, the samples are split into strata
    (each condition × batch combination present, or one stratum when neither is known);
    every stratum gets one sample, and the rest of ``limit`` is shared in proportion to
    the strata's remaining sizes (largest remainders; ties go to the first stratum in
    sorted order). Within a stratum the samples taken are evenly spaced in column
    order. No random numbers: the same sheet gives the same subset.

    Parameters
    ----------
    n
        Number of samples.
    condition, batch
        One label per sample, or ``None``.
    limit
        Most samples returned.

    Returns
    -------
    numpy.ndarray
        Increasing column indices.
    """
    if n <= limit:
        return np.arange(n)
    keys = pd.Series([""] * n, dtype=object)
    for labels in (condition, batch):
        if labels is not None:
            keys = keys + "\x1f" + pd.Series(list(labels), dtype=object).astype(str)
    codes = pd.factorize(keys, sort=True)[0]
    order = np.argsort(codes, kind="stable")  # column order within each stratum
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if len(sizes) >= limit:
        # More strata than places: evenly spaced over the samples sorted by stratum.
        positions = ((np.arange(limit) + 0.5) * n / limit).astype(np.int64)
        return np.sort(order[positions])
    extra = limit - len(sizes)
    share = extra * (sizes - 1) / (n - len(sizes))
    quota = np.floor(share).astype(np.int64)
    leftover = extra - int(quota.sum())
    by_remainder = np.lexsort((np.arange(len(sizes)), -(share - quota)))
    quota[by_remainder[:leftover]] += 1
    quota += 1
    chosen = [
        order[start + ((np.arange(q) + 0.5) * size / q).astype(np.int64)]
        for start, size, q in zip(starts, sizes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def correlation_clustering(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation between samples and its average-linkage clustering.

    Parameters
    ----------
    values
        genes × samples (the top variable genes of the heatmap's samples).

    Returns
    -------
    tuple of numpy.ndarray
        samples × samples correlation, and the scipy linkage matrix of ``1 - r``
        (empty with fewer than two samples).
    """
    # Imported here: scipy.cluster loads scipy.spatial and scipy.sparse (a quarter of a
    # second), which the modules importing qc for its small helpers do not need.
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    values = _as_float(values)
    n = values.shape[1]
    if n < 2:
        return np.ones((n, n)), np.empty((0, 4))
    centred = values - values.mean(axis=0)
    norms = np.sqrt(np.square(centred).sum(axis=0))
    norms[norms == 0] = 1.0
    standardised = (centred / norms).T  # samples × genes
    correlation = np.clip(cross_product(standardised), -1.0, 1.0)
    np.fill_diagonal(correlation, 1.0)
    distance = squareform(1.0 - correlation, checks=False)
    return correlation, hierarchy.linkage(np.maximum(distance, 0.0), method="average")


def cramers_v(first: Sequence[object], second: Sequence[object]) -> float:
    """Cramér's V between two factors: how far one sample-sheet column predicts the other.

    V = sqrt(chi² / (n · (min(r, c) - 1))), with chi² Pearson's statistic of the
    r × c contingency table, without continuity correction (Cramér 1946; in R,
    ``sqrt(chisq.test(table(a, b), correct = FALSE)$statistic / (n * (min(r, c) - 1)))``).
    V = 1 when either factor determines the other (identical or nested designs), and
    0 when every level of one has the same mix of levels of the other.

    Parameters
    ----------
    first, second
        One label per sample each.

    Returns
    -------
    float
        In [0, 1]; NaN when either factor has fewer than two levels.
    """
    a, b = _codes(first), _codes(second)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels against {len(b)}")
    n = len(a)
    if n == 0:
        return float("nan")
    r, c = a.max() + 1, b.max() + 1
    if min(r, c) < 2:
        return float("nan")
    table = np.zeros((r, c))
    np.add.at(table, (a, b), 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float((np.square(table - expected) / expected).sum())
    return float(np.clip(np.sqrt(chi2 / (n * (min(r, c) - 1))), 0.0, 1.0))


def verdict(batch_r2: float, condition_r2: float, association: float = float("nan")) -> str:
    """What the top PCs follow, by :data:`VERDICT_RULE`.

    Parameters
    ----------
    batch_r2, condition_r2
        Share of the PC variance explained by each factor (:func:`factor_r2`).
    association
        Cramér's V between batch and condition in the sample sheet (:func:`cramers_v`);
        NaN when not known.

    Returns
    -------
    str
        ``"confounded"`` when ``association >= CONFOUNDED_CRAMERS_V``: batch and
        condition go together in the sheet, so no R² can tell them apart;
        ``"undetermined"`` when an R² is missing (NaN: no batch or condition column,
        or a single level); ``"unclear"`` when the two R² differ by at most
        ``UNCLEAR_R2_MARGIN``; otherwise ``"condition"`` or ``"batch"``, the factor
        with the larger R².
    """
    if not np.isnan(association) and association >= CONFOUNDED_CRAMERS_V:
        return "confounded"
    if np.isnan(batch_r2) or np.isnan(condition_r2):
        return "undetermined"
    if abs(batch_r2 - condition_r2) <= UNCLEAR_R2_MARGIN:
        return "unclear"
    return "condition" if condition_r2 > batch_r2 else "batch"


def _stage_metrics(
    stage: str,
    shape: tuple[int, int],
    pca_result: PCAResult,
    distribution: pd.DataFrame,
    rle: pd.DataFrame,
    batch_array: np.ndarray | None,
    condition_array: np.ndarray | None,
) -> dict[str, object]:
    """The metrics row of one stage: variance explained, silhouettes, verdict."""
    scores, weights = pca_result.scores, pca_result.variance
    nan = float("nan")
    batch_r2 = factor_r2(scores, batch_array, weights) if batch_array is not None else nan
    condition_r2 = (
        factor_r2(scores, condition_array, weights) if condition_array is not None else nan
    )
    known = [labels for labels in (batch_array, condition_array) if labels is not None]
    widths = iter(silhouettes(scores, known))
    batch_silhouette = next(widths) if batch_array is not None else nan
    condition_silhouette = next(widths) if condition_array is not None else nan
    association = (
        cramers_v(batch_array, condition_array)
        if batch_array is not None and condition_array is not None
        else nan
    )
    metrics: dict[str, object] = {
        "stage": stage,
        "n_genes": shape[0],
        "n_samples": shape[1],
        "top_genes_used": len(pca_result.genes),
        "n_pcs_used": scores.shape[1],
        "pcs_variance_fraction": float(pca_result.variance_ratio.sum()),
        "pc1_variance_fraction": float(pca_result.variance_ratio[0]) if scores.shape[1] else nan,
        "batch_r2": batch_r2,
        "condition_r2": condition_r2,
        "batch_silhouette": batch_silhouette,
        "condition_silhouette": condition_silhouette,
        "median_iqr": float(distribution["iqr"].median()),
        "median_abs_rle": float(np.median(np.abs(rle["median"]))),
        "batch_condition_cramers_v": association,
        "verdict": verdict(batch_r2, condition_r2, association),
        "verdict_rule": VERDICT_RULE,
    }
    return metrics


def stage_qc(
    values: np.ndarray,
    samples: Sequence[str],
    *,
    condition: Sequence[object] | None = None,
    batch: Sequence[object] | None = None,
    stage: str = "",
    top_genes: int = 1000,
    n_pcs: int = 5,
    seed: int = 0,
    max_ma_panels: int = 12,
    density_bins: int = 120,
    heatmap_max_samples: int = HEATMAP_MAX_SAMPLES,
) -> StageQC:
    """All QC summaries and metrics of one stage's log-scale matrix.

    Parameters
    ----------
    values
        genes × samples, log scale (logCPM), finite.
    samples
        Sample names (column order).
    condition, batch
        Biological group and batch of each sample, or ``None`` when not known.
    stage
        Stage name stored in the metrics row.
    top_genes, n_pcs, seed
        PCA settings (see :func:`pca`); the correlation heatmap uses the same genes,
        for the samples of :func:`heatmap_samples` (at most ``heatmap_max_samples``).
    max_ma_panels
        MA plot panels (the first samples).
    density_bins
        Bins of the density curves.

    Returns
    -------
    StageQC

    Raises
    ------
    ValueError
        When ``values`` has non-finite entries or the names do not match its columns.
    """
    values = _as_float(values)
    samples = [str(s) for s in samples]
    if len(samples) != values.shape[1]:
        raise ValueError(f"{len(samples)} sample names for {values.shape[1]} columns")
    if not np.isfinite(values).all():
        raise ValueError("the matrix has missing or infinite values")
    condition_array = None if condition is None else np.asarray(condition, dtype=str)
    batch_array = None if batch is None else np.asarray(batch, dtype=str)

    genes = gene_summary(values)
    low, high = genes.low, genes.high
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, density_bins + 1)
    # One pass over blocks of samples: each block is copied once and sorted twice (its
    # values, then its RLE), which gives every quantile and whisker of both summaries;
    # the density histogram comes from the same copy.
    n = values.shape[1]
    table, rle_table = (np.empty((n, len(DISTRIBUTION_COLUMNS))) for _ in range(2))
    counts = np.empty((n, density_bins))
    for block in cell_slices(n, values.shape[0], BLOCK_CELLS):
        chunk = _sample_block(values, block)
        table[block], ordered = _distribution_rows(chunk)
        counts[block] = _sorted_bin_counts(ordered, edges)
        del ordered
        chunk -= genes.median[None, :]
        rle_table[block] = _distribution_rows(chunk)[0]
    distribution = _summary_frame(table, samples)
    rle = _summary_frame(rle_table, samples)
    density = _smoothed_density(counts, edges, 1.5)
    pca_result = pca(values, top_genes=top_genes, n_pcs=n_pcs, seed=seed, variance=genes.variance)
    shown = heatmap_samples(
        values.shape[1], condition_array, batch_array, limit=heatmap_max_samples
    )
    correlation, linkage = correlation_clustering(values[np.ix_(pca_result.genes, shown)])
    ma = ma_histograms(values, samples, max_panels=max_ma_panels, reference=genes.mean)

    metrics = _stage_metrics(
        stage, values.shape, pca_result, distribution, rle, batch_array, condition_array
    )
    metrics["heatmap_samples"] = len(shown)
    distance = pca_distance(pca_result)
    per_sample = pd.DataFrame(
        {
            "median": distribution["median"].to_numpy(),
            "iqr": distribution["iqr"].to_numpy(),
            "median_rle": rle["median"].to_numpy(),
            "rle_iqr": rle["iqr"].to_numpy(),
            "pca_distance": distance,
            "pca_distance_z": robust_z(distance),
        },
        index=pd.Index(samples, name="sample"),
    )
    for k in range(pca_result.scores.shape[1]):
        per_sample[f"PC{k + 1}"] = pca_result.scores[:, k]
    return StageQC(
        samples=samples,
        distribution=distribution,
        density_edges=edges,
        density=density,
        rle=rle,
        pca=pca_result,
        correlation=correlation,
        linkage=linkage,
        ma=ma,
        metrics=metrics,
        per_sample=per_sample,
        condition=condition_array,
        batch=batch_array,
        correlation_samples=shown,
        gene_variance=genes.variance,
    )


def count_summary(counts: np.ndarray) -> pd.DataFrame:
    """Library size, detected genes (count > 0) and dropout rate (fraction of zeros).

    Parameters
    ----------
    counts
        genes × samples counts.

    Returns
    -------
    pandas.DataFrame
        Columns ``lib_size``, ``detected_genes``, ``dropout_rate``, one row per sample
        (positional index).
    """
    counts = np.asarray(counts)
    n_genes = counts.shape[0]
    detected = np.zeros(counts.shape[1], dtype=np.int64)
    lib_size = np.zeros(counts.shape[1])
    for block in cell_slices(counts.shape[1], counts.shape[0], BLOCK_CELLS):
        chunk = counts[:, block]
        detected[block] = np.count_nonzero(chunk, axis=0)
        lib_size[block] = chunk.sum(axis=0, dtype=np.float64)
    return pd.DataFrame(
        {
            "lib_size": lib_size,
            "detected_genes": detected,
            "dropout_rate": 1.0 - detected / max(n_genes, 1),
        }
    )


def sample_flags(
    counts: pd.DataFrame,
    per_sample: pd.DataFrame,
    *,
    median_rle_limit: float = 0.2,
    z_limit: float = 3.0,
    lib_size_divisor: float = 3.0,
) -> pd.DataFrame:
    """Per-sample QC values, a flag for each and the rule used.

    Parameters
    ----------
    counts
        Output of :func:`count_summary` indexed by sample.
    per_sample
        ``StageQC.per_sample`` of the stage judged (``median_rle``, ``pca_distance``).
    median_rle_limit, z_limit, lib_size_divisor
        Thresholds of the rules (stated in the ``<metric>_rule`` columns).

    Returns
    -------
    pandas.DataFrame
        Indexed by sample: for each metric its value, ``<metric>_flag`` and
        ``<metric>_rule``; then ``n_flags``.
    """
    samples = per_sample.index
    counts = counts.loc[samples]
    lib_size = counts["lib_size"].to_numpy(dtype=np.float64)
    values = {
        "lib_size": lib_size,
        "detected_genes": counts["detected_genes"].to_numpy(),
        "dropout_rate": counts["dropout_rate"].to_numpy(dtype=np.float64),
        "median_rle": per_sample["median_rle"].to_numpy(),
        "pca_distance": per_sample["pca_distance"].to_numpy(),
    }
    flags = {
        "lib_size": lib_size < np.median(lib_size) / lib_size_divisor,
        "detected_genes": robust_z(values["detected_genes"]) < -z_limit,
        "dropout_rate": robust_z(values["dropout_rate"]) > z_limit,
        "median_rle": np.abs(values["median_rle"]) > median_rle_limit,
        "pca_distance": robust_z(values["pca_distance"]) > z_limit,
    }
    rules = {
        "lib_size": f"lib_size < median(lib_size) / {lib_size_divisor:g}",
        "detected_genes": f"robust z (median/MAD) of detected_genes < -{z_limit:g}",
        "dropout_rate": f"robust z (median/MAD) of dropout_rate > {z_limit:g}",
        "median_rle": f"|median RLE| > {median_rle_limit:g}",
        "pca_distance": f"robust z (median/MAD) of PCA distance to the median > {z_limit:g}",
    }
    table = pd.DataFrame(index=pd.Index(samples, name="sample"))
    for name, value in values.items():
        table[name] = value
        if name == "pca_distance":
            table["pca_distance_z"] = robust_z(value)
        table[f"{name}_flag"] = flags[name]
        table[f"{name}_rule"] = rules[name]
    table["n_flags"] = np.sum([flags[name] for name in flags], axis=0).astype(np.int64)
    return table


def filter_summary(
    genes_in: int, genes_kept: int, *, warn_fraction: float = 0.5
) -> tuple[dict[str, object], str | None]:
    """Genes removed by the low-count filter, and a warning when too many were.

    Returns
    -------
    tuple
        The metrics columns (``genes_in``, ``genes_kept``, ``fraction_genes_removed``,
        ``filter_warning``) and the warning text, or ``None``.
    """
    removed = 1.0 - genes_kept / genes_in if genes_in else 0.0
    warn = removed > warn_fraction
    message = (
        f"the low-count filter removed {removed:.1%} of the genes ({genes_in - genes_kept} of "
        f"{genes_in}), more than qc.warn_removed_fraction = {warn_fraction:g}; check the "
        "filter settings and the library sizes"
        if warn
        else None
    )
    return (
        {
            "genes_in": int(genes_in),
            "genes_kept": int(genes_kept),
            "fraction_genes_removed": removed,
            "filter_warning": bool(warn),
        },
        message,
    )


def dropout_summary(raw: pd.DataFrame, filtered: pd.DataFrame) -> dict[str, float]:
    """Median and maximum per-sample dropout rate before and after filtering.

    Parameters
    ----------
    raw, filtered
        :func:`count_summary` of the raw and the filtered counts.
    """
    return {
        "dropout_raw_median": float(raw["dropout_rate"].median()),
        "dropout_raw_max": float(raw["dropout_rate"].max()),
        "dropout_filtered_median": float(filtered["dropout_rate"].median()),
        "dropout_filtered_max": float(filtered["dropout_rate"].max()),
    }


def metrics_frame(rows: Sequence[dict[str, object]], *, cohort: str = "") -> pd.DataFrame:
    """Metrics rows (from :func:`stage_qc`) as a table whose first column is ``cohort``."""
    frame = pd.DataFrame(list(rows))
    frame.insert(0, "cohort", cohort)
    return frame


def verdict_table(metrics: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """The verdict columns of the metrics, rounded for reading (the report's first page).

    Parameters
    ----------
    metrics
        Rows of :func:`stage_qc` metrics (``qc/metrics.tsv``).
    digits
        Decimals of the R² and Cramér's V shown; ``qc/metrics.tsv`` keeps every digit.

    Returns
    -------
    pandas.DataFrame
        ``cohort, stage, verdict, batch_r2, condition_r2, cramers_v`` (Cramér's V between
        batch and condition, ``batch_condition_cramers_v`` in the metrics); numbers as
        text with ``digits`` decimals, missing ones as ``None`` (empty cells).
    """
    table = metrics[["cohort", "stage", "verdict"]].copy()
    for name, source in [
        ("batch_r2", "batch_r2"),
        ("condition_r2", "condition_r2"),
        ("cramers_v", "batch_condition_cramers_v"),
    ]:
        values = pd.to_numeric(metrics[source], errors="coerce")
        table[name] = [None if pd.isna(v) else f"{v:.{digits}f}" for v in values]
    return table.reset_index(drop=True)


def confounding_warning(metrics: pd.DataFrame) -> str | None:
    """The warning for a ``confounded`` verdict, or ``None`` when no stage has one.

    Parameters
    ----------
    metrics
        Rows of :func:`stage_qc` metrics (``verdict``, ``batch_condition_cramers_v``).
    """
    confounded = metrics[metrics["verdict"] == "confounded"]
    if confounded.empty:
        return None
    association = float(pd.to_numeric(confounded["batch_condition_cramers_v"]).max())
    return (
        f"batch and condition go together in the sample sheet (Cramér's V {association:.2f} "
        f">= {CONFOUNDED_CRAMERS_V:g}): the QC cannot tell a batch effect from the biology, and "
        "batch correction with this design may remove the biology. Judge the uncorrected QC "
        "(qc/normalized)."
    )


def resolve_factor(
    sheet: pd.DataFrame, column: str | None, samples: Sequence[str]
) -> np.ndarray | None:
    """The sheet column ``column`` for ``samples`` as strings, or ``None``.

    ``None`` when no column is named, the sheet lacks it, or a cell is empty.
    """
    if not column or column not in sheet.columns:
        return None
    values = sheet.loc[list(samples), column].astype(str).str.strip()
    if (values == "").any() or values.isna().any():
        return None
    return values.to_numpy()


def low_input_summary(
    raw: pd.DataFrame, *, median_lib_size: float = 1e5, median_dropout: float = 0.6
) -> tuple[dict[str, object], str]:
    """Whether the cohort looks like low-input RNA (exosome, single-cell-like bulk).

    The rule: the median raw library size is below ``median_lib_size`` reads, or the
    median raw dropout (share of genes with no read in a sample) is above
    ``median_dropout``. These are the conditions of the low-input bench
    (``bench/RESULTS_low_input.md``: library sizes 1e4–1e5, dropout 60–90 %), under
    which the method recommendations of the README's low-input section apply.

    Parameters
    ----------
    raw
        :func:`count_summary` of the raw counts (``lib_size``, ``dropout_rate``).
    median_lib_size, median_dropout
        The thresholds (``qc.low_input_median_lib_size``, ``qc.low_input_median_dropout``).

    Returns
    -------
    columns : dict
        ``low_input`` (bool) and ``low_input_rule`` (the rule, with the cohort's values).
    warning : str
        A sentence for the log when ``low_input``, else ``""``.
    """
    lib = float(raw["lib_size"].median())
    dropout = float(raw["dropout_rate"].median())
    low = bool(lib < median_lib_size or dropout > median_dropout)
    rule = (
        f"low input when median library size < {median_lib_size:.4g} or median dropout > "
        f"{median_dropout:.3g} (here {lib:.4g} and {dropout:.3f})"
    )
    warning = (
        f"the counts look low-input ({rule}): see 'Low-input cohorts' in the README for the "
        "methods the low-input bench supports (e.g. normalization.size_factor_type: scran or "
        "poscounts, normalization.method: TMMwsp)"
        if low
        else ""
    )
    return {"low_input": low, "low_input_rule": rule}, warning
