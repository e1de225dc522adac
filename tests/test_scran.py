"""scran 1.26.2 / scuttle 1.8.4 ``calculateSumFactors`` port checked against R outputs."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import COUNT_DATASETS, DATA, load_dataset

from cohortnorm.errors import InputError
from cohortnorm.scran import clean_size_factors, guess_min_mean, pooled_size_factors

EXTRA = DATA / "scran_extra"
RTOL = 1e-9


@cache
def _filtered(name: str) -> pd.DataFrame:
    """The filterByExpr-filtered counts the references were computed on."""
    ds = load_dataset(name)
    keep = ds.reference("edger_filterByExpr_keep")["keep"].astype(bool)
    return ds.counts.loc[keep.index[keep.to_numpy()]]


def _read_sf(path: object) -> pd.Series:
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")["size_factor"]


def _assert_close(ours: np.ndarray, ref: pd.Series) -> None:
    rel = np.max(np.abs(ours / ref.to_numpy() - 1))
    assert rel <= RTOL, f"max relative difference {rel:.3g}"


@pytest.mark.parametrize("name", COUNT_DATASETS)
@pytest.mark.parametrize("variant", ["", "_clusters", "_sizes2toN"])
def test_matches_scran_reference(name: str, variant: str) -> None:
    ds = load_dataset(name)
    counts = _filtered(name)
    ref = ds.reference(f"extra_scran_sumfactors{variant}")["size_factor"]
    assert list(ref.index) == list(counts.columns)
    kwargs: dict[str, object] = {}
    if variant == "_clusters":
        # reference_extra.R: factor(condition, levels = unique(condition))
        cond = ds.condition.to_numpy()
        kwargs["clusters"] = pd.Categorical(cond, categories=pd.unique(cond))
    elif variant == "_sizes2toN":
        kwargs["sizes"] = range(2, min(counts.shape[1], 101) + 1)
    result = pooled_size_factors(counts.to_numpy(), **kwargs)
    _assert_close(result.size_factors, ref)
    assert result.min_mean == 1.0  # every bulk dataset here has a median library size ≥ 1e5


def test_fewer_samples_than_smallest_pool_is_library_size_ratio() -> None:
    """pasilla's 7 samples: scran drops every default pool and returns L / mean(L)."""
    counts = _filtered("pasilla").to_numpy()
    result = pooled_size_factors(counts)
    lib = counts.sum(axis=0)
    np.testing.assert_allclose(result.size_factors, lib / lib.mean(), rtol=1e-14)
    _assert_close(result.size_factors, _read_sf(EXTRA / "pasilla_defaults_7samples.tsv"))
    assert result.pool_sizes == {"0": []}
    assert result.notes == [
        "all samples: 7 samples, fewer than the smallest pool size 21; as in scran no pool is "
        "formed and the factors are library size / mean library size"
    ]


@cache
def _sim() -> pd.DataFrame:
    return pd.read_csv(EXTRA / "sim_counts.tsv.gz", sep="\t", index_col=0)


SIM_SITE = np.resize(["siteB", "siteA", "siteC"], 40)


@pytest.mark.parametrize(
    ("fixture", "data", "kwargs"),
    [
        ("airway_clusters_batch_sizes2to4", "airway", {"clusters": "batch", "sizes": [2, 3, 4]}),
        ("gtex_clusters_batch_synthetic", "gtex_lung_chr21", {"clusters": "batch_synthetic"}),
        (
            "gtex_clusters_batch_synthetic_sizes3to15by2",
            "gtex_lung_chr21",
            {"clusters": "batch_synthetic", "sizes": range(3, 16, 2)},
        ),
        ("pasilla_sizes_3_5_99", "pasilla", {"sizes": [5, 3, 99]}),
        ("sim_defaults", "sim", {}),
        ("sim_clusters_site", "sim", {"clusters": SIM_SITE, "sizes": range(3, 14, 2)}),
        ("sim_maxclustersize15", "sim", {"sizes": [4, 6, 8], "max_cluster_size": 15}),
        ("sim_minmean_2", "sim", {"min_mean": 2}),
        ("sim_subset_row_odd", "sim", {"subset_row": "odd rows"}),
        ("sim_scaling", "sim", {"scaling": "x1.5"}),
        (
            "sim_refclust_siteC",
            "sim",
            {"clusters": SIM_SITE, "sizes": range(3, 14, 2), "ref_clust": "siteC"},
        ),
    ],
)
def test_matches_scran_extra_fixtures(fixture: str, data: str, kwargs: dict[str, object]) -> None:
    """Clusters from a sample-sheet column (character labels), set sizes, low-input data."""
    ref = _read_sf(EXTRA / f"{fixture}.tsv")
    if data == "sim":
        counts = _sim()
    else:
        counts = _filtered(data)
        column = kwargs.get("clusters")
        if isinstance(column, str):
            kwargs = {**kwargs, "clusters": load_dataset(data).samples[column].to_numpy()}
    assert list(ref.index) == list(counts.columns)
    if kwargs.get("scaling") == "x1.5":
        lib = counts.to_numpy().sum(axis=0)
        kwargs = {**kwargs, "scaling": lib * np.resize([1, 1.5, 0.8, 1.2], lib.size)}
    if kwargs.get("subset_row") == "odd rows":
        kwargs = {**kwargs, "subset_row": np.arange(0, counts.shape[0], 2)}
    result = pooled_size_factors(counts.to_numpy(), **kwargs)
    _assert_close(result.size_factors, ref)


