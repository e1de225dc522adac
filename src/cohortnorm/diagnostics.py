"""Design diagnostics: can batch be told apart from biology, and how much does each explain?

Three summaries, computed before any correction and again on each stage:

* :func:`batch_association`: how strongly the batch is tied to each sample-sheet column
  (Cramér's V with a chi-square or Fisher exact test, or a Kruskal–Wallis test for a
  numeric column), and the samples in each batch × level cell;
* :func:`gpca_delta`: the δ statistic of guided PCA with its permutation p-value
  (Reese et al. 2013, Bioinformatics 29:2877; R package ``gPCA``, ``gPCA.batchdetect``);
* :func:`variance_explained`: per-gene R² of a one-way model on batch or condition, the
  distribution BatchQC draws before and after correction.

All functions are pure (arrays and data frames in, data frames and numbers out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cohortnorm.blocks import BLOCK_CELLS, cell_slices
from cohortnorm.errors import InputError
from cohortnorm.qc import cramers_v, cross_product, top_variable_genes

#: Up to this many samples gPCA works on the samples × samples Gram matrix (every
#: permutation then costs samples² operations); above it, on the samples × genes matrix
#: (two passes per permutation), so 17,000 samples never need a 17,000² matrix.
GRAM_SAMPLES = 2000
#: Below this expected count in a cell of a 2 × 2 table, Fisher's exact test replaces the
#: chi-square test (Cochran's rule: the chi-square approximation needs expected counts ≥ 5).
MIN_EXPECTED = 5.0

ASSOCIATION_COLUMNS = [
    "covariate",
    "kind",
    "test",
    "statistic_name",
    "statistic",
    "df",
    "p_value",
    "cramers_v",
    "n_samples",
    "n_batches",
    "n_levels",
    "min_expected",
    "note",
]
CELL_COLUMNS = ["covariate", "batch", "level", "n_samples"]


def _labels(
    values: Sequence[object] | pd.Series, what: str, names: Sequence[object] | None = None
) -> np.ndarray:
    series = pd.Series(list(values), dtype=object)
    missing = series.isna() | (series.astype(str).str.strip() == "")
    if missing.any():
        where = np.flatnonzero(missing.to_numpy())[:5]
        shown = (
            f"sample {', '.join(str(names[i]) for i in where)}"
            if names is not None
            else f"positions {', '.join(str(i) for i in where)}"
        )
        raise InputError(
            f"{what} is empty for {int(missing.sum())} sample(s) ({shown}). "
            "Give every sample a value in the sample sheet."
        )
    return series.astype(str).str.strip().to_numpy()


def _is_numeric(column: pd.Series, name: str, numeric: Sequence[str]) -> bool:
    if name in numeric:
        return True
    return column.dtype.kind == "f"


def _categorical_row(name: str, batch: np.ndarray, level: np.ndarray) -> dict[str, object]:
    # scipy.stats is imported where used: it takes half a second to load, and the QC stage
    # jobs (gPCA, variance explained) never need it.
    from scipy import stats

    table = pd.crosstab(pd.Series(batch, name="batch"), pd.Series(level, name="level"))
    n = int(table.to_numpy().sum())
    n_batches, n_levels = table.shape
    row: dict[str, object] = {
        "covariate": name,
        "kind": "categorical",
        "n_samples": n,
        "n_batches": n_batches,
        "n_levels": n_levels,
    }
    if n_batches < 2 or n_levels < 2:
        return {
            **row,
            "test": "none",
            "statistic_name": "",
            "statistic": np.nan,
            "df": np.nan,
            "p_value": np.nan,
            "cramers_v": np.nan,
            "min_expected": np.nan,
            "note": f"only one {'batch' if n_batches < 2 else 'level'}: nothing to test",
        }
    observed = table.to_numpy(dtype=np.float64)
    chi2, p_chi2, dof, expected = stats.chi2_contingency(observed, correction=False)
    v = cramers_v(batch, level)
    min_expected = float(expected.min())
    if observed.shape == (2, 2) and min_expected < MIN_EXPECTED:
        odds, p_value = stats.fisher_exact(observed)
        test, statistic_name, statistic, df = "Fisher exact (two-sided)", "odds_ratio", odds, np.nan
    else:
        test, statistic_name, statistic, df = (
            "chi-square (no continuity correction)",
            "chi2",
            chi2,
            dof,
        )
        p_value = p_chi2
    notes = []
    if not np.isfinite(statistic):
        # A zero cell makes the sample odds ratio infinite; the table never holds Inf.
        statistic = np.nan
        notes.append("odds ratio infinite (a zero cell): left empty")
    if v >= 1.0 - 1e-12:
        notes.append(
            "fully confounded: the batch determines this column (or the reverse); "
            "no correction can separate them"
        )
    if (observed == 0).any():
        notes.append(f"{int((observed == 0).sum())} empty batch × level cell(s)")
    if min_expected < MIN_EXPECTED and test.startswith("chi-square"):
        notes.append(
            f"expected counts below {MIN_EXPECTED:g}: the chi-square p-value is approximate"
        )
    return {
        **row,
        "test": test,
        "statistic_name": statistic_name,
        "statistic": float(statistic),
        "df": float(df),
        "p_value": float(p_value),
        "cramers_v": float(v),
        "min_expected": min_expected,
        "note": "; ".join(notes),
    }


def _numeric_row(name: str, batch: np.ndarray, values: np.ndarray) -> dict[str, object]:
    from scipy import stats

    levels = sorted(set(batch))
    groups = [values[batch == b] for b in levels]
    row: dict[str, object] = {
        "covariate": name,
        "kind": "numeric",
        "test": "Kruskal-Wallis",
        "statistic_name": "H",
        "n_samples": len(values),
        "n_batches": len(levels),
        "n_levels": len(np.unique(values)),
        "cramers_v": np.nan,
        "min_expected": np.nan,
    }
    if len(levels) < 2 or len(np.unique(values)) < 2:
        return {
            **row,
            "statistic": np.nan,
            "df": np.nan,
            "p_value": np.nan,
            "note": "only one batch or one distinct value: nothing to test",
        }
    h, p_value = stats.kruskal(*groups)
    return {
        **row,
        "statistic": float(h),
        "df": float(len(levels) - 1),
        "p_value": float(p_value),
        "note": "",
    }


def batch_association(
    sheet: pd.DataFrame,
    batch: str,
    covariates: Sequence[str],
    *,
    numeric: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How strongly the batch is tied to each covariate of the sample sheet.

    For a categorical covariate: Pearson's chi-square test of the batch × level table
    without continuity correction (R ``chisq.test(table(batch, x), correct = FALSE)``)
    and Cramér's V (:func:`cohortnorm.qc.cramers_v`). When the table is 2 × 2 and an
    expected count is below :data:`MIN_EXPECTED`, the p-value is Fisher's exact test
    instead (R ``fisher.test``, two-sided; statistic: the sample odds ratio, as
    :func:`scipy.stats.fisher_exact` gives it, not R's conditional MLE). For a numeric
    covariate: the Kruskal–Wallis test of its values across batches (R ``kruskal.test``).

    Parameters
    ----------
    sheet
        Sample sheet, one row per sample.
    batch
        Name of the batch column.
    covariates
        Columns to test against the batch (e.g. the condition, sex, site).
    numeric
        Columns to treat as numeric; float columns are numeric anyway, every other
        column (text, integer codes) is categorical.

    Returns
    -------
    association : pandas.DataFrame
        One row per covariate, columns :data:`ASSOCIATION_COLUMNS`. ``note`` says when the
        design is fully confounded (V = 1), has empty cells, or the chi-square p-value is
        approximate. Samples with an empty covariate cell are left out of that row
        (``n_samples`` counts the rest).
    cells : pandas.DataFrame
        Samples per batch × level of each categorical covariate, zeros included, columns
        :data:`CELL_COLUMNS` (long format).

    Raises
    ------
    InputError
        A named column is missing from the sheet, or a sample has no batch.
    """
    names = [batch, *covariates]
    missing = [name for name in names if name not in sheet.columns]
    if missing:
        raise InputError(
            f"the sample sheet has no column {', '.join(repr(m) for m in missing)}; "
            f"its columns are {', '.join(map(str, sheet.columns))}. Fix the column name in "
            "the config."
        )
    # Name samples by the sheet's ``sample`` column when it has one, else by its index.
    names = sheet["sample"].tolist() if "sample" in sheet.columns else sheet.index.tolist()
    batch_labels = _labels(sheet[batch], f"the batch column {batch!r}", names)
    rows, cells = [], []
    for name in covariates:
        column = sheet[name]
        present = ~(column.isna() | (column.astype(str).str.strip() == "")).to_numpy()
        if _is_numeric(column, name, numeric):
            values = pd.to_numeric(column[present], errors="coerce").to_numpy(dtype=np.float64)
            if np.isnan(values).any():
                bad = column[present][np.isnan(values)].iloc[0]
                raise InputError(
                    f"the sample-sheet column {name!r} is treated as numeric but holds "
                    f"{bad!r}. Give numbers only, or leave it out of the numeric columns."
                )
            rows.append(_numeric_row(name, batch_labels[present], values))
            continue
        level = column[present].astype(str).str.strip().to_numpy()
        rows.append(_categorical_row(name, batch_labels[present], level))
        table = pd.crosstab(
            pd.Series(batch_labels[present], name="batch"), pd.Series(level, name="level")
        )
        long = table.stack().rename("n_samples").reset_index()
        long.insert(0, "covariate", name)
        cells.append(long)
    association = pd.DataFrame(rows, columns=ASSOCIATION_COLUMNS)
    cell_table = (
        pd.concat(cells, ignore_index=True)[CELL_COLUMNS]
        if cells
        else pd.DataFrame(columns=CELL_COLUMNS)
    )
    cell_table["n_samples"] = cell_table["n_samples"].astype(np.int64)
    return association, cell_table


