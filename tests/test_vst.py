"""DESeq2 VST and its dispersion estimation against DESeq2 1.38.3, number for number.

References: ``tests/data/<dataset>/reference/extra_deseq2_*`` (made by
``data/scripts/reference_extra.R`` on the filterByExpr-filtered counts, copied and
thinned by ``data/scripts/extract_deseq2_vst_fixtures.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from cohortnorm.deseq2_dispersion import (
    estimate_dispersions_fit,
    estimate_dispersions_gene_est,
    parametric_dispersion_fit,
)
from cohortnorm.errors import InputError
from cohortnorm.vst import (
    deseq2_ratio_size_factors,
    variance_stabilizing_transformation,
    vst,
    vst_subset,
    vst_trend,
)

VST_ATOL = 1e-6  # VST values, absolute (observed: <= 1.3e-9 on every reference)
DISP_RTOL = 1e-6  # dispersions and trend coefficients, relative
# A gene whose line search DESeq2 ends on a log-likelihood change of ~1e-6 (its stopping
# tolerance) can stop a few steps apart when the last bits of the means differ; on the
# reference datasets that happens to one gene (airway, ~batch + condition: 5.6e-6).
MAX_BORDERLINE = 1
BORDERLINE_RTOL = 1e-5


def _filtered(dataset: Dataset) -> pd.DataFrame:
    keep = dataset.reference("edger_filterByExpr_keep")["keep"].to_numpy()
    return dataset.counts.loc[keep]


def _design(dataset: Dataset) -> np.ndarray:
    """The model matrix of reference_extra.R's design: ~batch + condition (or ~batch)."""

    def indicators(values: pd.Series) -> list[np.ndarray]:
        levels = list(dict.fromkeys(values))  # levels in order of appearance
        return [(values == level).to_numpy(dtype=float) for level in levels[1:]]

    columns = [np.ones(len(dataset.samples)), *indicators(dataset.batch)]
    if dataset.has_condition:
        columns += indicators(dataset.condition)
    return np.column_stack(columns)


def _params(dataset: Dataset, quantity: str) -> pd.Series:
    table = dataset.reference("extra_deseq2_dispersion_params", index_col=None)
    return table[table["quantity"] == quantity].set_index("name")["value"]


def _design_stem(dataset: Dataset) -> str:
    for stem in ("extra_deseq2_vst_design", "extra_deseq2_vst_design_SYNTHETICBATCH"):
        if dataset.has_reference(stem):
            return stem
    raise AssertionError(f"{dataset.name}: no design VST reference")


def _assert_close_to_reference(ours: pd.DataFrame, ref: pd.DataFrame, atol: float) -> None:
    assert list(ref.columns) == list(ours.columns)
    got = ours.loc[ref.index].to_numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("kind", ["blind_parametric", "blind_mean", "nsub1000", "design"])
def test_vst_matches_deseq2(dataset: Dataset, kind: str) -> None:
    counts = _filtered(dataset)
    if kind == "nsub1000":
        if not dataset.has_reference("extra_deseq2_vst_nsub1000"):
            # gtex_lung_chr21: 191 genes, DESeq2 stops with "less than 'nsub' rows".
            with pytest.raises(InputError, match="needs at least 1000 genes, but there are 191"):
                vst(counts)
            return
        ours = vst(counts)
        ref = dataset.reference("extra_deseq2_vst_nsub1000")
    elif kind == "design":
        ours = variance_stabilizing_transformation(counts, design=_design(dataset), blind=False)
        ref = dataset.reference(_design_stem(dataset))
    else:
        fit_type = kind.removeprefix("blind_")
        ours = variance_stabilizing_transformation(counts, fit_type=fit_type)
        ref = dataset.reference(f"extra_deseq2_vst_{kind}")
    _assert_close_to_reference(ours, ref, VST_ATOL)


def _sizes(dataset: Dataset, counts: pd.DataFrame) -> np.ndarray:
    return _params(dataset, "size_factor").loc[counts.columns].to_numpy()


def _assert_dispersions(ours: np.ndarray, ref: np.ndarray, name: str) -> None:
    rel = np.abs(ours / ref - 1)
    off = np.flatnonzero(rel > DISP_RTOL)
    assert off.size <= MAX_BORDERLINE, f"{name}: {off.size} genes differ by more than 1e-6"
    assert np.all(rel <= BORDERLINE_RTOL), f"{name}: max relative difference {rel.max()}"


