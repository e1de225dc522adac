"""The workflow's VST/rlog entry points (cohortnorm.transforms): the config keys they name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cohortnorm.errors import InputError
from cohortnorm.transforms import VstFallbackWarning, deseq2_rlog, deseq2_vst
from cohortnorm.vst import variance_stabilizing_transformation, vst

DATA = Path(__file__).parent / "data"


def _rising_dispersion_counts() -> np.ndarray:
    # Dispersion growing with the mean: DESeq2's parametric fit fails (it would switch
    # to locfit).
    rng = np.random.default_rng(3)
    mu = np.geomspace(20, 2e4, 300)[:, None] * np.ones((1, 6))
    alpha = 2e-4 * mu
    return rng.negative_binomial(1 / alpha, 1 / (1 + mu * alpha)).astype(float)


def _pasilla() -> np.ndarray:
    counts = pd.read_csv(DATA / "pasilla" / "counts.tsv.gz", sep="\t", index_col=0)
    keep = pd.read_csv(
        DATA / "pasilla" / "reference" / "edger_filterByExpr_keep.tsv.gz", sep="\t", index_col=0
    ).iloc[:, 0]
    return counts.loc[keep.astype(bool).to_numpy()].to_numpy(dtype=float)


def test_nsub_none_is_the_full_transform_and_the_default_is_vst() -> None:
    counts = _pasilla()[::4]
    full = deseq2_vst(counts, size_factors=None, design=None, nsub=None)
    np.testing.assert_array_equal(full, variance_stabilizing_transformation(counts))
    subset = deseq2_vst(counts, size_factors=None, design=None, nsub=500)
    np.testing.assert_array_equal(subset, vst(counts, nsub=500))


def test_too_few_genes_stops_when_asked_and_names_the_config_key() -> None:
    with pytest.raises(InputError) as caught:
        deseq2_vst(_pasilla()[:300], size_factors=None, design=None, too_few_genes="stop")
    assert str(caught.value) == (
        "vst with nsub=1000 needs at least 1000 genes, but there are 300. Set "
        "transforms.vst.nsub: null to run the full varianceStabilizingTransformation (the "
        "trend fitted on every gene), or a smaller transforms.vst.nsub"
    )


@pytest.mark.parametrize("depth", ["300 genes", "1/1000 of the reads"])
def test_too_few_genes_runs_the_full_transform_and_warns_by_default(depth: str) -> None:
    # Too few genes, or pasilla with 1/1000 of its reads (fewer than 1000 genes with
    # mean > 5): the low-input case, where DESeq2's vst() stops and advises
    # varianceStabilizingTransformation.
    counts = _pasilla()[:300] if depth == "300 genes" else np.floor(_pasilla() / 1000)
    counts = counts[counts.sum(axis=1) > 0]
    with pytest.warns(VstFallbackWarning, match="ran varianceStabilizingTransformation"):
        values = deseq2_vst(counts, size_factors=None, design=None)
    np.testing.assert_array_equal(values, variance_stabilizing_transformation(counts))


def test_failed_parametric_trend_names_the_config_key() -> None:
    counts = _rising_dispersion_counts()
    with pytest.raises(
        InputError, match=re.escape("set transforms.vst.fit_type: mean to use a constant")
    ):
        deseq2_vst(counts, size_factors=None, design=None, nsub=None)
    with pytest.raises(
        InputError,
        match=re.escape(
            "rlog here uses the parametric trend only: set transforms.rlog.enabled: false "
            "and use the VST with transforms.vst.fit_type: mean"
        ),
    ):
        deseq2_rlog(counts, size_factors=None, design=None)


def test_unblind_without_a_design_is_refused() -> None:
    with pytest.raises(InputError, match="blind: false needs a design"):
        deseq2_rlog(_pasilla()[:50], size_factors=None, design=None, blind=False)


@pytest.mark.parametrize("dataset", ["pasilla", "marioni", "airway", "gtex_lung_chr21"])
def test_blind_rlog_with_our_trend_equals_deseq2(dataset: str) -> None:
    # rlog(dds, blind = TRUE) after DESeq2's own size factors and dispersion trend; here
    # every step (ratio factors, gene-wise dispersions, parametric trend) is ours.
    folder = DATA / dataset
    reference = folder / "reference" / "extra_deseq2_rlog_blind.tsv.gz"
    if not reference.exists():
        pytest.skip(f"{dataset}: no rlog reference")
    counts = pd.read_csv(folder / "counts.tsv.gz", sep="\t", index_col=0)
    keep = pd.read_csv(
        folder / "reference" / "edger_filterByExpr_keep.tsv.gz", sep="\t", index_col=0
    ).iloc[:, 0]
    counts = counts.loc[keep.astype(bool).to_numpy()]
    expected = pd.read_csv(reference, sep="\t", index_col=0, float_precision="round_trip")
    ours = deseq2_rlog(counts.to_numpy(dtype=float), size_factors=None, design=None)
    assert list(expected.index) == list(counts.index)
    assert np.abs(ours - expected.to_numpy()).max() <= 1e-6
