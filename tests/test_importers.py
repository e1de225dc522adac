"""Count importers on real-format fixtures and on broken files.

Fixtures: tests/data/importers (see its README.md) and the real Salmon and pasilla files.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cohortnorm.errors import InputError
from cohortnorm.io.importers import (
    bam_sample_name,
    import_counts,
    read_tx2gene,
    validate_count_matrix,
)

DATA = Path(__file__).parent / "data"
FIX = DATA / "importers"
BROKEN = FIX / "broken"
SALMON = DATA / "salmon_isoformswitch"
SALMON_SAMPLES = ["hESC_0", "hESC_1", "iPS_0", "iPS_1", "Fibroblasts_0", "Fibroblasts_1"]


def reference(name: str) -> pd.DataFrame:
    return pd.read_csv(
        SALMON / "reference" / f"{name}.tsv.gz", sep="\t", index_col=0, float_precision="round_trip"
    )


def pasilla_counts() -> pd.DataFrame:
    return pd.read_csv(DATA / "pasilla/counts.tsv.gz", sep="\t", index_col=0)


@pytest.fixture(scope="module")
def tx2gene() -> pd.Series:
    return read_tx2gene(SALMON / "tx2gene.tsv")


# --------------------------------------------------------------------------- matrix


@pytest.mark.parametrize(
    "name", ["pasilla_head.tsv", "pasilla_head.tsv.gz", "pasilla_head_crlf.csv"]
)
def test_matrix_formats(name: str) -> None:
    result = import_counts("matrix", FIX / "matrix" / name)
    expected = pasilla_counts().iloc[:6, :3]
    pd.testing.assert_frame_equal(result.counts, expected, check_index_type=False)
    assert result.counts.index.name == "gene_id"
    assert (result.counts.dtypes == np.int64).all()


def test_matrix_real_dataset_round_trip() -> None:
    result = import_counts("matrix", DATA / "pasilla/counts.tsv.gz")
    pd.testing.assert_frame_equal(result.counts, pasilla_counts(), check_index_type=False)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("matrix_negative.tsv", r"gene FBgn0000014, sample untreated2: negative count -4"),
        ("matrix_fractional.tsv", r"gene FBgn0000008, sample untreated3: 7\.5 is not a whole"),
        ("matrix_empty_cell.tsv", r"gene FBgn0000015, sample untreated1: empty or missing"),
        ("matrix_na_cell.tsv", r"gene FBgn0000015, sample untreated1: empty or missing"),
        ("matrix_text_cell.tsv", r"gene FBgn0000017, sample untreated2: 'twelve' is not a number"),
        ("matrix_duplicate_gene.tsv", r"gene ID\(s\) appear on more than one row: FBgn0000003"),
        ("matrix_duplicate_sample.tsv", r"appear more than once in the header: untreated1"),
        ("matrix_zero_sample.tsv", r"sample\(s\) untreated3 have 0 for every gene"),
        ("matrix_gene_id_last.tsv", r"column 'gene_id' .* must come first"),
        ("matrix_no_gene_column.tsv", r"first column 'untreated1' holds numbers"),
        ("matrix_r_rownames.tsv", r"gene-ID column has no name"),
        ("matrix_ragged.tsv", r"could not be parsed"),
    ],
)
def test_matrix_broken(name: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern) as error:
        import_counts("matrix", BROKEN / name)
    assert str(BROKEN / name) in str(error.value)


def test_matrix_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.tsv: count matrix not found"):
        import_counts("matrix", tmp_path / "absent.tsv")


def test_validate_count_matrix_allows_fractions_when_asked() -> None:
    frame = pd.DataFrame({"a": [1.5, 2.0], "b": [0.0, 3.0]}, index=["g1", "g2"])
    validate_count_matrix(frame, "x", require_integer=False)
    with pytest.raises(InputError, match=r"x: gene g1, sample a: 1\.5 is not a whole number"):
        validate_count_matrix(frame, "x", require_integer=True)


def test_matrix_import_is_vectorised(tmp_path: Path) -> None:
    # 20,000 genes × 200 samples: well under a second when nothing loops per row.
    rng = np.random.default_rng(1)
    values = rng.poisson(50, size=(20_000, 200))
    frame = pd.DataFrame(values, columns=[f"s{i}" for i in range(200)])
    frame.insert(0, "gene_id", [f"ENSG{i:011d}" for i in range(20_000)])
    path = tmp_path / "big.tsv"
    frame.to_csv(path, sep="\t", index=False)

    start = time.perf_counter()
    result = import_counts("matrix", path)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(result.counts.to_numpy(), values)
    assert elapsed < 5


# --------------------------------------------------------------------------- featureCounts


def test_featurecounts_real_layout() -> None:
    result = import_counts("featurecounts", FIX / "featurecounts/counts.txt.gz")
    gtex = pd.read_csv(DATA / "gtex_lung_chr21/counts.tsv.gz", sep="\t", index_col=0)
    lengths = pd.read_csv(DATA / "gtex_lung_chr21/lengths.tsv.gz", sep="\t", index_col=0)
    expected = gtex.iloc[:60, :4]
    assert list(result.counts.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(result.counts, expected, check_index_type=False)
    np.testing.assert_array_equal(
        result.lengths.to_numpy(), lengths["length"].reindex(expected.index).to_numpy()
    )
    assert any("BAM file names" in note for note in result.notes)


def test_featurecounts_sample_matching() -> None:
    gtex = pd.read_csv(DATA / "gtex_lung_chr21/counts.tsv.gz", sep="\t", index_col=0, nrows=1)
    samples = list(gtex.columns[:4])
    short = [sample.rsplit("-", 2)[0] for sample in samples]  # e.g. GTEX-111CU-0326
    result = import_counts(
        "featurecounts", FIX / "featurecounts/counts.txt.gz", samples=short[::-1]
    )
    assert list(result.counts.columns) == short
    with pytest.raises(
        InputError, match=r"no BAM column starts with the name of sample\(s\) GTEX-X"
    ):
        import_counts("featurecounts", FIX / "featurecounts/counts.txt.gz", samples=["GTEX-X"])


def test_featurecounts_broken() -> None:
    path = BROKEN / "featurecounts_negative.txt"
    with pytest.raises(
        InputError, match=r"gene ENSG00000156284\.5, sample GTEX-111YS-0626-SM-5GZXV: negative"
    ):
        import_counts("featurecounts", path)
    with pytest.raises(InputError, match="not a featureCounts table"):
        import_counts("featurecounts", FIX / "matrix/pasilla_head.tsv")


@pytest.mark.parametrize(
    ("column", "sample"),
    [
        ("/data/S1.bam", "S1"),
        ("star/S1_Aligned.sortedByCoord.out.bam", "S1"),
        ("star/S1/Aligned.sortedByCoord.out.bam", "S1"),
        ("S1.sorted.bam", "S1"),
    ],
)
def test_bam_sample_name(column: str, sample: str) -> None:
    assert bam_sample_name(column) == sample


# --------------------------------------------------------------------------- HTSeq / DEXSeq


def test_htseq_drops_summary_rows() -> None:
    samples = ["untreated1", "untreated3", "treated2"]
    result = import_counts("htseq", {s: FIX / f"htseq/{s}.counts.txt" for s in samples})
    expected = pasilla_counts().iloc[:150][samples]
    pd.testing.assert_frame_equal(result.counts, expected, check_index_type=False)
    assert "__no_feature" in result.notes[0]


def test_dexseq_files_plain_crlf_and_gzip() -> None:
    paths = {
        "untreated1": FIX / "dexseq/untreated1fb.txt",
        "untreated3": FIX / "dexseq/untreated3fb.txt",  # CRLF
        "treated2": FIX / "dexseq/treated2fb.txt.gz",
    }
    result = import_counts("htseq", paths)
    assert result.counts.shape == (150, 3)
    assert not result.counts.index.str.startswith("_").any()
    assert "_ambiguous" in result.notes[0]
    full = pd.read_csv(
        DATA / "pasilla/raw_exon_counts/treated2fb.txt.gz", sep="\t", header=None, index_col=0
    )
    np.testing.assert_array_equal(result.counts["treated2"], full.iloc[:150, 0])


def test_htseq_real_pasilla_files() -> None:
    paths = {
        p.name.removesuffix("fb.txt.gz"): p
        for p in sorted((DATA / "pasilla/raw_exon_counts").glob("*.txt.gz"))
    }
    result = import_counts("htseq", paths)
    assert result.counts.shape == (70463, 7)
    assert result.counts.dtypes.eq(np.int64).all()


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("htseq_fractional.txt", r"gene FBgn0000015, sample b: 2\.5 is not a whole number"),
        ("htseq_empty_cell.txt", r"gene FBgn0000017, sample b: empty or missing"),
        ("htseq_missing_gene.txt", r"row 6 is 'FBgn0000022' here but 'FBgn0000018'"),
    ],
)
def test_htseq_broken(name: str, pattern: str) -> None:
    paths = {"a": FIX / "htseq/untreated1.counts.txt", "b": BROKEN / name}
    with pytest.raises(InputError, match=pattern) as error:
        import_counts("htseq", paths)
    assert str(BROKEN / name) in str(error.value)


def test_per_sample_formats_need_a_mapping() -> None:
    with pytest.raises(InputError, match="one file per sample"):
        import_counts("htseq", FIX / "htseq/untreated1.counts.txt")
    with pytest.raises(InputError, match="HTSeq count file of sample a not found"):
        import_counts("htseq", {"a": FIX / "absent.txt"})


# --------------------------------------------------------------------------- STAR


@pytest.mark.parametrize(("strand", "column"), [("unstranded", 1), ("forward", 2), ("reverse", 3)])
def test_star_strand_columns(strand: str, column: int) -> None:
    samples = ["untreated3", "treated2"]
    paths = {s: FIX / f"star/{s}.ReadsPerGene.out.tab" for s in samples}
    result = import_counts("star", paths, star_strand=strand)
    raw = pd.read_csv(paths["treated2"], sep="\t", header=None, index_col=0).iloc[4:]
    assert result.counts.shape == (150, 2)
    np.testing.assert_array_equal(result.counts["treated2"], raw.iloc[:, column - 1])
    if strand == "reverse":
        expected = pasilla_counts().iloc[:150][samples]
        pd.testing.assert_frame_equal(result.counts, expected, check_index_type=False)


def test_star_broken() -> None:
    paths = {"a": BROKEN / "star_three_columns.tab"}
    with pytest.raises(InputError, match=r"star_three_columns\.tab \(sample a\): line 1 has 3"):
        import_counts("star", paths)
    with pytest.raises(InputError, match="star_strand='yes'"):
        import_counts("star", paths, star_strand="yes")


# --------------------------------------------------------------------------- quantifiers


@pytest.mark.parametrize("cfa", ["no", "scaledTPM", "lengthScaledTPM"])
def test_salmon_matches_tximport(tx2gene: pd.Series, cfa: str) -> None:
    paths = {s: SALMON / "raw" / s / "quant.sf.gz" for s in SALMON_SAMPLES}
    result = import_counts("salmon", paths, tx2gene=tx2gene, counts_from_abundance=cfa)
    for kind, actual in (
        ("counts", result.counts),
        ("abundance", result.abundance),
        ("length", result.lengths),
    ):
        expected = reference(f"tximport_gene_{kind}_cfa-{cfa}")
        assert list(actual.index) == list(expected.index)
        np.testing.assert_allclose(actual.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
    assert any("fractional" in note for note in result.notes)


def test_salmon_tx_out_directories() -> None:
    # rtol 1e-15, not equality: readr (used by tximport) parses one quant.sf value,
    # "0.061657000000000003", one ulp away from the correctly rounded double pyarrow gives.
    result = import_counts("salmon", {s: SALMON / "raw" / s for s in SALMON_SAMPLES}, tx_out=True)
    for kind, actual in (
        ("counts", result.counts),
        ("abundance", result.abundance),
        ("length", result.lengths),
    ):
        expected = reference(f"tximport_txOut_{kind}")
        np.testing.assert_allclose(actual.to_numpy(), expected.to_numpy(), rtol=1e-15, atol=0)


def test_kallisto_equals_salmon(tx2gene: pd.Series) -> None:
    samples = ["hESC_0", "iPS_0", "Fibroblasts_0"]
    kallisto = import_counts("kallisto", {s: FIX / "kallisto" / s for s in samples}, tx_out=True)
    for kind, actual in (
        ("counts", kallisto.counts),
        ("abundance", kallisto.abundance),
        ("length", kallisto.lengths),
    ):
        expected = reference(f"tximport_txOut_{kind}")[samples]
        np.testing.assert_allclose(actual.to_numpy(), expected.to_numpy(), rtol=1e-15, atol=0)
    for cfa in ("no", "lengthScaledTPM"):
        genes = import_counts(
            "kallisto",
            {s: FIX / f"kallisto/{s}/abundance.tsv.gz" for s in samples},
            tx2gene=tx2gene,
            counts_from_abundance=cfa,
        )
        salmon = import_counts(
            "salmon",
            {s: SALMON / "raw" / s / "quant.sf.gz" for s in samples},
            tx2gene=tx2gene,
            counts_from_abundance=cfa,
        )
        pd.testing.assert_frame_equal(genes.counts, salmon.counts)
        pd.testing.assert_frame_equal(genes.lengths, salmon.lengths)


def test_rsem_isoforms_and_genes() -> None:
    samples = ["hESC_0", "Fibroblasts_0"]
    isoforms = import_counts("rsem", {s: FIX / f"rsem/{s}.isoforms.results.gz" for s in samples})
    assert any("gene_id column" in note for note in isoforms.notes)
    genes = import_counts("rsem", {s: FIX / f"rsem/{s}.genes.results.gz" for s in samples})
    for kind, a, b in (
        ("counts", isoforms.counts, genes.counts),
        ("abundance", isoforms.abundance, genes.abundance),
    ):
        expected = reference(f"tximport_gene_{kind}_cfa-no")[samples]
        np.testing.assert_allclose(a.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
        np.testing.assert_array_equal(b.to_numpy(), expected.to_numpy())
        assert list(b.index) == list(expected.index)
    expected_length = reference("tximport_gene_length_cfa-no")[samples]
    np.testing.assert_array_equal(genes.lengths.to_numpy(), expected_length.to_numpy())
    # Where both samples express the gene no cross-sample filling is involved.
    expressed = (genes.abundance > 0).all(axis=1).to_numpy()
    np.testing.assert_allclose(
        isoforms.lengths.to_numpy()[expressed],
        expected_length.to_numpy()[expressed],
        rtol=1e-12,
    )


def test_quantifier_errors(tx2gene: pd.Series, tmp_path: Path) -> None:
    paths = {s: SALMON / "raw" / s / "quant.sf.gz" for s in SALMON_SAMPLES[:2]}
    with pytest.raises(InputError, match="give a tx2gene table"):
        import_counts("salmon", paths)
    with pytest.raises(InputError, match=r"2 quantified transcript\(s\) have no gene"):
        import_counts("salmon", paths, tx2gene=tx2gene.iloc[2:])
    with pytest.raises(
        InputError, match=r"column\(s\) Name, NumReads, TPM, EffectiveLength missing"
    ):
        import_counts("salmon", {"a": FIX / "kallisto/hESC_0/abundance.tsv.gz"})
    bad = tmp_path / "quant.sf"
    text = (SALMON / "raw/hESC_0/quant.sf.gz").read_bytes()

    lines = gzip.decompress(text).decode().splitlines()
    lines[5] = "\t".join([*lines[5].split("\t")[:4], "-1"])
    bad.write_text("\n".join(lines) + "\n")
    name = lines[5].split("\t")[0]
    with pytest.raises(
        InputError, match=rf"quant\.sf \(column NumReads\): gene {name}, sample x: negative"
    ):
        import_counts("salmon", {"x": bad}, tx2gene=tx2gene)
    lines = gzip.decompress(text).decode().splitlines()
    bad.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match=r"transcript IDs differ from the first sample's"):
        import_counts("salmon", {"a": paths["hESC_0"], "x": bad}, tx2gene=tx2gene)


def test_unknown_format() -> None:
    with pytest.raises(InputError, match="unknown counts format 'cufflinks'"):
        import_counts("cufflinks", FIX)