@pytest.mark.parametrize("blind", [True, False])
def test_gene_wise_dispersions_and_trend_match_deseq2(dataset: Dataset, blind: bool) -> None:
    counts = _filtered(dataset)
    disp = dataset.reference("extra_deseq2_dispersions")
    design = None if blind else _design(dataset)
    genes = estimate_dispersions_gene_est(counts.to_numpy(), _sizes(dataset, counts), design)
    prefix = "blind" if blind else "design"
    np.testing.assert_allclose(genes.base_mean, disp["baseMean"], rtol=1e-12)
    _assert_dispersions(genes.disp_gene_est, disp[f"{prefix}_dispGeneEst"].to_numpy(), prefix)
    # The line search takes DESeq2's own steps: the step counts agree gene by gene
    # (observed >= 98.9%; the rest end within the 1e-6 log-likelihood tolerance).
    same_steps = genes.disp_gene_iter == disp[f"{prefix}_dispGeneIter"].fillna(0).to_numpy()
    assert same_steps.mean() > 0.98
    trend = estimate_dispersions_fit(genes, "parametric")
    coefs = _params(dataset, "blind_parametric" if blind else "design")
    rtol = DISP_RTOL
    assert trend.asympt_disp == pytest.approx(coefs["asymptDisp"], rel=rtol)
    assert trend.extra_pois == pytest.approx(coefs["extraPois"], rel=rtol)
    assert trend.var_log_disp_ests == pytest.approx(coefs["varLogDispEsts"], rel=rtol)
    fitted = disp["blind_dispFit_parametric" if blind else "design_dispFit"].to_numpy()
    np.testing.assert_allclose(trend(genes.base_mean), fitted, rtol=rtol)
    if blind:
        mean_trend = estimate_dispersions_fit(genes, "mean")
        expected = _params(dataset, "blind_mean")["mean_dispersion"]
        assert mean_trend.mean_disp == pytest.approx(expected, rel=DISP_RTOL)


def test_size_factors_are_deseq2s_to_the_last_bit(dataset: Dataset) -> None:
    # The line search stops on differences of ~1e-11 in the log-likelihood, so the VST
    # uses factors rounded exactly as R rounds them.
    counts = _filtered(dataset)
    np.testing.assert_array_equal(
        deseq2_ratio_size_factors(counts.to_numpy()), _sizes(dataset, counts)
    )


def test_vst_subset_and_its_trend_match_deseq2(dataset: Dataset) -> None:
    if not dataset.has_reference("extra_deseq2_vst_nsub1000"):
        pytest.skip(f"{dataset.name}: fewer than 1000 genes, no nsub reference")
    counts = _filtered(dataset)
    disp = dataset.reference("extra_deseq2_dispersions")
    trend, idx, _ = vst_trend(counts.to_numpy())
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[idx] = True
    np.testing.assert_array_equal(chosen, disp["nsub1000_in_subset"].to_numpy(dtype=bool))
    coefs = _params(dataset, "nsub1000")
    assert trend.asympt_disp == pytest.approx(coefs["asymptDisp"], rel=DISP_RTOL)
    assert trend.extra_pois == pytest.approx(coefs["extraPois"], rel=DISP_RTOL)


def _extra(name: str) -> pd.DataFrame:
    path = DATA / "deseq2_vst_extra" / name
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")


def test_genes_zero_in_a_whole_condition_match_deseq2() -> None:
    # Simulated by data/deseq2_vst_extra/deseq2_vst_extra.R: ~batch + condition, not
    # one-way, so the means come from the NB GLM; genes g001-g005 are zero in every
    # condition-B sample and g006 is zero everywhere.
    counts = _extra("counts.tsv")
    samples = pd.read_csv(DATA / "deseq2_vst_extra" / "samples.tsv", sep="\t")
    design = np.column_stack(
        [
            np.ones(len(samples)),
            (samples["batch"] == "b2").to_numpy(dtype=float),
            (samples["condition"] == "B").to_numpy(dtype=float),
        ]
    )
    ours = variance_stabilizing_transformation(counts, design=design, blind=False)
    _assert_close_to_reference(ours, _extra("vst_design.tsv"), VST_ATOL)
    mean_vst = variance_stabilizing_transformation(counts, fit_type="mean")
    _assert_close_to_reference(mean_vst, _extra("vst_mean.tsv"), VST_ATOL)
    coefs = _extra("coefficients.tsv")["value"]
    sizes = coefs[[f"size_factor_{name}" for name in samples["sample"]]].to_numpy()
    genes = estimate_dispersions_gene_est(counts.to_numpy(), sizes, design)
    ref = _extra("dispersions.tsv")
    np.testing.assert_allclose(genes.disp_gene_est, ref["dispGeneEst"], rtol=DISP_RTOL)
    np.testing.assert_array_equal(genes.disp_gene_iter, ref["dispGeneIter"].fillna(0))
    trend = estimate_dispersions_fit(genes)
    assert trend.asympt_disp == pytest.approx(coefs["asymptDisp"], rel=DISP_RTOL)
    assert trend.extra_pois == pytest.approx(coefs["extraPois"], rel=DISP_RTOL)


def test_vst_subset_takes_rounded_even_spaced_positions() -> None:
    # 2,500 genes above 5 in reverse order; R: round(seq(1, 2500, length = 1000)).
    base_mean = np.r_[np.arange(2500, 0, -1) + 5.5, [1.0, 5.0]]
    idx = vst_subset(base_mean, 1000)
    positions = np.round(1 + np.arange(1000) * (2499 / 999)).astype(int)
    # Position k of the ascending order is gene 2500 - k (0-based).
    np.testing.assert_array_equal(idx, 2500 - positions)
    assert idx[0] == 2499 and idx[-1] == 0  # the smallest and the largest mean above 5


