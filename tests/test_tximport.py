"""tximport 1.26.1 gene summarisation against the R reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cohortnorm import expression
from cohortnorm.errors import InputError
from cohortnorm.tximport import (
    make_counts_from_abundance,
    r_sort_key,
    replace_missing_length,
    summarize_to_genes,
)

DATA = Path(__file__).parent / "data"
SALMON = DATA / "salmon_isoformswitch"
SAMPLES = ["hESC_0", "hESC_1", "iPS_0", "iPS_1", "Fibroblasts_0", "Fibroblasts_1"]


def reference(name: str) -> pd.DataFrame:
    return pd.read_csv(
        SALMON / "reference" / f"{name}.tsv.gz", sep="\t", index_col=0, float_precision="round_trip"
    )


@pytest.fixture(scope="module")
def transcripts() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Series]:
    quant = {
        sample: pd.read_csv(
            SALMON / "raw" / sample / "quant.sf.gz",
            sep="\t",
            index_col=0,
            float_precision="round_trip",
        )
        for sample in SAMPLES
    }
    counts = pd.DataFrame({s: q["NumReads"] for s, q in quant.items()})
    abundance = pd.DataFrame({s: q["TPM"] for s, q in quant.items()})
    length = pd.DataFrame({s: q["EffectiveLength"] for s, q in quant.items()})
    tx2gene = pd.read_csv(SALMON / "tx2gene.tsv", sep="\t", index_col=0)["gene_id"]
    return counts, abundance, length, tx2gene


def assert_close(actual: pd.DataFrame, expected: pd.DataFrame, rel: float = 1e-12) -> float:
    assert list(actual.index) == list(expected.index)
    assert list(actual.columns) == list(expected.columns)
    a, e = actual.to_numpy(dtype=float), expected.to_numpy(dtype=float)
    np.testing.assert_allclose(a, e, rtol=rel, atol=0)
    return float(np.max(np.abs(a - e) / np.maximum(np.abs(e), np.finfo(float).tiny)))


@pytest.mark.parametrize("cfa", ["no", "scaledTPM", "lengthScaledTPM"])
def test_gene_level_matches_tximport(transcripts, cfa: str) -> None:
    counts, abundance, length = summarize_to_genes(*transcripts, counts_from_abundance=cfa)
    assert_close(counts, reference(f"tximport_gene_counts_cfa-{cfa}"))
    assert_close(abundance, reference(f"tximport_gene_abundance_cfa-{cfa}"))
    assert_close(length, reference(f"tximport_gene_length_cfa-{cfa}"))
    assert counts.index.name == "gene_id"


def test_reference_exercises_geometric_mean_rule(transcripts) -> None:
    # The Salmon reference tests replaceMissingLength only if some gene has zero
    # abundance in some samples (the all-zero rule is covered by the next test).
    _, abundance, _ = summarize_to_genes(*transcripts)
    zero = abundance.to_numpy() == 0
    assert (zero.any(axis=1) & ~zero.all(axis=1)).any()


@pytest.mark.parametrize("cfa", ["no", "lengthScaledTPM"])
def test_all_zero_gene_matches_tximport(cfa: str) -> None:
    # tests/data/importers/tximport_all_zero.R: gene g2 is zero everywhere.
    folder = DATA / "importers"
    tx = pd.Index(["t1", "t2", "t3", "t4", "t5"])
    columns = ["s1", "s2", "s3"]

    def matrix(values: list[float]) -> pd.DataFrame:
        return pd.DataFrame(np.reshape(values, (3, 5)).T, index=tx, columns=columns)

    counts = matrix([10, 5, 0, 0, 7, 0, 0, 0, 0, 3, 4.5, 1, 0, 0, 9])
    abundance = matrix([100, 30, 0, 0, 50, 0, 0, 0, 0, 20, 40, 12.5, 0, 0, 70])
    length = matrix(
        [1000, 500.5, 300, 350, 800, 990, 510, 310, 333.25, 810, 1001, 499, 305, 340, 799]
    )
    tx2gene = pd.Series(["g1", "g1", "g2", "g2", "g3"], index=tx)
    result = summarize_to_genes(counts, abundance, length, tx2gene, cfa)
    for kind, actual in zip(["counts", "abundance", "length"], result, strict=True):
        expected = pd.read_csv(
            folder / f"tximport_all_zero_{kind}_cfa-{cfa}.tsv",
            sep="\t",
            index_col=0,
            float_precision="round_trip",
        )
        assert_close(actual, expected)


def test_replace_missing_length_rules() -> None:
    length = np.array([[2.0, np.nan, 8.0], [np.nan, np.nan, np.nan], [1.0, 2.0, 3.0]])
    out = replace_missing_length(length, np.array([10.0, 20.0, 30.0]))
    np.testing.assert_allclose(out[0], [2.0, 4.0, 8.0])
    np.testing.assert_allclose(out[1], [20.0, 20.0, 20.0])
    np.testing.assert_array_equal(out[2], length[2])


def test_missing_transcripts_are_an_error_or_dropped(transcripts) -> None:
    counts, abundance, length, tx2gene = transcripts
    partial = tx2gene.drop(tx2gene.index[[3, 10]])
    with pytest.raises(InputError, match=r"2 quantified transcript\(s\) have no gene"):
        summarize_to_genes(counts, abundance, length, partial)
    kept = summarize_to_genes(counts, abundance, length, partial, ignore_missing=True)[0]
    assert kept.to_numpy().sum() == pytest.approx(
        counts.drop(index=tx2gene.index[[3, 10]]).to_numpy().sum(), rel=1e-12
    )
    with pytest.raises(InputError, match="none of the quantified transcripts"):
        summarize_to_genes(counts, abundance, length, tx2gene.set_axis(tx2gene.index + "x"))


def test_bad_counts_from_abundance(transcripts) -> None:
    with pytest.raises(InputError, match="dtuScaledTPM"):
        summarize_to_genes(*transcripts, counts_from_abundance="dtuScaledTPM")


def test_r_sort_key_matches_r_collation() -> None:
    # Written by R 4.2.2 (ICU collation): tests/data/importers/r_sort_order.R
    ids = (DATA / "importers" / "r_sort_order.txt").read_text().splitlines()
    assert sorted(ids, key=r_sort_key) == ids


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.floats(0, 1e4),
            st.one_of(st.just(0.0), st.floats(1e-3, 1e3)),
            st.floats(1, 5e3),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_totals_are_preserved(rows: list[tuple[int, float, float, float]]) -> None:
    tx = pd.Index([f"t{i}" for i in range(len(rows))])
    genes = pd.Series([f"g{r[0]}" for r in rows], index=tx)
    counts = pd.DataFrame({"s": [r[1] for r in rows]}, index=tx)
    abundance = pd.DataFrame({"s": [r[2] for r in rows]}, index=tx)
    length = pd.DataFrame({"s": [r[3] for r in rows]}, index=tx)
    gene_counts, gene_abundance, gene_length = summarize_to_genes(counts, abundance, length, genes)
    assert gene_counts["s"].sum() == pytest.approx(counts["s"].sum(), rel=1e-9, abs=1e-9)
    assert gene_abundance["s"].sum() == pytest.approx(abundance["s"].sum(), rel=1e-9, abs=1e-9)
    lo = length.groupby(genes)["s"].min().reindex(gene_length.index)
    hi = length.groupby(genes)["s"].max().reindex(gene_length.index)
    assert ((gene_length["s"] >= lo * (1 - 1e-12)) & (gene_length["s"] <= hi * (1 + 1e-12))).all()


def test_make_counts_from_abundance_keeps_library_size(transcripts) -> None:
    counts, abundance, length, _ = transcripts
    scaled = make_counts_from_abundance(counts, abundance, length, "lengthScaledTPM")
    np.testing.assert_allclose(scaled.sum(axis=0), counts.sum(axis=0), rtol=1e-12)


# ------------------------------------------------- FPKM from the quantifier's TPM


def test_fpkm_from_tpm_is_edger_rpkm_of_consistent_quantifier_output() -> None:
    # A quantifier's TPM is 1e6·(c/len)/Σ(c/len); from it and tximport's gene length,
    # FPKM must be edgeR's rpkm of the unrounded gene counts with N = Σ counts.
    rng = np.random.default_rng(7)
    tx = pd.Index([f"t{i}" for i in range(40)])
    samples = ["a", "b", "c"]
    counts = pd.DataFrame(rng.gamma(1.0, 200.0, (40, 3)), index=tx, columns=samples)
    counts.iloc[::7, 1] = 0.0
    length = pd.DataFrame(rng.uniform(150, 9000, (40, 3)), index=tx, columns=samples)
    rate = counts / length
    abundance = rate / rate.sum() * 1e6
    tx2gene = pd.Series([f"g{i // 3}" for i in range(40)], index=tx)
    gene_counts, gene_tpm, gene_length = summarize_to_genes(counts, abundance, length, tx2gene)
    fpkm = expression.fpkm_from_tpm(gene_tpm.to_numpy(), gene_length.to_numpy())
    rpkm = expression.fpkm(gene_counts.to_numpy(), gene_length.to_numpy(), counts.sum().to_numpy())
    np.testing.assert_allclose(fpkm, rpkm, rtol=1e-12)


def test_fpkm_from_tpm_refuses_an_empty_sample_and_bad_values() -> None:
    tpm = np.array([[1e6, 0.0], [0.0, 0.0]])
    length = np.array([[1000.0, 800.0], [500.0, 400.0]])
    with pytest.raises(ValueError, match="no abundance"):
        expression.fpkm_from_tpm(tpm, length)
    with pytest.raises(ValueError, match="length"):
        expression.fpkm_from_tpm(np.ones((2, 2)), -length)
    # TPM / (TPM-weighted mean length in kb): one gene of 1 kb at 1e6 TPM is 1e6 FPKM.
    np.testing.assert_allclose(
        expression.fpkm_from_tpm(np.array([[1e6], [0.0]]), np.array([[1000.0], [50.0]])),
        [[1e6], [0.0]],
    )


# ---------------------------------------------------- normalized counts divisors


def test_normalized_counts_factors_deseq2_or_method() -> None:
    size_factor = np.array([0.8, 1.1, 1.3])
    effective = np.array([2.0e6, 8.0e6, 4.0e6])
    np.testing.assert_array_equal(
        expression.normalized_counts_factors(size_factor, effective, "deseq2"), size_factor
    )
    method = expression.normalized_counts_factors(size_factor, effective, "method")
    # geometric mean of 2, 8, 4 (×1e6) is 4e6
    np.testing.assert_allclose(method, [0.5, 2.0, 1.0], rtol=1e-14)
    with pytest.raises(ValueError, match="deseq2"):
        expression.normalized_counts_factors(size_factor, effective, "edger")
    with pytest.raises(ValueError, match="effective library size"):
        expression.normalized_counts_factors(size_factor, np.array([1.0, 0.0, 2.0]), "method")
