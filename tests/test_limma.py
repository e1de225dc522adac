"""limma 3.54.1 ``removeBatchEffect`` port (``cohortnorm.limma``) checked against R outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import COUNT_DATASETS, DATA, load_dataset

from cohortnorm.errors import InputError
from cohortnorm.limma import remove_batch_effect, sum_contrasts

EXTRA = DATA / "rlog_limma_extra"


def _design(condition: pd.Series) -> np.ndarray:
    # model.matrix(~condition) with levels in order of appearance, as reference_extra.R
    levels = list(pd.unique(condition))
    cols = [np.ones(len(condition))]
    cols += [(condition == level).to_numpy(float) for level in levels[1:]]
    return np.column_stack(cols)


def _covariate(ds: object) -> np.ndarray:
    # the exact covariate reference_extra.R used: scale(log2(lib.size)), from extra_INFO.tsv
    info = {}
    for line in (ds.root / "reference" / "extra_INFO.tsv").read_text().splitlines():
        key, _, value = line.partition("\t")
        info[key] = value
    pairs = dict(item.split("=") for item in info["removeBatchEffect_covariate_cov"].split())
    return np.array([float(pairs[s]) for s in ds.samples["sample"]])


@pytest.mark.parametrize("name", COUNT_DATASETS)
@pytest.mark.parametrize("with_covariate", [False, True])
def test_remove_batch_effect_equals_limma(name: str, with_covariate: bool) -> None:
    ds = load_dataset(name)
    tag = "_SYNTHETICBATCH" if "batch_synthetic" in ds.samples else ""
    stem = "extra_limma_removeBatchEffect" + ("_covariate" if with_covariate else "") + tag
    logcpm = ds.reference("edger_logcpm_filtered_TMM")
    expected = ds.reference(stem)
    design = _design(ds.condition) if ds.has_condition else None
    out = remove_batch_effect(
        logcpm,
        batch=ds.batch,
        covariates=_covariate(ds) if with_covariate else None,
        design=design,
    )
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(expected.index)
    assert np.abs(out.to_numpy() - expected[out.columns].to_numpy()).max() <= 1e-9


def test_batch2_and_uncentred_covariate_equal_limma() -> None:
    # tests/data/rlog_limma_extra/rlog_limma_fixtures.R: pasilla, batch2 = n_lanes (integer)
    ds = load_dataset("pasilla")
    logcpm = ds.reference("edger_logcpm_filtered_TMM")
    lanes = ds.samples["n_lanes"].astype(int)
    design = _design(ds.condition)
    expected = pd.read_csv(
        EXTRA / "limma_batch2_pasilla.tsv.gz", sep="\t", index_col=0, float_precision="round_trip"
    )
    out = remove_batch_effect(logcpm, batch=ds.batch, batch2=lanes, design=design)
    assert np.abs(out.to_numpy() - expected.to_numpy()).max() <= 1e-9
    # limma 3.54.1 does not centre covariates: log2 library size is used as given
    libsize = np.log2(ds.counts.loc[logcpm.index].sum(axis=0).to_numpy(float))
    expected = pd.read_csv(
        EXTRA / "limma_batch2_covariate_pasilla.tsv.gz",
        sep="\t",
        index_col=0,
        float_precision="round_trip",
    )
    out = remove_batch_effect(
        logcpm, batch=ds.batch, batch2=lanes, covariates=libsize, design=design
    )
    assert np.abs(out.to_numpy() - expected.to_numpy()).max() <= 1e-9


def test_aliased_columns_and_numeric_level_order_equal_limma() -> None:
    # airway: batch (4 cell lines), batch2 = read length 87..126 (integer, so R sorts the
    # levels as numbers: 87, 98, 101, 120, 126) and condition need 9 columns for 8 samples;
    # lm.fit leaves the aliased batch2 column without a coefficient
    ds = load_dataset("airway")
    logcpm = ds.reference("edger_logcpm_filtered_TMM").iloc[:2000]
    expected = pd.read_csv(
        EXTRA / "limma_batch2_airway_first2000.tsv.gz",
        sep="\t",
        index_col=0,
        float_precision="round_trip",
    )
    out = remove_batch_effect(
        logcpm,
        batch=ds.batch,
        batch2=ds.samples["avgLength"].astype(int),
        design=_design(ds.condition),
    )
    assert np.abs(out.to_numpy() - expected.to_numpy()).max() <= 1e-9


def test_small_example_by_hand() -> None:
    # one gene, batches a, a, b, b at 1, 1, 3, 3: both batches move to the mean 2
    out = remove_batch_effect(np.array([[1.0, 1.0, 3.0, 3.0]]), batch=["a", "a", "b", "b"])
    np.testing.assert_allclose(out, [[2.0, 2.0, 2.0, 2.0]], atol=1e-14)
    # sum-to-zero coding: +1 for its own level, -1 for the last level (x, y, z)
    np.testing.assert_array_equal(sum_contrasts(["x", "z", "y"]), [[1, 0], [-1, -1], [0, 1]])
    # nothing to remove: the data come back unchanged
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(remove_batch_effect(x), x)


def test_remove_batch_effect_refuses_bad_inputs() -> None:
    x = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]], index=["g1", "g2"], columns=list("abc"))
    with pytest.raises(InputError, match="first: gene g2, sample b"):
        remove_batch_effect(x, batch=["p", "p", "q"])
    x.loc["g2", "b"] = 5.0
    with pytest.raises(InputError, match="single level"):
        remove_batch_effect(x, batch=["p", "p", "p"])
    with pytest.raises(InputError, match="batch has 2 labels but the table has 3 samples"):
        remove_batch_effect(x, batch=["p", "q"])
    with pytest.raises(InputError, match="design has 2 rows"):
        remove_batch_effect(x, batch=["p", "p", "q"], design=np.ones((2, 1)))
