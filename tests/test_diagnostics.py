"""Design diagnostics (cohortnorm.diagnostics) on constructed designs.

Expected numbers come from the definitions, worked by hand in the comments (chi-square of
a fully confounded table, Fisher's exact p of a 4/4 split, Kruskal–Wallis H without
ties), or from an independent computation written here (gPCA by a direct SVD of Yᵀ·X as
the R package does it, R² by numpy least squares).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cohortnorm import diagnostics
from cohortnorm.diagnostics import (
    batch_association,
    gpca_delta,
    gpca_table,
    variance_explained,
    variance_explained_summary,
    variance_explained_table,
)
from cohortnorm.errors import InputError

SETTINGS = settings(max_examples=20, deadline=None)


def _sheet(batch, condition, **extra) -> pd.DataFrame:
    return pd.DataFrame({"batch": batch, "condition": condition, **extra})


# --------------------------------------------------------------------------- association


def test_fully_confounded_design():
    batch = np.repeat(["s1", "s2", "s3"], 8)
    association, cells = batch_association(_sheet(batch, batch), "batch", ["condition"])
    row = association.iloc[0]
    # 3 × 3 diagonal table of 8s: chi² = n·(min(r, c) − 1) = 24 · 2 = 48 on 4 df.
    assert row["test"] == "chi-square (no continuity correction)"
    assert row["statistic"] == pytest.approx(48.0)
    assert row["df"] == 4
    assert row["p_value"] == pytest.approx(stats.chi2.sf(48.0, 4))
    assert row["cramers_v"] == pytest.approx(1.0)
    assert "fully confounded" in row["note"]
    assert "6 empty batch × level cell(s)" in row["note"]
    assert len(cells) == 9
    assert sorted(cells["n_samples"].tolist()) == [0] * 6 + [8] * 3


def test_balanced_design():
    batch = np.repeat(["s1", "s2", "s3"], 8)
    condition = np.tile(["ctrl", "ALS"], 12)
    association, cells = batch_association(_sheet(batch, condition), "batch", ["condition"])
    row = association.iloc[0]
    assert row["statistic"] == pytest.approx(0.0)
    assert row["p_value"] == pytest.approx(1.0)
    assert row["cramers_v"] == pytest.approx(0.0)
    # Expected counts 4 < 5 in a 3 × 2 table: chi-square kept, said to be approximate.
    assert row["min_expected"] == pytest.approx(4.0)
    assert "approximate" in row["note"]
    assert cells["n_samples"].tolist() == [4] * 6
    assert set(cells["level"]) == {"ctrl", "ALS"}


def test_one_sample_per_cell_uses_fisher():
    association, cells = batch_association(
        _sheet(["a", "a", "b", "b"], ["x", "y", "x", "y"]), "batch", ["condition"]
    )
    row = association.iloc[0]
    assert row["test"] == "Fisher exact (two-sided)"
    assert row["statistic_name"] == "odds_ratio"
    assert row["p_value"] == pytest.approx(1.0)
    assert row["cramers_v"] == pytest.approx(0.0)
    assert cells["n_samples"].tolist() == [1, 1, 1, 1]


def test_fisher_on_a_small_separated_table():
    # [[4, 0], [0, 4]]: two-sided Fisher p = 2 / C(8, 4) = 2 / 70.
    association, _ = batch_association(
        _sheet(["a"] * 4 + ["b"] * 4, ["x"] * 4 + ["y"] * 4), "batch", ["condition"]
    )
    row = association.iloc[0]
    assert row["test"].startswith("Fisher")
    assert row["p_value"] == pytest.approx(2 / math.comb(8, 4))
    assert row["cramers_v"] == pytest.approx(1.0)
    assert np.isnan(row["statistic"])  # odds ratio 4·4 / (0·0): never written as inf
    assert "odds ratio infinite" in row["note"]


def test_numeric_covariate_kruskal_wallis():
    # Ages 1..6, two per batch: rank sums 3, 7, 11, N = 6, no ties:
    # H = 12 / (6 · 7) · (9/2 + 49/2 + 121/2) − 3 · 7 = 4.571428…
    sheet = _sheet(list("aabbcc"), list("xyxyxy"), age=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    association, cells = batch_association(sheet, "batch", ["condition", "age"])
    row = association.set_index("covariate").loc["age"]
    h = 12 / 42 * (9 / 2 + 49 / 2 + 121 / 2) - 21
    assert row["test"] == "Kruskal-Wallis"
    assert row["statistic"] == pytest.approx(h)
    assert row["p_value"] == pytest.approx(math.exp(-h / 2))  # chi² on 2 df
    assert set(cells["covariate"]) == {"condition"}  # numeric: no cell table


def test_integer_codes_are_categorical_unless_named_numeric():
    sheet = _sheet(list("aabb"), [1, 2, 1, 2])
    assert batch_association(sheet, "batch", ["condition"])[0].iloc[0]["kind"] == "categorical"
    named = batch_association(sheet, "batch", ["condition"], numeric=["condition"])[0]
    assert named.iloc[0]["kind"] == "numeric"


def test_empty_covariate_cells_are_left_out():
    sheet = _sheet(list("aabbcc"), ["x", "y", "x", "", "x", None])
    association, _ = batch_association(sheet, "batch", ["condition"])
    assert association.iloc[0]["n_samples"] == 4


def test_association_refuses_bad_sheets():
    sheet = _sheet(list("aabb"), list("xyxy"))
    with pytest.raises(InputError, match=r"no column 'sex'.*batch, condition"):
        batch_association(sheet, "batch", ["sex"])
    with pytest.raises(
        InputError, match=r"batch column 'batch' is empty for 1 sample\(s\) \(sample S2\)"
    ):
        batch_association(
            _sheet(["a", "", "b", "b"], list("xyxy"), sample=["S1", "S2", "S3", "S4"]),
            "batch",
            ["condition"],
        )
    with pytest.raises(InputError, match="treated as numeric but holds 'old'"):
        batch_association(
            _sheet(list("aabb"), list("xyxy"), age=["1", "2", "old", "4"]),
            "batch",
            ["age"],
            numeric=["age"],
        )


# --------------------------------------------------------------------------- gPCA


def _gpca_direct(values: np.ndarray, batch) -> float:
    """gPCA.batchdetect's δ written as the R package computes it (SVD of Yᵀ·X)."""
    x = values.T - values.T.mean(axis=0)
    levels = sorted(set(batch))
    y = np.array([[1.0 if b == level else 0.0 for level in levels] for b in batch])
    y = y - y.mean(axis=0)  # scale(y, center = TRUE), as with scaleY = FALSE
    v_u = np.linalg.svd(x, full_matrices=False)[2][0]
    v_g = np.linalg.svd(y.T @ x, full_matrices=False)[2][0]
    return float(np.var(x @ v_g, ddof=1) / np.var(x @ v_u, ddof=1))


