"""DESeq2 1.38.3 ``rlog`` port (``cohortnorm.rlog``) checked against R outputs in ``tests/data``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import COUNT_DATASETS, DATA, load_dataset

from cohortnorm.errors import InputError
from cohortnorm.rlog import rlog, sparse_test, weighted_quantile_hmisc

EXTRA = DATA / "rlog_limma_extra"


def _filtered_counts(name: str) -> pd.DataFrame:
    ds = load_dataset(name)
    keep = ds.reference("edger_filterByExpr_keep")["keep"].astype(bool)
    return ds.counts.loc[keep[keep].index]


def _read(path: str) -> pd.DataFrame:
    return pd.read_csv(EXTRA / path, sep="\t", float_precision="round_trip")


@pytest.mark.parametrize("name", COUNT_DATASETS)
def test_rlog_blind_equals_deseq2(name: str) -> None:
    # rlog(dds ~1, blind=TRUE): dispersions = the blind parametric trend, dispFit
    ds = load_dataset(name)
    counts = _filtered_counts(name)
    disp = ds.reference("extra_deseq2_dispersions")
    assert list(disp.index) == list(counts.index)
    params = ds.reference("extra_deseq2_dispersion_params", index_col=None)
    sf = params[params["quantity"] == "size_factor"].set_index("name")["value"].astype(float)
    expected = ds.reference("extra_deseq2_rlog_blind")
    res = rlog(counts, sf[counts.columns].to_numpy(), disp["blind_dispFit_parametric"].to_numpy())
    bpv = float(params.loc[params["quantity"] == "rlog", "value"].iloc[0])
    assert res.beta_prior_var == pytest.approx(bpv, rel=1e-12)
    diff = np.abs(res.values.to_numpy() - expected.loc[counts.index, counts.columns].to_numpy())
    assert diff.max() <= 1e-9
    assert np.abs(res.intercept - disp["rlogIntercept"].to_numpy()).max() <= 1e-9
    assert list(res.values.columns) == list(counts.columns)
    assert 0.0 <= res.sparse_share <= 0.1  # DESeq2 gave no sparseTest warning on these


@pytest.mark.parametrize("name", ["pasilla", "gtex_lung_chr21"])
def test_rlog_with_design_dispersions_equals_deseq2_blind_false(name: str) -> None:
    # rlog(dds, blind=FALSE) after estimateDispersions with the design (R script beside the
    # fixture): only the trend dispersions change, the rlog model is the same
    counts = _filtered_counts(name)
    genes = _read(f"rlog_design_{name}_genes.tsv.gz").set_index("gene_id")
    params = _read(f"rlog_design_{name}_params.tsv.gz")
    sf = params[params["quantity"] == "size_factor"].set_index("name")["value"].astype(float)
    expected = _read(f"rlog_design_{name}.tsv.gz").set_index("gene_id")
    res = rlog(counts, sf[counts.columns].to_numpy(), genes.loc[counts.index, "dispFit"])
    bpv = float(params.loc[params["quantity"] == "betaPriorVar", "value"].iloc[0])
    assert res.beta_prior_var == pytest.approx(bpv, rel=1e-12)
    assert np.abs(res.values.to_numpy() - expected.to_numpy()).max() <= 1e-9
    assert np.abs(res.intercept - genes["rlogIntercept"].to_numpy()).max() <= 1e-9


def test_given_beta_prior_var_is_used_as_is() -> None:
    ds = load_dataset("gtex_lung_chr21")
    counts = _filtered_counts("gtex_lung_chr21")
    disp = ds.reference("extra_deseq2_dispersions")["blind_dispFit_parametric"].to_numpy()
    params = ds.reference("extra_deseq2_dispersion_params", index_col=None)
    sf = params[params["quantity"] == "size_factor"]["value"].astype(float).to_numpy()
    bpv = float(params.loc[params["quantity"] == "rlog", "value"].iloc[0])
    expected = ds.reference("extra_deseq2_rlog_blind").to_numpy()
    res = rlog(counts.to_numpy(), sf, disp, beta_prior_var=bpv)
    assert res.beta_prior_var == bpv
    assert np.abs(res.values - expected).max() <= 1e-9
    # a larger prior variance shrinks less: samples spread further apart
    wide = rlog(counts.to_numpy(), sf, disp, beta_prior_var=10 * bpv)
    assert wide.values.std(axis=1).mean() > res.values.std(axis=1).mean()


def test_all_zero_gene_gives_zero_and_leaves_the_others_unchanged() -> None:
    ds = load_dataset("gtex_lung_chr21")
    counts = _filtered_counts("gtex_lung_chr21")
    disp = ds.reference("extra_deseq2_dispersions")["blind_dispFit_parametric"].to_numpy()
    params = ds.reference("extra_deseq2_dispersion_params", index_col=None)
    sf = params[params["quantity"] == "size_factor"]["value"].astype(float).to_numpy()
    zero = pd.DataFrame(0, index=["all_zero"], columns=counts.columns)
    with_zero = pd.concat([counts.iloc[:5], zero, counts.iloc[5:]])
    disp_zero = np.concatenate([disp[:5], [np.nan], disp[5:]])
    res = rlog(with_zero, sf, disp_zero)
    expected = ds.reference("extra_deseq2_rlog_blind")
    assert (res.values.loc["all_zero"] == 0).all()
    assert res.intercept[5] == -np.inf
    assert res.iterations[5] == 0
    others = res.values.drop(index="all_zero")
    assert np.abs(others.to_numpy() - expected.loc[others.index].to_numpy()).max() <= 1e-9


def test_weighted_quantile_matches_hmisc() -> None:
    # values printed by R: DESeq2:::Hmisc.wtd.quantile(x, w, p, normwt = TRUE)
    assert weighted_quantile_hmisc(
        np.array([5, 1, 3, 2, 4.0]), np.array([1, 2, 0, 1, 4.0]), 0.95
    ) == pytest.approx(4.8499999999999996, abs=1e-15)
    assert weighted_quantile_hmisc(
        np.array([5, 1, 3, 2, 4.0]), np.array([1, 2, 0, 1, 4.0]), 0.3
    ) == pytest.approx(3.6999999999999997, abs=1e-15)
    # with any exact tie, Hmisc merges values through their 15-digit text: 0.1 + 0.2 becomes
    # 0.3 and the quantile is exactly 0.3 (R: TRUE); without ties it stays apart
    assert weighted_quantile_hmisc(np.array([0.1 + 0.2, 0.3, 0.3, 1.0]), np.ones(4), 0.5) == 0.3
    assert weighted_quantile_hmisc(
        np.array([0.1 + 0.2, 0.3, 1.0, 2.0]), np.ones(4), 0.5
    ) == pytest.approx(0.65000000000000002, abs=1e-16)


def test_sparse_test_share() -> None:
    # gene 1: 95 of 100+ in one sample (dominated); gene 2: even; gene 3: sum below 100
    q = np.array([[190.0, 5.0, 5.0], [60.0, 70.0, 80.0], [90.0, 1.0, 1.0]])
    assert sparse_test(q) == 0.5
    assert sparse_test(np.ones((3, 3))) == 0.0


def test_rlog_refuses_bad_inputs() -> None:
    counts = pd.DataFrame([[10, 20, 30], [5, -1, 3]], index=["g1", "g2"], columns=["a", "b", "c"])
    with pytest.raises(InputError, match=r"gene g2, sample b has -1\.0"):
        rlog(counts, np.ones(3), np.array([0.1, 0.1]))
    counts = counts.astype(float)
    counts.loc["g2", "b"] = 4.5
    with pytest.raises(InputError, match=r"whole-number counts.*gene g2, sample b has 4\.5"):
        rlog(counts, np.ones(3), np.array([0.1, 0.1]))
    counts.loc["g2", "b"] = 4
    with pytest.raises(InputError, match="2 size factors for 3 samples"):
        rlog(counts, np.ones(2), np.array([0.1, 0.1]))
    with pytest.raises(InputError, match=r"size factor of sample b is 0\.0"):
        rlog(counts, np.array([1.0, 0.0, 1.0]), np.array([0.1, 0.1]))
    with pytest.raises(InputError, match="dispersion of gene g2 is nan"):
        rlog(counts, np.ones(3), np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="1 dispersions for 2 genes"):
        rlog(counts, np.ones(3), np.array([0.1]))


def test_edge_case_genes_equal_deseq2() -> None:
    # rlog_limma_extra/rlog_edge_fixture.R: DESeq2 rlogData on 300 simulated genes plus an
    # all-zero gene, a single read, one outlier among zeros, one zero among 20,000s,
    # alternating 0/300, counts of 5 million, dispersion 1e-8 and dispersion 9
    table = pd.read_csv(
        EXTRA / "rlog_edge.tsv.gz", sep="\t", index_col=0, float_precision="round_trip"
    )
    params = _read("rlog_edge_params.tsv.gz")
    samples = [f"s{i}" for i in range(1, 13)]
    sf = params.loc[params["quantity"] == "size_factor", "value"].to_numpy(float)
    res = rlog(table[samples], sf, table["dispFit"].to_numpy())
    expected = table[[f"rlog_{s}" for s in samples]].to_numpy()
    assert np.abs(res.values.to_numpy() - expected).max() <= 1e-9
    bpv = float(params.loc[params["quantity"] == "betaPriorVar", "value"].iloc[0])
    assert res.beta_prior_var == pytest.approx(bpv, rel=1e-12)
    finite = np.isfinite(table["rlogIntercept"].to_numpy())
    assert (res.intercept[~finite] == -np.inf).all()
    assert np.abs(res.intercept[finite] - table["rlogIntercept"].to_numpy()[finite]).max() <= 1e-9