def test_low_input_defaults_use_umi_min_mean_and_real_pools() -> None:
    result = pooled_size_factors(_sim().to_numpy())
    assert result.min_mean == 0.1
    assert result.pool_sizes == {"0": [21, 26, 31, 36]}
    assert result.warnings == []
    # the factors are not the library-size ratios: the pooling did something
    lib = _sim().to_numpy().sum(axis=0)
    assert np.max(np.abs(result.size_factors / (lib / lib.mean()) - 1)) > 0.05


def test_umi_guess_warns_like_scuttle() -> None:
    counts = _sim().to_numpy() * 7
    result = pooled_size_factors(counts)
    _assert_close(result.size_factors, _read_sf(EXTRA / "sim_x7.tsv"))
    assert result.min_mean == 0.1
    assert len(result.warnings) == 1
    assert "assuming UMI data" in result.warnings[0]


def test_max_cluster_size_splits_round_robin() -> None:
    result = pooled_size_factors(_sim().to_numpy(), sizes=[4, 6, 8], max_cluster_size=15)
    assert result.clusters == ["0-1", "0-2", "0-3"]
    assert result.pool_sizes == {"0-1": [4, 6, 8], "0-2": [4, 6, 8], "0-3": [4, 6, 8]}


def test_guess_min_mean_rule() -> None:
    def lib(total: float) -> np.ndarray:
        return np.array([[total], [0.0]])

    assert guess_min_mean(lib(5e4), None) == (0.1, [])
    assert guess_min_mean(lib(1e5), None) == (1.0, [])
    assert guess_min_mean(lib(7e4), None)[0] == 0.1
    assert guess_min_mean(lib(7e4), 0.0) == (1e-8, [])


def test_scaled_counts_give_the_same_factors() -> None:
    counts = _sim().to_numpy()
    a = pooled_size_factors(counts, min_mean=0.1).size_factors
    b = pooled_size_factors(counts * 3, min_mean=0.3).size_factors
    np.testing.assert_allclose(a, b, rtol=1e-12)


# Bad input -----------------------------------------------------------------------------


def test_all_zero_sample_is_named() -> None:
    # scran: "cells should have non-zero library sizes or 'scaling' values"
    counts = _filtered("pasilla")
    z = counts.to_numpy().copy()
    z[:, 2] = 0
    with pytest.raises(InputError) as err:
        pooled_size_factors(z, sample_names=list(counts.columns))
    assert str(err.value) == (
        "sample(s) untreated3 have no reads in the genes used; pooled size factors need every "
        "sample to have reads. Remove them from the sample sheet or check the counting step."
    )


def test_min_mean_removing_every_gene() -> None:
    # scran: "insufficient features for median calculations"
    with pytest.raises(
        InputError, match=r"no gene has a mean normalised count of at least min_mean = 1e\+09"
    ):
        pooled_size_factors(_sim().to_numpy(), min_mean=1e9)


def test_one_sample_cluster_is_refused() -> None:
    # scran: "wrong sign in 'by' argument" from inside its ring construction
    counts = _filtered("pasilla")
    with pytest.raises(InputError) as err:
        pooled_size_factors(
            counts.to_numpy(),
            clusters=["a", "b", "b", "b", "b", "b", "b"],
            sample_names=list(counts.columns),
        )
    assert str(err.value) == (
        "cluster a has only 1 sample (untreated1); scran cannot pool a single sample. "
        "Merge it into another cluster or run without clusters."
    )


def test_duplicate_sizes() -> None:
    with pytest.raises(InputError, match=r"pool sizes are not unique: \[3\] given more than once"):
        pooled_size_factors(_filtered("pasilla").to_numpy(), sizes=[3, 3, 4])