def _batch_cohort(shift: float, seed: int = 0, condition_effect: float = 0.0):
    rng = np.random.default_rng(seed)
    batch = np.repeat(["b1", "b2", "b3"], 8)
    condition = np.tile(["A", "B"], 12)
    values = rng.normal(size=(400, 24))
    values += rng.normal(0, shift, (400, 3))[:, np.repeat([0, 1, 2], 8)]
    values += condition_effect * rng.normal(size=(400, 1)) * (condition == "B")
    return values, batch


def test_gpca_strong_batch_effect():
    values, batch = _batch_cohort(shift=3.0)
    result = gpca_delta(values, batch, n_permutations=200, seed=1)
    assert result.delta > 0.95
    assert result.p_value == 0.0
    assert result.delta == pytest.approx(_gpca_direct(values, batch), rel=1e-10)


def test_gpca_no_batch_effect_but_strong_biology():
    values, batch = _batch_cohort(shift=0.0, condition_effect=4.0)
    result = gpca_delta(values, batch, n_permutations=200, seed=1)
    assert result.delta < 0.3
    assert 0.05 < result.p_value <= 1.0
    assert result.delta == pytest.approx(_gpca_direct(values, batch), rel=1e-10)
    assert result.permuted.shape == (200,)


def test_gpca_top_genes_filter_matches_direct():
    values, batch = _batch_cohort(shift=0.5, seed=3)
    values[:50] *= 3.0  # the 50 most variable genes
    result = gpca_delta(values, batch, n_permutations=10, top_genes=50)
    assert result.n_genes == 50
    assert result.delta == pytest.approx(_gpca_direct(values[:50], batch), rel=1e-10)