def test_all_zero_gene_gets_the_transform_of_zero() -> None:
    counts = _small_counts(300, 6, seed=7)
    counts[10] = 0
    out = variance_stabilizing_transformation(counts)
    genes = estimate_dispersions_gene_est(counts, np.ones(6))
    assert np.isnan(genes.disp_gene_est[10]) and genes.disp_gene_iter[10] == 0
    sizes = out  # the value at q = 0 does not depend on the size factors
    trend = estimate_dispersions_fit(
        estimate_dispersions_gene_est(counts, _ratio_sizes(counts)), "parametric"
    )
    expected = np.log2((1 + trend.extra_pois) / (4 * trend.asympt_disp))
    np.testing.assert_allclose(sizes[10], expected, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(out))


def _ratio_sizes(counts: np.ndarray) -> np.ndarray:
    from cohortnorm.deseq2 import size_factors

    return size_factors(counts)


# --- bad input ----------------------------------------------------------------------------


def _small_counts(n_genes: int = 300, n_samples: int = 4, seed: int = 3) -> np.ndarray:
    """NB counts with DESeq2's kind of trend, dispersion 0.05 + 2/mean."""
    rng = np.random.default_rng(seed)
    means = rng.lognormal(4, 1.5, size=(n_genes, 1))
    size = 1 / (0.05 + 2 / means)
    counts = rng.negative_binomial(size, size / (size + means), size=(n_genes, n_samples))
    return counts.astype(float)


def test_one_sample_is_refused() -> None:
    with pytest.raises(InputError, match=r"at least 2 samples.*counts have 1"):
        variance_stabilizing_transformation(_small_counts(n_samples=1))


def test_vst_with_too_few_genes_above_five_is_refused() -> None:
    counts = np.tile([100.0, 120.0, 90.0, 110.0], (1200, 1))
    counts[:300] = 1  # mean normalised count about 1: 900 genes are left above 5
    expected = r"needs at least 1000 genes with mean normalised count > 5, but only 900"
    with pytest.raises(InputError, match=expected):
        vst(counts)


def test_all_zero_counts_are_refused() -> None:
    with pytest.raises(InputError, match="every count is zero"):
        variance_stabilizing_transformation(np.zeros((5, 3)))


def test_design_without_residual_df_is_refused() -> None:
    design = np.column_stack([np.ones(4), [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    with pytest.raises(InputError, match="no residual degrees of freedom"):
        variance_stabilizing_transformation(_small_counts(), design=design, blind=False)


def test_rank_deficient_design_is_refused() -> None:
    design = np.column_stack([np.ones(4), [0, 0, 1, 1], [0, 0, 1, 1.0]])
    with pytest.raises(InputError, match="linear combinations of the others"):
        variance_stabilizing_transformation(_small_counts(), design=design, blind=False)


def test_blind_ignores_the_design() -> None:
    counts = _small_counts()
    design = np.column_stack([np.ones(4), [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    np.testing.assert_array_equal(
        variance_stabilizing_transformation(counts, design=design, blind=True),
        variance_stabilizing_transformation(counts),
    )


def test_local_fit_is_refused_with_the_alternatives() -> None:
    with pytest.raises(InputError, match=r"locfit.*not implemented.*fit_type: mean"):
        variance_stabilizing_transformation(_small_counts(), fit_type="local")


def test_failed_parametric_fit_is_not_replaced_by_a_local_fit() -> None:
    # Dispersion rising with the mean: the 1/mean coefficient comes out negative, where
    # DESeq2 would print a note and switch to locfit.
    means = np.geomspace(10, 1e4, 200)
    with pytest.raises(InputError, match=r"DESeq2 would switch to a local.*fit_type: mean"):
        parametric_dispersion_fit(means, 1e-4 * means)


def test_poisson_like_counts_are_refused_as_deseq2_does() -> None:
    # Identical samples: every gene-wise dispersion sits at the 1e-8 floor.
    with pytest.raises(InputError, match="within 2 orders of magnitude of the minimum value"):
        variance_stabilizing_transformation(np.full((20, 4), 7.0))


def test_non_integer_counts_are_refused() -> None:
    counts = _small_counts()
    counts[0, 0] = 2.5
    with pytest.raises(InputError, match="non-integer"):
        variance_stabilizing_transformation(counts)


# --- properties -------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_samples=st.integers(3, 8))
def test_blind_vst_commutes_with_sample_permutation(seed: int, n_samples: int) -> None:
    rng = np.random.default_rng(seed)
    counts = _small_counts(200, n_samples, seed=seed)
    counts[0] += 1  # at least one gene without zeros for the size factors
    counts = counts[counts.sum(axis=1) > 0]
    perm = rng.permutation(n_samples)
    try:
        out = variance_stabilizing_transformation(counts)
    except InputError:
        return  # a trend DESeq2 cannot fit either; not what this property is about
    permuted = variance_stabilizing_transformation(counts[:, perm])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(permuted, out[:, perm], rtol=0, atol=1e-6)
