"""The sharded (scatter–gather) steps equal the in-memory ones, and the chunked store.

Each sharded result is compared with the in-memory function on the same
Fortran-ordered float64 matrix (the layout ``read_matrix`` gives), on the four
reference datasets in shards of 2 and 3 samples and on simulated cohorts whose shard
size does not divide the sample count. ``docs/sharding.md`` lists which outputs are
bitwise equal (asserted with ``assert_array_equal``) and which within 1e-12 relative.
"""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from cohortnorm import deseq2, edger, expression, qc, sharded
from cohortnorm.combat import combat, design_matrix
from cohortnorm.combat_seq import combat_seq, seq_plan
from cohortnorm.errors import InputError
from cohortnorm.io import chunked

RTOL = 1e-12


def _values(counts: np.ndarray | pd.DataFrame) -> np.ndarray:
    return np.asfortranarray(np.asarray(counts, dtype=np.float64))


def _simulated(n_genes: int, n_samples: int, seed: int, sparse: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.3, 3.0, n_samples)
    mean = rng.lognormal(3, 2, n_genes)[:, None] * depth
    counts = rng.negative_binomial(5, 5 / (5 + mean)).astype(np.float64)
    counts[rng.random(counts.shape) < sparse * rng.random((n_genes, 1))] = 0
    return _values(counts)


def _group(dataset: Dataset) -> np.ndarray | None:
    return dataset.condition.to_numpy() if dataset.has_condition else None


# --- reference datasets, shards of 2 and 3 samples ---------------------------------------


@pytest.mark.parametrize("per_shard", [2, 3])
def test_filter_by_expr_on_datasets(dataset: Dataset, per_shard: int) -> None:
    values = _values(dataset.counts)
    source = sharded.ArraySource(values)
    expected = edger.filter_by_expr(values, group=_group(dataset))
    keep = sharded.sharded_filter_by_expr(source, per_shard, group=_group(dataset))
    np.testing.assert_array_equal(keep, expected)
    # and against R, so that the in-memory side is not the only witness
    np.testing.assert_array_equal(keep, dataset.reference("edger_filterByExpr_keep")["keep"])


@pytest.mark.parametrize("method", ["TMM", "TMMwsp", "RLE", "upperquartile", "none"])
@pytest.mark.parametrize("per_shard", [2, 3])
def test_norm_factors_on_datasets(dataset: Dataset, method: str, per_shard: int) -> None:
    values = _values(dataset.counts)
    keep = dataset.reference("edger_filterByExpr_keep")["keep"].to_numpy()
    values = np.asfortranarray(values[keep])
    expected = edger.calc_norm_factors(values, method)
    factors = sharded.sharded_norm_factors(sharded.ArraySource(values), per_shard, method)
    if method == "RLE":  # log sums added shard by shard
        np.testing.assert_allclose(factors, expected, rtol=RTOL, atol=0)
    else:
        np.testing.assert_array_equal(factors, expected)


@pytest.mark.parametrize("type_", ["ratio", "poscounts"])
@pytest.mark.parametrize("per_shard", [2, 3])
def test_size_factors_on_datasets(dataset: Dataset, type_: str, per_shard: int) -> None:
    values = _values(dataset.counts)
    expected = deseq2.size_factors(values, type_)  # type: ignore[arg-type]
    factors = sharded.sharded_size_factors(sharded.ArraySource(values), per_shard, type_)  # type: ignore[arg-type]
    np.testing.assert_allclose(factors, expected, rtol=RTOL, atol=0)
    reference = dataset.reference("deseq2_size_factors")
    if type_ == "ratio" and "sizeFactor" in reference:
        np.testing.assert_allclose(factors, reference["sizeFactor"], rtol=1e-9)