@dataclass
class GPCAResult:
    """Output of :func:`gpca_delta`.

    Attributes
    ----------
    delta
        δ: variance of the first guided PC over the variance of the first unguided PC.
    p_value
        Share of the batch permutations whose δ is at least ``delta``.
    permuted
        δ of each permutation.
    guided_variance_fraction, unguided_variance_fraction
        Share of the total variance on the first guided and unguided PC.
    n_genes
        Genes used (after the ``top_genes`` filter and dropping constant genes).
    """

    delta: float
    p_value: float
    permuted: np.ndarray
    guided_variance_fraction: float
    unguided_variance_fraction: float
    n_genes: int


def _top_eigen(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    values, vectors = np.linalg.eigh(matrix)
    return float(values[-1]), vectors[:, -1]


def _top_eigenvalue(matrix: np.ndarray) -> float:
    """Largest eigenvalue of a symmetric matrix, without eigenvectors (LAPACK ``syevd``
    with ``jobz = N``): half the time of the full decomposition for a samples × samples
    Gram matrix, equal to it up to rounding."""
    return float(np.linalg.eigvalsh(matrix)[-1])


#: Permutations whose indicator matrices go through one product with the Gram matrix.
PERMUTATION_BLOCK = 64


def _guided_variances(gram: np.ndarray, labelings: list[np.ndarray], n_levels: int) -> np.ndarray:
    """:func:`_guided_variance` of every labelling, with one product ``G Y`` per block of
    :data:`PERMUTATION_BLOCK` labellings instead of one per labelling (the samples ×
    samples Gram is read once per block, not once per permutation)."""
    n = gram.shape[0]
    result = np.empty(len(labelings))
    for block in range(0, len(labelings), PERMUTATION_BLOCK):
        chosen = labelings[block : block + PERMUTATION_BLOCK]
        indicator = np.zeros((n, len(chosen) * n_levels))
        for k, codes in enumerate(chosen):
            indicator[np.arange(n), k * n_levels + codes] = 1.0
        products = gram @ indicator
        for k in range(len(chosen)):
            columns = slice(k * n_levels, (k + 1) * n_levels)
            gy = products[:, columns]
            sigma2, u = _top_eigen(indicator[:, columns].T @ gy)
            if sigma2 <= 0:
                result[block + k] = 0.0
                continue
            scores = gy @ u
            result[block + k] = float(scores @ scores / sigma2)
    return result


def _guided_variance(gram: np.ndarray, codes: np.ndarray, n_levels: int) -> float:
    """||X v||² for v the first right singular vector of Yᵀ X, from the Gram G = X Xᵀ.

    With M = Yᵀ X: M Mᵀ = Yᵀ G Y (levels × levels), v = Mᵀ u / σ for its top
    eigenpair (σ², u), and X v = G Y u / σ. Every product is samples × samples or smaller.
    """
    indicator = np.zeros((len(codes), n_levels))
    indicator[np.arange(len(codes)), codes] = 1.0
    gy = gram @ indicator
    sigma2, u = _top_eigen(indicator.T @ gy)
    if sigma2 <= 0:
        return 0.0
    scores = gy @ u
    return float(scores @ scores / sigma2)


def _guided_variance_direct(centred: np.ndarray, codes: np.ndarray, n_levels: int) -> float:
    """||X v||² for v the first right singular vector of M = Yᵀ X, from X itself.

    M is the per-batch sums of the rows of X (levels × genes); its top right singular
    vector comes from the small levels × levels matrix M Mᵀ. Costs two passes over X,
    not a samples × samples matrix.
    """
    indicator = np.zeros((n_levels, len(codes)))
    indicator[codes, np.arange(len(codes))] = 1.0
    m = indicator @ centred
    sigma2, u = _top_eigen(cross_product(m))
    if sigma2 <= 0:
        return 0.0
    scores = centred @ (m.T @ u)
    return float(scores @ scores / sigma2)


def _top_singular_value(matrix: np.ndarray) -> float:
    """Largest singular value by ARPACK, from a fixed start vector (reproducible)."""
    from scipy.sparse.linalg import svds

    start = np.ones(min(matrix.shape)) / np.sqrt(min(matrix.shape))
    return float(svds(matrix, k=1, v0=start, tol=0, return_singular_vectors=False)[0])


def gpca_delta(
    values: np.ndarray,
    batch: Sequence[object],
    n_permutations: int = 1000,
    seed: int = 0,
    top_genes: int | None = None,
    gene_variance: np.ndarray | None = None,
) -> GPCAResult:
    """gPCA's δ and its permutation p-value, as ``gPCA::gPCA.batchdetect``.

    Guided PCA (Reese et al. 2013) takes the singular value decomposition of Yᵀ X, with X
    the samples × genes matrix with every gene centred (``center = FALSE`` in
    ``gPCA.batchdetect`` means the data are not yet centred, so it centres them) and Y
    the samples × batches indicator matrix. δ = var(X v_g) / var(X v_u), with v_g the first
    right singular vector of Yᵀ X and v_u that of X: near 1 when the largest direction of
    variation is the batch, small when the batch follows a minor direction.

    Parameters
    ----------
    values
        genes × samples, log scale (the stage's log-CPM), finite.
    batch
        One batch label per sample; at least two levels.
    n_permutations
        Batch labels are permuted this many times (``nperm``).
    seed
        Seed of :func:`numpy.random.default_rng` for the permutations: the same seed
        gives the same p-value. R's ``sample`` draws other permutations, so p-values
        agree with R's in distribution, not digit for digit.
    top_genes
        Keep the most variable genes only (``filt``); ``None`` uses every gene. Give it
        for large cohorts: the genes × samples matrix of the genes kept is copied.
    gene_variance
        ``values.var(axis=1)`` when already known (QC computes it for its PCA): saves
        a pass over the matrix.

    Returns
    -------
    GPCAResult
        ``p_value`` is the share of permutations with δ ≥ the observed δ (the R package
        counts strictly greater δ; the two differ only on ties, e.g. one sample per
        batch, where every permutation gives δ = 1).

    Raises
    ------
    InputError
        Fewer than two batches, a label count that does not match the columns, or
        non-finite values.
    """
    x = np.asarray(values, dtype=np.float64)
    labels = _labels(batch, "the batch")
    if x.ndim != 2 or len(labels) != x.shape[1]:
        raise InputError(f"{len(labels)} batch labels for a matrix of {x.shape} (genes × samples)")
    if not np.isfinite(x).all():
        raise InputError("gPCA needs finite values; the matrix has missing or infinite entries")
    codes, levels = pd.factorize(pd.Series(labels), sort=True)
    if len(levels) < 2:
        raise InputError(f"gPCA needs at least two batches; every sample is in batch {levels[0]!r}")
    genes = top_variable_genes(
        x, x.shape[0] if top_genes is None else top_genes, variance=gene_variance
    )
    # samples × genes with every gene centred, built by blocks of genes: the genes kept
    # are copied once, straight into the result.
    centred_t = np.empty((len(genes), x.shape[1]))
    for rows in cell_slices(len(genes), x.shape[1], BLOCK_CELLS):
        kept = x[genes[rows]].T
        centred_t[rows] = (kept - kept.mean(axis=0)).T
    centred = centred_t.T
    total = float(np.square(centred).sum())
    if total <= 0:
        raise InputError("gPCA needs genes that vary across samples; every gene is constant")
    rng = np.random.default_rng(seed)
    labelings = [codes, *(rng.permutation(codes) for _ in range(n_permutations))]
    if centred.shape[0] <= GRAM_SAMPLES:
        # centred is the transpose of the C-ordered centred_t: multiplying it by a plain
        # copy of centred_t is the same gemm with the same bits as cross_product, without
        # its transposing copy of the genes × samples matrix. Two buffers: never syrk
        # (docs/blas.md).
        gram = np.matmul(centred, centred_t.copy())
        unguided = _top_eigenvalue(gram)
        guided_all = _guided_variances(gram, labelings, len(levels))
    else:
        unguided = (
            _top_eigenvalue(cross_product(centred.T))
            if centred.shape[1] <= GRAM_SAMPLES
            else _top_singular_value(centred) ** 2
        )
        guided_all = np.array([_guided_variance_direct(centred, c, len(levels)) for c in labelings])
    if unguided <= 0:
        raise InputError("gPCA needs genes that vary across samples; every gene is constant")
    guided = float(guided_all[0])
    delta = guided / unguided
    permuted = guided_all[1:] / unguided
    # Ties (δ equal up to rounding) count as "at least as large".
    tolerance = 1e-10 * max(delta, 1.0)
    p_value = float(np.mean(permuted >= delta - tolerance)) if n_permutations else float("nan")
    return GPCAResult(
        delta=float(delta),
        p_value=p_value,
        permuted=permuted,
        guided_variance_fraction=guided / total,
        unguided_variance_fraction=unguided / total,
        n_genes=len(genes),
    )


def variance_explained(values: np.ndarray, factor: Sequence[object]) -> np.ndarray:
    """Per-gene R² of the one-way linear model ``gene ~ factor`` (BatchQC's variance plot).

    R² = between-group sum of squares / total sum of squares, the ``Multiple R-squared``
    of R's ``summary(lm(y ~ factor))`` for each gene, computed for all genes at once.

    Parameters
    ----------
    values
        genes × samples (log scale).
    factor
        One label per sample (batch or condition).

    Returns
    -------
    numpy.ndarray
        One R² per gene in [0, 1]; NaN for a gene that is constant across samples (no
        variance to explain). With a single level every R² is 0.
    """
    return _variance_explained(values, [factor])[0]


def _variance_explained(values: np.ndarray, factors: Sequence[Sequence[object]]) -> list:
    """:func:`variance_explained` of several factors in one pass over ``values``: the
    centring and the total sum of squares of each gene do not depend on the factor."""
    x = np.asarray(values, dtype=np.float64)
    models = []
    for factor in factors:
        labels = _labels(factor, "the factor")
        if len(labels) != x.shape[1]:
            raise InputError(f"{len(labels)} labels for {x.shape[1]} samples")
        codes, levels = pd.factorize(pd.Series(labels), sort=True)
        indicator = np.zeros((len(codes), len(levels)))
        indicator[np.arange(len(codes)), codes] = 1.0
        models.append((indicator, np.bincount(codes, minlength=len(levels))))
    total, scale = np.empty(x.shape[0]), np.empty(x.shape[0])
    between = [np.empty(x.shape[0]) for _ in models]
    # By blocks of genes: the same row-wise arithmetic without matrix-sized temporaries.
    for rows in cell_slices(x.shape[0], x.shape[1], BLOCK_CELLS):
        block = np.array(x[rows], order="C")
        scale[rows] = np.square(block).sum(axis=1)
        centred = block - block.mean(axis=1, keepdims=True)
        total[rows] = np.square(centred).sum(axis=1)
        for (indicator, sizes), result in zip(models, between, strict=True):
            sums = centred @ indicator  # genes × levels: per-level sums of the centred values
            result[rows] = (np.square(sums) / sizes).sum(axis=1)
    # Constant up to rounding: relative to the gene's scale, not an absolute cut-off.
    constant = total <= 1e-24 * np.maximum(scale, 1.0)
    results = []
    for part in between:
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(total > 0, part / np.where(total > 0, total, 1.0), np.nan)
        r2[constant] = np.nan
        results.append(np.clip(r2, 0.0, 1.0))
    return results


def variance_explained_table(
    values_by_stage: dict[str, np.ndarray],
    factors: dict[str, Sequence[object]],
    gene_ids: Sequence[str],
) -> pd.DataFrame:
    """Per-gene R² of each factor at each stage, long format (``stage, factor, gene_id, r2``).

    Constant genes (NaN R²) are left out, so the table holds finite numbers only.
    """
    frames = []
    for stage, values in values_by_stage.items():
        if not factors:
            break
        for name, r2 in zip(
            factors, _variance_explained(values, list(factors.values())), strict=True
        ):
            keep = ~np.isnan(r2)
            frames.append(
                pd.DataFrame(
                    {
                        "stage": stage,
                        "factor": name,
                        "gene_id": np.asarray(gene_ids, dtype=object)[keep],
                        "r2": r2[keep],
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["stage", "factor", "gene_id", "r2"])
    return pd.concat(frames, ignore_index=True)


GPCA_COLUMNS = [
    "stage",
    "gpca_delta",
    "gpca_p_value",
    "n_permutations",
    "n_genes",
    "guided_pc1_variance_fraction",
    "unguided_pc1_variance_fraction",
]


def gpca_table(results: dict[str, GPCAResult]) -> pd.DataFrame:
    """One row per stage of :func:`gpca_delta` results, columns :data:`GPCA_COLUMNS`."""
    rows = [
        {
            "stage": stage,
            "gpca_delta": result.delta,
            "gpca_p_value": result.p_value,
            "n_permutations": len(result.permuted),
            "n_genes": result.n_genes,
            "guided_pc1_variance_fraction": result.guided_variance_fraction,
            "unguided_pc1_variance_fraction": result.unguided_variance_fraction,
        }
        for stage, result in results.items()
    ]
    return pd.DataFrame(rows, columns=GPCA_COLUMNS)


SUMMARY_COLUMNS = ["stage", "factor", "n_genes", "mean", "q10", "q25", "median", "q75", "q90"]


def variance_explained_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Distribution of the per-gene R² for each stage and factor (BatchQC's boxes as numbers).

    Parameters
    ----------
    table
        Output of :func:`variance_explained_table` (``stage, factor, gene_id, r2``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`, in the order the stages and factors first appear;
        quantiles as numpy's default (linear, R's type 7).
    """
    rows = []
    for (stage, factor), group in table.groupby(["stage", "factor"], sort=False):
        r2 = group["r2"].to_numpy(dtype=np.float64)
        q10, q25, median, q75, q90 = np.quantile(r2, [0.1, 0.25, 0.5, 0.75, 0.9])
        rows.append(
            {
                "stage": stage,
                "factor": factor,
                "n_genes": len(r2),
                "mean": float(r2.mean()),
                "q10": q10,
                "q25": q25,
                "median": median,
                "q75": q75,
                "q90": q90,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