def test_missing_cluster_label() -> None:
    with pytest.raises(InputError, match=r"position\(s\) 2 have no cluster label"):
        pooled_size_factors(
            _filtered("pasilla").to_numpy(), clusters=["a", None, "a", "b", "b", "b", "a"]
        )


def test_wrong_number_of_cluster_labels() -> None:
    with pytest.raises(
        InputError, match=r"clusters has 3 value\(s\) but the count matrix has 7 sample\(s\)"
    ):
        pooled_size_factors(_filtered("pasilla").to_numpy(), clusters=["a", "b", "a"])


def test_non_positive_estimate_is_refused_without_positive() -> None:
    """scran warns "encountered non-positive size factor estimates" on this matrix (checked
    with scran 1.26.2: raw estimate -0.0217 for the first sample); positive=False refuses."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(
        rng.gamma(0.3, 3, size=(200, 1)) * rng.uniform(0.2, 3, size=(1, 12))
    ).astype(float)
    # the first sample has reads in five genes only
    counts[:, 0] = 0
    counts[:5, 0] = rng.poisson(40, 5)
    names = [f"s{i + 1}" for i in range(12)]
    with pytest.raises(InputError) as err:
        pooled_size_factors(
            counts, sizes=[2, 3, 4, 5], min_mean=0.1, positive=False, sample_names=names
        )
    assert str(err.value) == (
        "scran pooling gave non-positive size factors for sample(s) s1 (all samples). "
        "These samples have too few reads in the genes shared with the others; remove them, "
        "or use clusters of similar samples."
    )


def _neg_case(seed: int) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    counts = pd.read_csv(EXTRA / f"neg_seed{seed}_counts.tsv.gz", sep="\t", index_col=0)
    ref = _read_sf(EXTRA / f"neg_seed{seed}.tsv")
    info = pd.read_csv(EXTRA / "INFO.tsv", sep="\t", index_col=0, dtype=str)
    raw = np.array([float(v) for v in info.loc[f"neg_seed{seed}_raw", "condition"].split()])
    return counts, ref, raw


@pytest.mark.parametrize("seed", [1, 5, 7])
def test_clean_size_factors_equals_scuttle_from_r_raw_estimates(seed: int) -> None:
    """cleanSizeFactors (lm, four robust nls passes) on scuttle's own raw estimates."""
    counts, ref, raw = _neg_case(seed)
    x = counts.to_numpy().astype(float)
    exprs = x / x.sum(axis=0)
    ave = exprs.mean(axis=1) * x.sum(axis=0).mean()
    detected = (exprs[ave >= 0.1] > 0).sum(axis=0)
    assert raw[0] < 0 < raw[1:].min()
    cleaned = clean_size_factors(raw, detected)
    np.testing.assert_allclose(cleaned / cleaned.mean(), ref.to_numpy(), rtol=1e-14)


@pytest.mark.parametrize("seed", [1, 5, 7])
def test_non_positive_estimate_is_repaired_as_scran(seed: int) -> None:
    """End to end: our raw estimates agree with scuttle's to 1e-13, and nls's
    finite-difference gradients amplify that to ~1e-7 in the repaired factor."""
    counts, ref, _ = _neg_case(seed)
    result = pooled_size_factors(
        counts.to_numpy(), sizes=range(2, 6), min_mean=0.1, sample_names=list(counts.columns)
    )
    np.testing.assert_allclose(result.size_factors, ref.to_numpy(), rtol=1e-6)
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        "scran pooling gave non-positive size factors for sample(s) s01 (all samples); as "
        "scran does (positive=TRUE), they were replaced"
    )


def test_too_few_positive_factors_to_repair() -> None:
    with pytest.raises(InputError, match=r"only 2 sample\(s\) got a positive pooled size factor"):
        clean_size_factors(np.array([-0.1, 0.5, 1.0, -0.2]), np.array([3, 50, 60, 4]))


def test_cluster_labels_sort_as_in_r() -> None:
    """R's factor(): numbers numerically, text case-insensitively (lower case first)."""
    counts = _sim().to_numpy()
    numeric = pooled_size_factors(counts, sizes=[3, 5], clusters=np.resize([10, 2, 1], 40))
    assert numeric.clusters == ["1", "2", "10"]
    text = pooled_size_factors(counts, sizes=[3, 5], clusters=np.resize(["b", "B", "a", "A"], 40))
    assert text.clusters == ["a", "A", "b", "B"]