@pytest.mark.parametrize("per_shard", [2, 3])
def test_cpm_logcpm_tpm_on_datasets(dataset: Dataset, per_shard: int) -> None:
    keep = dataset.reference("edger_filterByExpr_keep")["keep"].to_numpy()
    values = np.asfortranarray(_values(dataset.counts)[keep])
    factors = edger.calc_norm_factors(values)
    effective = values.sum(axis=0) * factors
    expected_log = edger.cpm(values, effective, log=True)
    expected_cpm = edger.cpm(values, effective)
    source = sharded.ArraySource(values)
    mean = float(effective.mean())
    for columns, part in sharded.shards(source, per_shard):
        np.testing.assert_array_equal(
            sharded.apply_cpm(part, effective[columns], log=True, mean_effective_size=mean),
            expected_log[:, columns],
        )
        np.testing.assert_array_equal(
            sharded.apply_cpm(part, effective[columns]), expected_cpm[:, columns]
        )
    if dataset.lengths is not None:
        lengths = dataset.lengths.reindex(dataset.counts.index).to_numpy(float)[keep]
        known = np.isfinite(lengths) & (lengths > 0)
        values, lengths = np.asfortranarray(values[known]), lengths[known]
        expected_tpm = expression.tpm(values, lengths)
        for columns, out in sharded.sharded_apply(
            sharded.ArraySource(values),
            per_shard,
            lambda _, part: sharded.apply_tpm(part, lengths),
        ):
            np.testing.assert_array_equal(out, expected_tpm[:, columns])


def test_logcpm_of_a_shard_needs_the_cohort_mean() -> None:
    with pytest.raises(ValueError, match="mean effective library size of the cohort"):
        sharded.apply_cpm(np.ones((2, 2)), np.ones(2), log=True)


# --- simulated cohorts: shard sizes that do not divide the sample count -------------------


@pytest.mark.parametrize(("n_samples", "per_shard"), [(23, 5), (17, 4), (9, 8), (7, 7), (11, 1)])
def test_simulated_cohort_all_steps(n_samples: int, per_shard: int) -> None:
    values = _simulated(800, n_samples, seed=n_samples)
    source = sharded.ArraySource(values)
    group = np.array(["a", "b", "c"])[np.arange(n_samples) % 3]
    np.testing.assert_array_equal(
        sharded.sharded_filter_by_expr(source, per_shard, group=group),
        edger.filter_by_expr(values, group=group),
    )
    for method in ("TMM", "TMMwsp", "upperquartile"):
        np.testing.assert_array_equal(
            sharded.sharded_norm_factors(source, per_shard, method),
            edger.calc_norm_factors(values, method),
        )
    np.testing.assert_allclose(
        sharded.sharded_size_factors(source, per_shard, "poscounts"),
        deseq2.size_factors(values, "poscounts"),
        rtol=RTOL,
    )


def test_sparse_cohort_takes_the_square_root_reference() -> None:
    # Most counts zero: the upper quartiles are 0 and edgeR picks the sample with the
    # largest sum of square roots; the shards must agree on it.
    rng = np.random.default_rng(3)
    values = _values(rng.poisson(0.2, (500, 13)) * rng.integers(1, 50, (500, 13)))
    source = sharded.ArraySource(values)
    assert np.median(edger.upper_quartile_factors(values[values.any(axis=1)], values.sum(0))) == 0
    np.testing.assert_array_equal(
        sharded.sharded_norm_factors(source, 4, "TMM"), edger.calc_norm_factors(values, "TMM")
    )


def test_fractional_counts_within_tolerance() -> None:
    # Estimated counts (not whole): per-gene sums added by shard may differ in the last bit.
    rng = np.random.default_rng(5)
    values = _simulated(600, 14, seed=5) + rng.random((600, 14))
    values = np.asfortranarray(values)
    source = sharded.ArraySource(values)
    # TMM and TMMwsp: each factor is a function of its sample and the reference only,
    # so fractional counts are bitwise too; RLE's log sums are added by shard.
    for method in ("TMM", "TMMwsp", "upperquartile"):
        np.testing.assert_array_equal(
            sharded.sharded_norm_factors(source, 3, method),
            edger.calc_norm_factors(values, method),
        )
    np.testing.assert_allclose(
        sharded.sharded_norm_factors(source, 3, "RLE"),
        edger.calc_norm_factors(values, "RLE"),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        sharded.sharded_size_factors(source, 3), deseq2.size_factors(values), rtol=RTOL
    )


@settings(max_examples=8, deadline=None)
@given(per_shard=st.integers(1, 12), seed=st.integers(0, 1000))
def test_any_shard_size_gives_the_same_factors(per_shard: int, seed: int) -> None:
    values = _simulated(300, 12, seed=seed)
    source = sharded.ArraySource(values)
    np.testing.assert_array_equal(
        sharded.sharded_norm_factors(source, per_shard), edger.calc_norm_factors(values)
    )
    np.testing.assert_array_equal(
        sharded.sharded_filter_by_expr(source, per_shard), edger.filter_by_expr(values)
    )
    np.testing.assert_allclose(
        sharded.sharded_size_factors(source, per_shard, "poscounts"),
        deseq2.size_factors(values, "poscounts"),
        rtol=RTOL,
    )


