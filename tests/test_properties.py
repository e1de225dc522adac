"""Properties of the numeric core that must hold for any valid count matrix (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cohortnorm import combat, deseq2, edger, expression
from cohortnorm.errors import InputError

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def count_matrices(draw: st.DrawFn, min_samples: int = 2, sparse: bool = False) -> np.ndarray:
    """Negative-binomial counts with varied depth and composition, every sample non-empty."""
    n_genes = draw(st.integers(8, 120))
    n_samples = draw(st.integers(min_samples, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    depth = rng.uniform(0.2, 5.0, size=n_samples)
    means = rng.lognormal(mean=draw(st.floats(0.0, 5.0)), sigma=1.5, size=n_genes)
    size = draw(st.floats(0.5, 50.0))
    expected = means[:, None] * depth[None, :]
    counts = rng.negative_binomial(size, size / (size + expected)).astype(np.float64)
    if sparse:
        counts[rng.random(counts.shape) < draw(st.floats(0.0, 0.9))] = 0
    assume(np.all(counts.sum(axis=0) > 0))
    return counts


def _factors(counts: np.ndarray, method: str) -> np.ndarray:
    if method == "ratio":
        return deseq2.size_factors(counts, "ratio")
    if method == "poscounts":
        return deseq2.size_factors(counts, "poscounts")
    return edger.calc_norm_factors(counts, method)  # type: ignore[arg-type]


def _defined(counts: np.ndarray, method: str) -> bool:
    """Whether the method is defined here (R gives NA/Inf or an error otherwise)."""
    expressed_everywhere = bool(np.all(counts > 0, axis=1).any())
    if method in ("RLE", "ratio"):
        return expressed_everywhere
    if method == "upperquartile":
        present = counts[(counts > 0).any(axis=1)]
        return bool(np.all(np.quantile(present, 0.75, axis=0) > 0))
    return True


def _unique_tmm_reference(counts: np.ndarray) -> bool:
    """edgeR picks the first of tied reference candidates, so ties make order matter."""
    present = counts[(counts > 0).any(axis=1)]
    sizes = counts.sum(axis=0)
    f75 = np.quantile(present, 0.75, axis=0) / sizes
    if np.median(f75) < 1e-20:
        score = -np.sqrt(present).sum(axis=0)
    else:
        score = np.abs(f75 - f75.mean())
    best = np.sort(score)
    return best.size < 2 or best[1] - best[0] > 1e-9 * max(abs(best[0]), 1e-300)


ALL_METHODS = ["TMM", "TMMwsp", "RLE", "upperquartile", "ratio", "poscounts"]


@SETTINGS
@given(counts=count_matrices(), data=st.data())
@pytest.mark.parametrize("method", ALL_METHODS)
def test_factors_invariant_to_gene_and_sample_order(
    method: str, counts: np.ndarray, data: st.DataObject
) -> None:
    assume(_defined(counts, method))
    assume(method not in ("TMM", "TMMwsp") or _unique_tmm_reference(counts))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    gene_order = rng.permutation(counts.shape[0])
    sample_order = rng.permutation(counts.shape[1])
    if method == "TMMwsp":
        # TMMwsp's reference is the largest sum of square roots: ties break by position.
        roots = np.sqrt(counts).sum(axis=0)
        assume(np.sum(roots == roots.max()) == 1)
        # edgeR trims TMMwsp by order(), not rank(): genes tied at a trim boundary are
        # kept or cut by their position, so only the sample order is free.
        gene_order = np.arange(counts.shape[0])
    expected = _factors(counts, method)[sample_order]
    shuffled = _factors(counts[gene_order][:, sample_order], method)
    np.testing.assert_allclose(shuffled, expected, rtol=1e-10)


@SETTINGS
@given(counts=count_matrices(), k=st.sampled_from([2.0, 4.0, 8.0, 16.0]), data=st.data())
@pytest.mark.parametrize("method", ["TMM_unweighted", "RLE", "upperquartile", "ratio"])
def test_scaling_one_sample(method: str, counts: np.ndarray, k: float, data: st.DataObject) -> None:
    """Multiplying one library by k multiplies its effective size by k, others unchanged.

    edgeR's norm factors (TMM unweighted, RLE, upper quartile) are unchanged, so the
    effective library size scales by exactly k; DESeq2's size factors keep their
    ratios except that of the scaled sample, which grows by k. Powers of two keep the
    arithmetic exact; precision-weighted TMM is excluded because its weights depend on
    the count magnitudes themselves.
    """
    base = "TMM" if method == "TMM_unweighted" else method
    assume(_defined(counts, base))
    j = data.draw(st.integers(0, counts.shape[1] - 1))
    scaled = counts.copy()
    scaled[:, j] *= k
    if method == "ratio":
        before, after = deseq2.size_factors(counts), deseq2.size_factors(scaled)
        ratio = after / before
        expected = np.full(counts.shape[1], ratio[0] if j != 0 else ratio[1])
        expected[j] *= k
        np.testing.assert_allclose(ratio, expected, rtol=1e-10)
        return
    options = {"do_weighting": False} if method == "TMM_unweighted" else {}
    if base == "TMM":
        assume(_unique_tmm_reference(counts))
    before = edger.calc_norm_factors(counts, base, **options)  # type: ignore[arg-type]
    after = edger.calc_norm_factors(scaled, base, **options)  # type: ignore[arg-type]
    np.testing.assert_allclose(after, before, rtol=1e-10)
    effective_ratio = scaled.sum(axis=0) * after / (counts.sum(axis=0) * before)
    expected = np.ones(counts.shape[1])
    expected[j] = k
    np.testing.assert_allclose(effective_ratio, expected, rtol=1e-10)


@SETTINGS
@given(counts=count_matrices(sparse=True), p=st.floats(0.0, 1.0))
def test_column_quantile_and_median_are_rs(counts: np.ndarray, p: float) -> None:
    """R's type-7 quantile and median of each column: R's own expression, column by column
    (numpy's "linear" method is the same definition rounded differently, and differs for
    p so small that ``1 + (n - 1)·p`` rounds to 1, where R returns the minimum)."""
    index = 1 + (counts.shape[0] - 1) * p
    low = int(np.floor(index))
    ordered = np.sort(counts, axis=0)
    at_low, at_high = ordered[low - 1], ordered[int(np.ceil(index)) - 1]
    h = index - low
    expected = np.where((index > low) & (at_high != at_low), (1 - h) * at_low + h * at_high, at_low)
    np.testing.assert_array_equal(edger.column_quantile(counts, p), expected)
    np.testing.assert_allclose(
        edger.column_median(counts), np.median(counts, axis=0), rtol=1e-14, atol=0
    )


@SETTINGS
@given(counts=count_matrices(), method=st.sampled_from(ALL_METHODS))
def test_factors_leave_their_input_unchanged(counts: np.ndarray, method: str) -> None:
    """Column selections work on copies, also when a transpose is already contiguous
    (a Fortran-ordered matrix, as pandas often hands over)."""
    assume(_defined(counts, method))
    fortran = np.asfortranarray(counts)
    _factors(fortran, method)
    np.testing.assert_array_equal(fortran, counts)


@SETTINGS
@given(counts=count_matrices(sparse=True))
def test_outputs_finite_for_any_valid_input(counts: np.ndarray) -> None:
    """TMM, TMMwsp, poscounts and logCPM are always defined; the others say when not."""
    for method in ("TMM", "TMMwsp", "none"):
        factors = edger.calc_norm_factors(counts, method)  # type: ignore[arg-type]
        assert np.all(np.isfinite(factors)) and np.all(factors > 0)
        logcpm = edger.cpm(counts, counts.sum(axis=0) * factors, log=True)
        assert np.all(np.isfinite(logcpm))
    for method in ("RLE", "upperquartile", "ratio"):
        if _defined(counts, method):
            assert np.all(np.isfinite(_factors(counts, method)))
        else:
            with pytest.raises(ValueError):
                _factors(counts, method)
    if (counts > 0).any():
        assert np.all(np.isfinite(deseq2.size_factors(counts, "poscounts")))
    lengths = np.linspace(100, 5000, counts.shape[0])
    assert np.all(np.isfinite(expression.tpm(counts, lengths)))
    assert np.all(np.isfinite(expression.fpkm(counts, lengths)))


@SETTINGS
@given(counts=count_matrices(min_samples=4), parametric=st.booleans())
def test_combat_single_batch_is_refused(counts: np.ndarray, parametric: bool) -> None:
    """sva cannot fit one batch (its batch column is the intercept); we say so."""
    logcpm = edger.cpm(counts, log=True)
    with pytest.raises(InputError, match="batch"):
        combat.combat(logcpm, ["site1"] * counts.shape[1], parametric=parametric)


@SETTINGS
@given(counts=count_matrices(min_samples=3), parametric=st.booleans())
def test_combat_without_batch_effect_is_identity(counts: np.ndarray, parametric: bool) -> None:
    """Two identical batches: every batch mean equals the grand mean, so the mean-only
    adjustment (the documented centring on the grand mean) changes nothing."""
    logcpm = edger.cpm(counts, log=True)
    assume(np.all(logcpm.var(axis=1) > 1e-6))
    data = np.hstack([logcpm, logcpm])
    batch = ["a"] * counts.shape[1] + ["b"] * counts.shape[1]
    adjusted = combat.combat(data, batch, mean_only=True, parametric=parametric).adjusted
    np.testing.assert_allclose(adjusted, data, rtol=0, atol=1e-8)