def test_gpca_permutations_in_blocks_equal_one_at_a_time():
    """The permutations go through the Gram matrix in blocks; each δ equals the one of its
    own labelling computed alone (from the definition in _guided_variance and a full
    eigendecomposition), and so does the p-value."""
    values, batch = _batch_cohort(shift=0.03, seed=9)
    result = gpca_delta(values, batch, n_permutations=150, seed=4)  # 3 blocks of 64
    codes = pd.factorize(pd.Series(batch), sort=True)[0]
    rng = np.random.default_rng(4)
    labelings = [codes, *(rng.permutation(codes) for _ in range(150))]
    x = values.T - values.T.mean(axis=0)
    gram = x @ x.T.copy()
    unguided = np.linalg.eigvalsh(gram)[-1]
    alone = np.array([diagnostics._guided_variance(gram, c, 3) for c in labelings]) / unguided
    assert result.delta == pytest.approx(alone[0], rel=1e-12)
    np.testing.assert_allclose(result.permuted, alone[1:], rtol=1e-12)
    assert 0.0 < result.p_value < 1.0
    assert result.p_value == np.mean(alone[1:] >= alone[0] - 1e-10 * max(alone[0], 1.0))


def test_gpca_is_deterministic_with_a_seed():
    values, batch = _batch_cohort(shift=0.3, seed=5)
    first = gpca_delta(values, batch, n_permutations=100, seed=7)
    second = gpca_delta(values, batch, n_permutations=100, seed=7)
    assert first.p_value == second.p_value
    np.testing.assert_array_equal(first.permuted, second.permuted)
    assert 0.0 <= first.p_value <= 1.0


def test_gpca_one_sample_per_batch():
    # Y is then a permutation of the identity: guided PC = unguided PC, every δ is 1.
    values = np.random.default_rng(2).normal(size=(30, 4))
    result = gpca_delta(values, ["a", "b", "c", "d"], n_permutations=20)
    assert result.delta == pytest.approx(1.0)
    assert result.p_value == 1.0


def test_gpca_refuses_one_batch_and_constant_data():
    with pytest.raises(InputError, match=r"at least two batches.*'a'"):
        gpca_delta(np.ones((3, 4)) + np.arange(4), ["a"] * 4)
    with pytest.raises(InputError, match="every gene is constant"):
        gpca_delta(np.ones((3, 4)), ["a", "a", "b", "b"])
    with pytest.raises(InputError, match="3 batch labels"):
        gpca_delta(np.ones((3, 4)), ["a", "a", "b"])


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_gpca_invariant_to_gene_order_and_consistent_sample_relabelling(seed, perm_seed):
    values, batch = _batch_cohort(shift=0.5, seed=seed)
    values = values[:60]
    rng = np.random.default_rng(perm_seed)
    genes, samples = rng.permutation(60), rng.permutation(24)
    renamed = {"b1": "z", "b2": "m", "b3": "a"}
    expected = gpca_delta(values, batch, n_permutations=0).delta
    moved = gpca_delta(
        values[genes][:, samples], [renamed[b] for b in batch[samples]], n_permutations=0
    ).delta
    assert moved == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- R²


def test_variance_explained_equals_least_squares():
    rng = np.random.default_rng(4)
    factor = np.array(["p", "q", "r", "p", "q", "r", "p", "q", "r", "r"])
    values = (
        rng.normal(size=(5, 10)) + np.array([0.0, 2.0, -1.0])[pd.factorize(factor, sort=True)[0]]
    )
    design = np.column_stack([np.ones(10), factor == "q", factor == "r"]).astype(float)
    for gene in range(5):
        y = values[gene]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        r2 = 1 - np.sum((y - design @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
        assert variance_explained(values, factor)[gene] == pytest.approx(r2, rel=1e-12)


def test_variance_explained_edge_cases():
    values = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 5.0, 5.0]])
    r2 = variance_explained(values, ["a", "a", "b", "b"])
    assert np.isnan(r2[0])  # constant gene: nothing to explain
    assert r2[1] == pytest.approx(0.8)  # between SS 4 of total SS 5
    assert r2[2] == pytest.approx(1.0)
    assert variance_explained(values[1:], ["a"] * 4) == pytest.approx([0.0, 0.0])
    one_per_level = variance_explained(values[1:], ["a", "b", "c", "d"])
    assert one_per_level == pytest.approx([1.0, 1.0])