def test_sharded_errors_match_in_memory() -> None:
    values = _values(np.array([[0, 5], [0, 7], [0, 1]]))
    with pytest.raises(ValueError, match="no reads"):
        sharded.sharded_norm_factors(sharded.ArraySource(values), 1)
    zeros = _values(np.array([[0, 5], [3, 0]]))
    with pytest.raises(ValueError, match="every gene contains at least one zero"):
        sharded.sharded_size_factors(sharded.ArraySource(zeros), 1)
    with pytest.raises(ValueError, match="shard 3 does not exist"):
        chunked.shard_columns(5, 3, 2)


# --- the store ----------------------------------------------------------------------------


def _write_tsv(path, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    frame.rename_axis("gene_id").to_csv(path, sep="\t")


@pytest.mark.parametrize("block_rows", [1, 7, 5000])
def test_tsv_store_round_trip(tmp_path, block_rows: int) -> None:  # type: ignore[no-untyped-def]
    values = _simulated(53, 11, seed=1).astype(np.int64)
    frame = pd.DataFrame(
        values, index=[f"g{i}" for i in range(53)], columns=[f"s{j}" for j in range(11)]
    )
    _write_tsv(tmp_path / "counts.tsv", frame)
    chunked.tsv_to_store(tmp_path / "counts.tsv", tmp_path / "counts.h5", block_rows=block_rows)
    with chunked.open_store(tmp_path / "counts.h5") as store:
        assert list(store.genes) == list(frame.index)
        assert list(store.samples) == list(frame.columns)
        parts = [chunked.read_sample_shard(store, k, 3) for k in range(4)]
        assert [p.shape[1] for p in parts] == [3, 3, 3, 2]
        np.testing.assert_array_equal(np.hstack(parts), values)
        np.testing.assert_array_equal(chunked.read_gene_block(store, slice(10, 20)), values[10:20])
        np.testing.assert_array_equal(
            sharded.sharded_norm_factors(store, 3), edger.calc_norm_factors(values)
        )


def test_tsv_gzip_to_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with gzip.open(tmp_path / "counts.tsv.gz", "wt") as handle:
        handle.write("gene\ta\tb\ng1\t1\t2\ng2\t3\t4\n")
    chunked.tsv_to_store(tmp_path / "counts.tsv.gz", tmp_path / "c.h5")
    with chunked.open_store(tmp_path / "c.h5") as store:
        np.testing.assert_array_equal(store.read_columns(slice(None)), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "gene\ta\tb\ng1\t1\t2\ng2\t3\t4\ng1\t5\t6\n",
            "1 gene ID(s) appear on more than one row: g1. Sum or remove the duplicate rows",
        ),
        ("gene\ta\tb\ta\ng1\t1\t2\t3\n", "sample column name(s) appear more than once: a."),
        (
            "gene\ta\tb\ng1\t1\t2\ng2\t3\tseven\n",
            "gene g2, sample b: 'seven' is not a number (1 such cell(s) in that column)",
        ),
        ("gene\ta\tb\ng1\t1\t-2\ng2\t3\t4\n", "gene g1, sample b: negative count -2.0"),
        ("gene\ta\tb\ng1\t0\t2\ng2\t0\t4\n", "sample(s) a have 0 for every gene"),
    ],
)
def test_tsv_store_bad_input(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "counts.tsv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        chunked.tsv_to_store(path, tmp_path / "counts.h5", block_rows=1)
    assert str(path) in str(error.value)
    assert message in str(error.value)
    assert not (tmp_path / "counts.h5").exists()


def test_bad_cell_in_a_later_block_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # About 3 MB of text: several 1 MiB blocks, the bad cell in the last one.
    row = "\t".join(["1234"] * 40)
    lines = ["gene\t" + "\t".join(f"s{j}" for j in range(41))]
    lines += [f"g{i}\t{row}\t{i}" for i in range(15000)]
    lines[14001] = f"g14000\t{row}\t2,5"
    path = tmp_path / "counts.tsv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"gene g14000, sample s40: '2,5' has a decimal comma"):
        chunked.tsv_to_store(path, tmp_path / "counts.h5", block_rows=64)


@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_h5ad_source_without_text(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    values = _simulated(40, 9, seed=2)  # genes × samples
    matrix = values.T.copy()  # AnnData: samples × genes
    x = {"dense": matrix, "csr": sp.csr_matrix(matrix), "csc": sp.csc_matrix(matrix)}[kind]
    adata = ad.AnnData(
        X=x,
        obs=pd.DataFrame(index=[f"s{j}" for j in range(9)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(40)]),
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    with chunked.open_store(tmp_path / "c.h5ad") as source:
        assert list(source.samples) == [f"s{j}" for j in range(9)]
        assert list(source.genes) == [f"g{i}" for i in range(40)]
        np.testing.assert_array_equal(chunked.read_sample_shard(source, 2, 4), values[:, 8:9])
        np.testing.assert_array_equal(chunked.read_gene_block(source, slice(5, 9)), values[5:9])
        np.testing.assert_array_equal(
            sharded.sharded_filter_by_expr(source, 4), edger.filter_by_expr(values)
        )
    chunked.h5ad_to_store(tmp_path / "c.h5ad", tmp_path / "c.h5", samples_per_read=4)
    with chunked.open_store(tmp_path / "c.h5") as store:
        np.testing.assert_array_equal(store.read_columns(slice(None)), values)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_h5ad_duplicated_gene_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    adata = ad.AnnData(
        X=np.ones((2, 3)),
        obs=pd.DataFrame(index=["s1", "s2"]),
        var=pd.DataFrame(index=["g1", "g2", "g1"]),
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    with pytest.raises(InputError, match=r"gene ID\(s\) appear on more than one row: g1"):
        chunked.open_store(tmp_path / "c.h5ad")


def test_results_written_shard_by_shard_then_gathered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    values = _simulated(30, 7, seed=4)
    source = sharded.ArraySource(values)
    effective = values.sum(axis=0) * edger.calc_norm_factors(values)
    mean = float(effective.mean())
    genes, samples = [f"g{i}" for i in range(30)], [f"s{j}" for j in range(7)]
    paths = []
    for index, (columns, out) in enumerate(
        sharded.sharded_apply(
            source,
            3,
            lambda c, part: sharded.apply_cpm(
                part, effective[c], log=True, mean_effective_size=mean
            ),
        )
    ):
        paths.append(tmp_path / f"shard{index}.h5")
        chunked.write_shard_store(paths[-1], out, genes, samples[columns])
    chunked.gather_shards(paths, tmp_path / "logcpm.h5")
    with chunked.open_store(tmp_path / "logcpm.h5") as store:
        assert list(store.samples) == samples
        np.testing.assert_array_equal(
            store.read_columns(slice(None)), edger.cpm(values, effective, log=True)
        )


def test_store_that_is_not_a_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 count store"):
        chunked.open_store(tmp_path / "x.h5")


# --- ComBat -------------------------------------------------------------------------------


def _condition_mod(samples: pd.DataFrame) -> np.ndarray:
    cond = pd.Categorical(samples["condition"], categories=pd.unique(samples["condition"]))
    return design_matrix(pd.DataFrame({"condition": cond}), ["condition"])


def _assert_combat_equal(data, batch, per_shard, mod=None, **options) -> None:  # type: ignore[no-untyped-def]
    expected = combat(data, batch, mod, **options)
    plan = sharded.plan_combat(
        batch,
        mod,
        parametric=options.get("parametric", True),
        mean_only=options.get("mean_only", False),
        ref_batch=options.get("ref_batch"),
    )
    fit, adjusted = sharded.sharded_combat(sharded.ArraySource(data), per_shard, plan)
    result = np.hstack([part for _, part in adjusted])
    scale = np.nanmax(np.abs(data))
    # relative to the data's scale: values near 0 have no meaningful relative error
    np.testing.assert_allclose(result, expected.adjusted, rtol=RTOL, atol=RTOL * scale)
    keep = ~expected.zero_variance_genes
    for ours, theirs in (
        (fit.gamma_star, expected.gamma_star[:, keep]),
        (fit.delta_star, expected.delta_star[:, keep]),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * np.nanmax(np.abs(theirs)))


@pytest.mark.parametrize("parametric", [True, False])
@pytest.mark.parametrize("per_shard", [2, 3])
def test_combat_on_datasets(dataset: Dataset, parametric: bool, per_shard: int) -> None:
    logcpm = dataset.reference("edger_logcpm_filtered_TMM").to_numpy()
    if not parametric:
        logcpm = logcpm[:1500]  # the non-parametric prior is O(genes²)
    mod = _condition_mod(dataset.samples) if dataset.has_condition else None
    _assert_combat_equal(
        np.ascontiguousarray(logcpm),
        dataset.batch.to_numpy(),
        per_shard,
        mod,
        parametric=parametric,
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"parametric": False}, {"ref_batch": "b"}, {"mean_only": True}],
    ids=["parametric", "nonparametric", "ref_batch", "mean_only"],
)
def test_combat_batches_spanning_shards(options: dict) -> None:  # type: ignore[type-arg]
    rng = np.random.default_rng(11)
    batch = np.array(list("aabbbcacbbacabc"))  # interleaved: every shard holds several
    data = rng.normal(6, 1, (400, batch.size)) + (batch == "b") * 0.8
    data *= np.where(batch == "c", 1.5, 1.0)
    data[:3, batch == "a"] = 4.0  # constant in a batch: not adjusted
    cond = pd.DataFrame({"cond": list("xyxyxyxyxyxyxyx")})
    mod = design_matrix(cond, ["cond"])
    _assert_combat_equal(data, batch, 4, mod, **options)


def test_sharded_combat_refuses_missing_values() -> None:
    data = np.random.default_rng(1).normal(size=(20, 6))
    data[3, 4] = np.nan
    plan = sharded.plan_combat(list("aabbab"))
    with pytest.raises(InputError, match="samples 4 to 6 hold a missing or infinite value"):
        sharded.sharded_combat(sharded.ArraySource(data), 3, plan)


# --- QC PCA -------------------------------------------------------------------------------


def _assert_pca_equal(values: np.ndarray, per_shard: int, top_genes: int) -> None:
    expected = qc.pca(values, top_genes=top_genes)
    result = sharded.sharded_pca(sharded.ArraySource(values), per_shard, top_genes=top_genes)
    np.testing.assert_array_equal(result.genes, expected.genes)
    # Scores relative to the largest score: the eigenvectors of the cross-product against
    # the SVD of the centred matrix (see docs/sharding.md).
    scale = np.abs(expected.scores).max()
    np.testing.assert_allclose(result.scores, expected.scores, rtol=RTOL, atol=RTOL * scale)
    np.testing.assert_allclose(result.variance, expected.variance, rtol=RTOL)
    np.testing.assert_allclose(result.variance_ratio, expected.variance_ratio, rtol=RTOL)


@pytest.mark.parametrize("per_shard", [2, 3])
def test_pca_on_datasets(dataset: Dataset, per_shard: int) -> None:
    logcpm = dataset.reference("edger_logcpm_filtered_TMM").to_numpy()
    _assert_pca_equal(np.asfortranarray(logcpm), per_shard, top_genes=500)


def test_pca_on_a_simulated_cohort() -> None:
    values = np.log2(_simulated(700, 29, seed=9) + 1)
    _assert_pca_equal(np.asfortranarray(values), 6, top_genes=300)


# --- ComBat-seq ---------------------------------------------------------------------------


def _assert_combat_seq_equal(counts, batch, group, per_shard, per_block) -> None:  # type: ignore[no-untyped-def]
    counts = _values(counts)
    expected = combat_seq(counts, batch, group)
    plan = seq_plan(batch, counts.shape[1], group)
    blocks = list(
        sharded.sharded_combat_seq(sharded.ArraySource(counts), per_shard, per_block, plan)
    )
    assert [rows.start for rows, _ in blocks] == list(range(0, counts.shape[0], per_block))
    np.testing.assert_array_equal(np.vstack([b for _, b in blocks]), expected.adjusted)


@pytest.mark.parametrize("per_shard", [2, 3])
def test_combat_seq_on_datasets(dataset: Dataset, per_shard: int) -> None:
    keep = dataset.reference("edger_filterByExpr_keep")["keep"].to_numpy()
    counts = dataset.counts.to_numpy()[keep][:1500]  # a slice of genes keeps this quick
    cond = dataset.condition.to_numpy()
    group = pd.Categorical(cond, categories=pd.unique(cond)) if dataset.has_condition else None
    _assert_combat_seq_equal(counts, dataset.batch.to_numpy(), group, per_shard, 400)


def test_combat_seq_batches_spanning_shards() -> None:
    batch = list("aabbbcacbbacabc")
    group = list("xyxyxyxyxyxyxyx")
    counts = _simulated(300, 15, seed=21)
    counts[:5, [0, 1, 6, 10, 13]] = 0  # zero in the whole of batch a: left as they are
    _assert_combat_seq_equal(counts, batch, group, 4, 64)


def test_integer_store_refuses_fractional_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "counts.tsv"
    path.write_text("gene\ta\tb\ng1\t1\t2\ng2\t3\t4.5\n")
    with pytest.raises(InputError, match=r"gene g2, sample b: 4.5 is not a whole number"):
        chunked.tsv_to_store(path, tmp_path / "counts.h5", dtype=np.int64)
    chunked.tsv_to_store(path, tmp_path / "float.h5")  # estimated counts: a float store
    with chunked.open_store(tmp_path / "float.h5") as store:
        assert store.read_columns(slice(1, 2))[1, 0] == 4.5


def test_h5ad_unknown_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    adata = ad.AnnData(
        X=np.ones((2, 3)),
        obs=pd.DataFrame(index=["s1", "s2"]),
        var=pd.DataFrame(index=["g1", "g2", "g3"]),
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    with pytest.raises(InputError, match=r"no layer 'raw' \(layers: none\)"):
        chunked.open_store(tmp_path / "c.h5ad", layer="raw")


class _ShardOnlySource(sharded.ArraySource):
    """Fails any read wider than one shard, except single columns (TMM's reference)."""

    def __init__(self, values: np.ndarray, per_shard: int) -> None:
        super().__init__(values)
        self.per_shard = per_shard

    def read_columns(self, columns):  # type: ignore[no-untyped-def]
        width = len(range(*columns.indices(self.shape[1])))
        assert width <= self.per_shard or width == 1, f"read {width} samples at once"
        return super().read_columns(columns)

    def read_rows(self, rows):  # type: ignore[no-untyped-def]
        raise AssertionError("a sample-shard step read a gene block")


def test_every_sample_shard_step_reads_one_shard_at_most() -> None:
    values = _simulated(300, 13, seed=8)
    source = _ShardOnlySource(values, 4)
    for method in ("TMM", "TMMwsp", "RLE", "upperquartile"):
        sharded.sharded_norm_factors(source, 4, method)
    sharded.sharded_filter_by_expr(source, 4)
    sharded.sharded_size_factors(source, 4, "poscounts")
    sharded.sharded_pca(source, 4, top_genes=50)
    _, adjusted = sharded.sharded_combat(source, 4, sharded.plan_combat(list("abcabcabcabca")))
    assert len(list(adjusted)) == 4


@settings(max_examples=4, deadline=None)
@given(per_shard=st.integers(1, 13), seed=st.integers(0, 100))
def test_any_shard_size_gives_the_same_combat(per_shard: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = np.array(list("abcabcabcabca"))
    data = rng.normal(5, 1, (150, 13)) + (batch == "b") * 0.5
    _assert_combat_equal(data, batch, per_shard)


def test_h5ad_shard_with_a_bad_count_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = np.arange(1.0, 13.0).reshape(4, 3)  # 4 samples × 3 genes
    matrix[2, 1] = 2.5
    adata = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame(index=["s1", "s2", "s3", "s4"]),
        var=pd.DataFrame(index=["g1", "g2", "g3"]),
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    with chunked.open_store(tmp_path / "c.h5ad") as source:
        chunked.read_sample_shard(source, 0, 2)  # s1, s2 are fine
        with pytest.raises(InputError, match=r"gene g2, sample s3: 2.5 is not a whole number"):
            chunked.read_sample_shard(source, 1, 2)


@pytest.mark.parametrize("kind", ["store", "dense", "csr"])
def test_combat_seq_from_a_store_or_h5ad(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    # The pooled pass reads one batch's (non-contiguous) columns; gene blocks read rows.
    batch = list("aabbbcacbbacabc")
    counts = _simulated(120, 15, seed=31)
    genes, samples = [f"g{i}" for i in range(120)], [f"s{j}" for j in range(15)]
    if kind == "store":
        path = tmp_path / "c.h5"
        with chunked.create_store(path, genes, samples, sample_chunk=4) as out:
            out.write_columns(0, counts)
    else:
        path = tmp_path / "c.h5ad"
        x = counts.T.copy() if kind == "dense" else sp.csr_matrix(counts.T)
        ad.AnnData(X=x, obs=pd.DataFrame(index=samples), var=pd.DataFrame(index=genes)).write_h5ad(
            path
        )
    plan = seq_plan(batch, 15)
    with chunked.open_store(path) as source:
        blocks = list(sharded.sharded_combat_seq(source, 4, 50, plan))
    np.testing.assert_array_equal(
        np.vstack([b for _, b in blocks]), combat_seq(counts, batch).adjusted
    )