@SETTINGS
@given(st.integers(0, 10_000))
def test_variance_explained_invariant_to_order_and_labels(seed):
    rng = np.random.default_rng(seed)
    factor = rng.choice(["x", "y", "z"], size=12)
    values = rng.normal(size=(8, 12))
    genes, samples = rng.permutation(8), rng.permutation(12)
    expected = variance_explained(values, factor)
    moved = variance_explained(values[genes][:, samples], np.char.upper(factor[samples]))
    np.testing.assert_allclose(moved, expected[genes], rtol=1e-12, atol=1e-15)
    assert np.all((expected >= 0) & (expected <= 1))


def test_tables_for_design_tsv():
    values, batch = _batch_cohort(shift=3.0)
    condition = np.tile(["A", "B"], 12)
    gpca = gpca_table(
        {
            "raw": gpca_delta(values, batch, n_permutations=20),
            "flat": gpca_delta(values[:, ::-1].copy(), batch, n_permutations=20),
        }
    )
    assert gpca["stage"].tolist() == ["raw", "flat"]
    assert gpca.loc[0, "n_permutations"] == 20
    assert gpca.loc[0, "gpca_delta"] == pytest.approx(_gpca_direct(values, batch), rel=1e-10)
    constant = np.vstack([values[:3], np.ones((1, 24))])
    long = variance_explained_table(
        {"raw": constant, "corrected": constant[:, ::-1].copy()},
        {"batch": batch, "condition": condition},
        ["g1", "g2", "g3", "g4"],
    )
    assert len(long) == 4 * 3  # the constant gene g4 is left out (NaN R²)
    assert "g4" not in set(long["gene_id"])
    summary = variance_explained_summary(long)
    assert summary[["stage", "factor"]].values.tolist() == [
        ["raw", "batch"],
        ["raw", "condition"],
        ["corrected", "batch"],
        ["corrected", "condition"],
    ]
    r2 = variance_explained(constant[:3], batch)
    first = summary.iloc[0]
    assert first["n_genes"] == 3
    assert first["median"] == pytest.approx(np.median(r2))
    assert first["mean"] == pytest.approx(r2.mean())


@pytest.mark.parametrize(("limit", "top_genes"), [(0, None), (10, None), (10, 8)])
def test_gpca_large_cohort_path_equals_gram_path(monkeypatch, limit, top_genes):
    # Above GRAM_SAMPLES samples no samples × samples matrix is formed: the unguided PC
    # comes from ARPACK (genes > limit) or the genes × genes Gram, the guided one from Yᵀ·X.
    values, batch = _batch_cohort(shift=0.4, seed=11)
    expected = gpca_delta(values, batch, n_permutations=30, seed=2, top_genes=top_genes)
    monkeypatch.setattr(diagnostics, "GRAM_SAMPLES", limit)
    result = gpca_delta(values, batch, n_permutations=30, seed=2, top_genes=top_genes)
    assert result.delta == pytest.approx(expected.delta, rel=1e-9)
    np.testing.assert_allclose(result.permuted, expected.permuted, rtol=1e-9)
    assert result.p_value == expected.p_value


def test_variance_explained_table_of_two_factors_equals_each_alone():
    """The table computes every factor in one pass over the matrix; the numbers are those
    of variance_explained on each factor, digit for digit, constant genes left out."""
    values, batch = _batch_cohort(shift=1.0, seed=12)
    values[7] = 3.0  # a constant gene: no R²
    condition = np.tile(["A", "B"], 12)
    table = variance_explained_table(
        {"s": values}, {"batch": batch, "condition": condition}, [f"g{i}" for i in range(400)]
    )
    for name, labels in (("batch", batch), ("condition", condition)):
        alone = variance_explained(values, labels)
        rows = table[table["factor"] == name]
        assert "g7" not in set(rows["gene_id"]) and np.isnan(alone[7])
        np.testing.assert_array_equal(rows["r2"].to_numpy(), alone[~np.isnan(alone)])
