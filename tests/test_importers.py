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


def test_featurecounts_sample_matching_is_exact() -> None:
    gtex = pd.read_csv(DATA / "gtex_lung_chr21/counts.tsv.gz", sep="\t", index_col=0, nrows=1)
    samples = list(gtex.columns[:4])
    result = import_counts(
        "featurecounts", FIX / "featurecounts/counts.txt.gz", samples=samples[::-1]
    )
    assert list(result.counts.columns) == samples  # file order; the script reorders
    assert result.sources[samples[0]] == (
        f"/scratch/gtex/star/{samples[0]}_Aligned.sortedByCoord.out.bam"
    )
    # A prefix of the BAM name (GTEX-111CU-0326 for GTEX-111CU-0326-SM-5GZXO) is not a
    # match any more: it once let S1 take S11's counts.
    short = [sample.rsplit("-", 2)[0] for sample in samples]
    with pytest.raises(InputError, match=r"4 sample\(s\) of the sample sheet match no BAM column"):
        import_counts("featurecounts", FIX / "featurecounts/counts.txt.gz", samples=short)


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
        ("S1.sam", "S1"),
        ("/data/run1/S1.cram", "S1"),
        ("star/S1_Aligned.sortedByCoord.out.bam", "S1"),
        ("star/S1.Aligned.sortedByCoord.out.bam", "S1"),
        ("star/S1Aligned.sortedByCoord.out.bam", "S1"),
        ("star/S1/Aligned.sortedByCoord.out.bam", "S1"),
        ("star/S1_Aligned.out.bam", "S1"),
        ("star/S1_Aligned.toTranscriptome.out.bam", "S1"),
        ("S1.sortedByCoord.out.bam", "S1"),
        ("S1.sorted.bam", "S1"),
        ("S1_sorted.bam", "S1"),
        ("S1.sort.bam", "S1"),
        ("S1.markdup.sorted.bam", "S1"),
        ("S1.umi_dedup.sorted.bam", "S1"),
        ("S1.dedup.bam", "S1"),
        ("C:\\data\\S1.bam", "S1"),
        # Only whole aligner endings come off: the rest of the name stays.
        ("Unsorted.bam", "Unsorted"),
        ("S1.trimmed.bam", "S1.trimmed"),
        ("S10", "S10"),
        ("S1_R1", "S1_R1"),
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


# --------------------------------------------------------------------------- sample names


def write_featurecounts(path: Path, columns: list[str], *, trailing: str = "") -> pd.DataFrame:
    """A featureCounts table in the real layout (command line, annotation, BAM columns)."""
    genes = ["ENSG00000000003.14", "ENSG00000000005.5", "007", "1.1", "1.10"]
    counts = pd.DataFrame(
        [[10 * i + j for j in range(len(columns))] for i in range(1, len(genes) + 1)],
        index=genes,
        columns=columns,
    )
    lines = [
        '# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "genes.gtf" "-o" '
        '"counts.txt" ' + " ".join(f'"{c}"' for c in columns),
        "\t".join(["Geneid", "Chr", "Start", "End", "Strand", "Length", *columns]) + trailing,
    ]
    for position, gene in enumerate(genes):
        annotation = ["chrX;chrX", "100;300", "200;400", "+;+", str(200 + position)]
        values = [str(v) for v in counts.loc[gene]]
        lines.append("\t".join([gene, *annotation, *values]) + trailing)
    path.write_text("\n".join(lines) + "\n")
    return counts


@pytest.mark.parametrize("directory", ["", "/data/run1/"])
def test_featurecounts_s1_never_takes_s11(tmp_path: Path, directory: str) -> None:
    # The regression: sheet S1, S10, S2, S20 against BAMs S10, S11, S2, S20. A prefix
    # match gave sample S1 the counts of S11.bam; exact names stop the run instead.
    columns = [f"{directory}{name}.bam" for name in ("S10", "S11", "S2", "S20")]
    path = tmp_path / "counts.txt"
    write_featurecounts(path, columns)
    with pytest.raises(InputError) as error:
        import_counts("featurecounts", path, samples=["S1", "S10", "S2", "S20"])
    message = str(error.value)
    assert "1 sample(s) of the sample sheet match no BAM column: S1." in message
    assert "S1 is not S10" in message
    rows = [line.split() for line in message.splitlines()[1:]]
    assert rows[0] == ["sample", "sheet", "counts"]
    assert ["S1", "(no", "column)"] in rows
    s10 = ["S10", "S10.bam", "→", "S10"]
    if directory:
        s10 = ["S10", f"{directory}S10.bam", "→", "S10"]
    assert s10 in rows
    assert ["(no", "sheet", "row)", f"{directory}S11.bam", "→", "S11"] in rows


def test_featurecounts_exact_names_take_their_own_columns(tmp_path: Path) -> None:
    columns = ["/data/run1/S10.bam", "/data/run1/S11.bam", "/data/run1/S2.bam", "S20.bam"]
    path = tmp_path / "counts.txt"
    expected = write_featurecounts(path, columns)
    result = import_counts("featurecounts", path, samples=["S20", "S2", "S11", "S10"])
    assert list(result.counts.columns) == ["S10", "S11", "S2", "S20"]
    np.testing.assert_array_equal(result.counts.to_numpy(), expected.to_numpy())
    assert result.sources == dict(zip(["S10", "S11", "S2", "S20"], columns, strict=True))
    # Gene IDs are text: 007 stays 007, 1.1 and 1.10 are two genes.
    assert list(result.counts.index) == list(expected.index)
    assert result.lengths.loc["1.10"] == 204


def test_featurecounts_typo_is_not_matched(tmp_path: Path) -> None:
    path = tmp_path / "counts.txt"
    write_featurecounts(path, ["S10.bam", "S2.bam"])
    with pytest.raises(InputError, match=r"match no BAM column: S1\. "):
        import_counts("featurecounts", path, samples=["S1", "S2"])


@pytest.mark.parametrize(
    "columns",
    [
        ["/data/run1/S1.bam", "/data/run2/S1.bam"],
        ["S1.bam", "S1.sorted.bam"],
        ["star/S1/Aligned.sortedByCoord.out.bam", "S1_Aligned.sortedByCoord.out.bam"],
    ],
)
def test_featurecounts_two_columns_one_name_is_ambiguous(tmp_path: Path, columns) -> None:
    path = tmp_path / "counts.txt"
    write_featurecounts(path, columns)
    with pytest.raises(
        InputError,
        match=rf"BAM columns are ambiguous: '{columns[0]}' and '{columns[1]}' both give 'S1'",
    ):
        import_counts("featurecounts", path, samples=["S1"])


def test_featurecounts_trailing_tab_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "counts.txt"
    expected = write_featurecounts(path, ["S1.bam", "S2.bam"], trailing="\t")
    result = import_counts("featurecounts", path, samples=["S1", "S2"])
    np.testing.assert_array_equal(result.counts.to_numpy(), expected.to_numpy())
    assert any("every line ends with a tab" in note for note in result.notes)


def test_every_format_reports_the_source_of_each_sample() -> None:
    matrix = import_counts("matrix", FIX / "matrix/pasilla_head.tsv")
    assert matrix.sources == {c: c for c in matrix.counts.columns}
    paths = {s: FIX / f"htseq/{s}.counts.txt" for s in ["untreated1", "treated2"]}
    htseq = import_counts("htseq", paths)
    assert htseq.sources == {s: str(p) for s, p in paths.items()}
    star = {s: FIX / f"star/{s}.ReadsPerGene.out.tab" for s in ["treated2"]}
    assert import_counts("star", star).sources == {"treated2": str(star["treated2"])}
    kallisto = import_counts("kallisto", {"hESC_0": FIX / "kallisto/hESC_0"}, tx_out=True)
    assert kallisto.sources == {"hESC_0": str(FIX / "kallisto/hESC_0/abundance.tsv.gz")}


def test_sheet_mismatch_lists_both_sides() -> None:
    from cohortnorm.validation import reconcile_samples

    with pytest.raises(InputError) as error:
        reconcile_samples(
            ["a", "b", "c2"], ["a", "b", "c"], counts_source="counts.tsv", sheet_source="s.tsv"
        )
    lines = str(error.value).splitlines()
    assert lines[0].startswith("s.tsv: 1 sample(s) in the sample sheet have no column in ")
    assert [line.split() for line in lines[1:]] == [
        ["sample", "sheet", "counts"],
        ["a", "a"],
        ["b", "b"],
        ["c", "(no", "column)"],
        ["(no", "sheet", "row)", "c2"],
    ]
    # Long lists: the unmatched pairs first, the rest counted.
    sheet = [f"s{i}" for i in range(100)]
    counts = [*sheet[:99], "stray"]
    with pytest.raises(InputError) as error:
        reconcile_samples(counts, sheet, counts_source="c", sheet_source="s")
    lines = str(error.value).splitlines()
    assert len(lines) == 1 + 1 + 20 + 1
    assert "s99" in lines[2] and "(no column)" in lines[2]
    assert lines[3].split() == ["(no", "sheet", "row)", "stray"]
    assert lines[-1].strip() == (
        "… and 81 matched not shown (100 sheet samples, 100 count columns in all)"
    )


# --------------------------------------------------------------------------- IDs are text


def test_gene_ids_stay_text_in_every_reader(tmp_path: Path) -> None:
    ids = ["007", "1.1", "1.10", "1e5", "0x1F", "TRUE", "NA"]
    matrix = tmp_path / "counts.tsv"
    matrix.write_text(
        "gene_id\ta\tb\n" + "".join(f"{g}\t{i + 1}\t{i}\n" for i, g in enumerate(ids))
    )
    assert list(import_counts("matrix", matrix).counts.index) == ids
    text_cell = tmp_path / "counts_text.tsv"  # the slow path (a non-number cell) too
    text_cell.write_text(matrix.read_text().replace("\t1\t0\n", "\tx\t0\n"))
    with pytest.raises(InputError, match=r"gene 007, sample a: 'x' is not a number"):
        import_counts("matrix", text_cell)
    lengths = tmp_path / "lengths.tsv"
    lengths.write_text("gene_id\tlength\n" + "".join(f"{g}\t{i + 5}\n" for i, g in enumerate(ids)))
    from cohortnorm.io.gtf import gene_lengths_from_gtf, read_gene_lengths

    read = read_gene_lengths(lengths)
    assert list(read.index) == ids and read.loc["1.10"] == 7
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        "".join(
            f'chr1\tx\texon\t{10 * i + 1}\t{10 * i + 5}\t.\t+\t.\tgene_id "{g}";\n'
            for i, g in enumerate(ids)
        )
    )
    assert list(gene_lengths_from_gtf(gtf).index) == ids
    tx2gene = tmp_path / "tx2gene.tsv"
    tx2gene.write_text("transcript_id\tgene_id\n" + "".join(f"t{g}\t{g}\n" for g in ids))
    mapping = read_tx2gene(tx2gene)
    assert list(mapping.index) == [f"t{g}" for g in ids] and list(mapping) == ids
    htseq = tmp_path / "a.counts.txt"
    htseq.write_text("".join(f"{g}\t{i + 1}\n" for i, g in enumerate(ids)) + "__no_feature\t4\n")
    assert list(import_counts("htseq", {"a": htseq}).counts.index) == ids


# --------------------------------------------------------------------------- plain messages


def test_count_above_int64_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "counts.tsv"
    path.write_text("gene_id\ta\tb\ng1\t99999999999999999999\t3\ng2\t4\t5\n")
    with pytest.raises(InputError) as error:
        import_counts("matrix", path)
    assert str(error.value) == (
        f"{path}: gene g1, sample a: 1e+20 is too large for a read count (1 such cell(s); the "
        "largest count this tool holds is 9,223,372,036,854,775,807). Check that this column "
        "holds read counts (not IDs, coordinates or numbers glued together)."
    )
    # 2**63 - 1 itself fits and is kept exactly.
    path.write_text("gene_id\ta\n" + "g1\t9223372036854775807\n")
    assert import_counts("matrix", path).counts.iloc[0, 0] == 2**63 - 1


def test_trailing_tab_on_every_line_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "counts.tsv"
    path.write_text("gene_id\ta\tb\t\ng1\t1\t3\t\ng2\t4\t5\t\n")
    result = import_counts("matrix", path)
    assert list(result.counts.columns) == ["a", "b"]
    assert (result.counts.dtypes == np.int64).all()
    np.testing.assert_array_equal(result.counts.to_numpy(), [[1, 3], [4, 5]])
    assert result.notes == [
        f"{path}: every line ends with a tab; the empty last column this makes was ignored"
    ]
    htseq = tmp_path / "a.txt"
    htseq.write_text("g1\t1\t\ng2\t4\t\n__no_feature\t3\t\n")
    assert import_counts("htseq", {"a": htseq}).counts["a"].tolist() == [1, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "gene_id\ta\tb\t\ng1\t1\t3\t\ng2\t4\t5\n",
            "could not be parsed as a delimited table: line 1 ends with a tab (an empty last "
            "field) but line 3 does not. Remove the trailing tabs from every line.",
        ),
        (
            "gene_id\ta\tb\ng1\t1\t3\t\ng2\t4\t5\t\n",
            "line 2 ends with a tab or comma (an empty last field) that the header does not "
            "have. Remove the trailing delimiters from the rows (or end every line, the header "
            "too, with one).",
        ),
        (
            "gene_id\ta\tb\t\ng1\t1\t3\t7\ng2\t4\t5\t\n",
            "the first line ends with a tab (an empty last column name), but data row 1 has 7 "
            "in that last column. Give that column a name in the first line, or remove the "
            "trailing tabs.",
        ),
    ],
)
def test_inconsistent_trailing_tabs_say_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "counts.tsv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        import_counts("matrix", path)
    assert str(error.value).startswith(f"{path}: ")
    assert str(error.value).endswith(message)


def test_thousands_separator_is_named(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text('gene_id,a,b\ng1,"1,000",3\ng2,4,"12,345"\n')
    with pytest.raises(InputError) as error:
        import_counts("matrix", path)
    assert str(error.value) == (
        f"{path}: gene g1, sample a: '1,000' is written with a thousands separator (1 such "
        "cell(s) in that column). Thousands separators are not allowed: export the table "
        "without them (plain 1000, not 1,000)."
    )
    path.write_text("gene_id,a,b\ng1,1,000,3\ng2,4,5\n")  # unquoted: a field too many
    with pytest.raises(InputError) as error:
        import_counts("matrix", path)
    assert str(error.value) == (
        f"{path}: line 2 has 4 comma-separated fields but the header has 3; it looks like 1,000 "
        "is a number written with a thousands separator, which splits it into two fields. "
        "Thousands separators are not allowed: export the table without them (plain 1000, not "
        "1,000)."
    )
    # R's write.table(sep=",") with row names: every row one field longer, whatever the
    # values look like.
    path.write_text("a,b\ng1,1,000\ng2,4,5\n")
    with pytest.raises(InputError, match=r"the gene-ID column has no name \(R's write.table"):
        import_counts("matrix", path)
    path.write_text("gene_id,a,b\ng1,1,3\ng2,4,005,5\n")  # further down: found by the parser
    with pytest.raises(
        InputError,
        match=(
            r"line 3 has 4 comma-separated fields but line 1 has 3\. Every line needs the same "
            r"number of fields; it looks like 4,005 is a number written with a thousands separator"
        ),
    ):
        import_counts("matrix", path)


def test_semicolon_csv_is_named(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_bytes(b"\xef\xbb\xbfgene_id;a;b\r\ng1;1;3\r\ng2;4;5\r\n")
    with pytest.raises(InputError) as error:
        import_counts("matrix", path)
    assert str(error.value) == (
        f"{path}: the columns are separated by semicolons (Excel's CSV in locales with a "
        "decimal comma). Save the sheet as tab-delimited text, or as CSV with commas between "
        "columns and decimal points."
    )


def test_broken_files_give_one_line_naming_the_file(tmp_path: Path) -> None:
    good = "gene_id\ta\tb\ng1\t1\t3\ng2\t4\t5\n"
    truncated = tmp_path / "truncated.tsv.gz"
    truncated.write_bytes(gzip.compress(good.encode() * 200)[:60])
    plain = tmp_path / "plain.tsv.gz"
    plain.write_text(good)
    directory = tmp_path / "counts.tsv"
    directory.mkdir()
    expected = {
        truncated: f"{truncated}: the gzip file is cut short (it ends before gzip's end "
        "marker), so it was truncated while copying or downloading. Copy it again (`gzip -t` "
        "checks a copy).",
        plain: f"{plain}: the name ends in .gz but the file is not gzip-compressed. Rename it "
        "without .gz, or compress it with gzip.",
        directory: f"{directory}: is a directory, not a file. Give the path of the count "
        "matrix itself.",
    }
    for path, message in expected.items():
        with pytest.raises(InputError) as error:
            import_counts("matrix", path)
        assert str(error.value) == message
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="the gzip file is cut short"):
        import_counts("htseq", {"a": truncated})
    with pytest.raises(InputError, match="not gzip-compressed"):
        read_tx2gene(plain)


def test_excel_and_old_mac_exports_just_work(tmp_path: Path) -> None:
    expected = pd.DataFrame(
        {"a": [1, 4, 2], "b": [3, 5, 0]},
        index=pd.Index(["007", "g2", "1.10"], name="gene_id"),
    )
    text = "gene_id,a,b\n007,1,3\ng2,4,5\n1.10,2,0\n"
    excel = tmp_path / "excel.csv"  # Excel "CSV UTF-8": byte-order mark and CRLF
    excel.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    old_mac = tmp_path / "old_mac.txt"  # Excel for old Mac OS: CR only
    old_mac.write_bytes(text.replace(",", "\t").replace("\n", "\r").encode())
    r_quoted = tmp_path / "r.csv"  # R write.csv quotes every text field
    r_quoted.write_text('"gene_id","a","b"\n"007",1,3\n"g2",4,5\n"1.10",2,0\n')
    for path in (excel, old_mac, r_quoted):
        result = import_counts("matrix", path)
        pd.testing.assert_frame_equal(result.counts, expected)
    assert any("CR only" in note for note in import_counts("matrix", old_mac).notes)


def test_double_quote_in_an_id_or_a_name(tmp_path: Path) -> None:
    inside = tmp_path / "inside.tsv"
    inside.write_text('gene_id\ta\tb\ng1\t1\t3\ng"2\t4\t5\n')
    with pytest.raises(InputError) as error:
        import_counts("matrix", inside)
    assert str(error.value) == (
        f"{inside}: gene ID 'g\"2' (data row 2) contains a double quote (\"), which the "
        "tab-separated outputs cannot hold (1 such ID(s)). Remove it from the gene IDs."
    )
    name = tmp_path / "name.tsv"
    name.write_text('gene_id\ta"x\tb\ng1\t1\t3\n')
    with pytest.raises(InputError, match=r"sample name 'a\"x' contains a double quote"):
        import_counts("matrix", name)
    opening = tmp_path / "opening.tsv"  # a quote opening a field swallows the line
    opening.write_text('gene_id\ta\tb\n"g1\t1\t3\ng2\t4\t5\n')
    with pytest.raises(InputError) as error:
        import_counts("matrix", opening)
    assert str(error.value) == (
        f"{opening}: could not be parsed as a delimited table: line 2: the field '\"g1' holds a "
        'double quote ("), which starts or ends a quoted field, so the line cannot be split '
        "into columns. Remove the quote characters from gene IDs and sample names."
    )
    quoted_gene = pd.Series(['gene"1', "g2"], index=["t1", "t2"])
    quant = tmp_path / "quant.sf"
    quant.write_text("Name\tLength\tEffectiveLength\tTPM\tNumReads\nt1\t100\t80\t5\t3\n")
    with pytest.raises(InputError, match=r"tx2gene: gene ID 'gene\"1' \(data row 1\) contains"):
        import_counts("salmon", {"a": quant}, tx2gene=quoted_gene)
    htseq = tmp_path / "a.txt"
    htseq.write_text('g1\t1\n"g2\t4\n')
    with pytest.raises(InputError, match=r"line 2: the field '\"g2' holds a double quote"):
        import_counts("htseq", {"a": htseq})


def test_h5ad_x_not_counts_names_the_counts_layer(tmp_path: Path) -> None:
    import anndata

    counts = np.array([[10, 0, 3], [4, 7, 1]], dtype=np.float32)
    adata = anndata.AnnData(
        X=np.log1p(counts),
        obs=pd.DataFrame(index=["s1", "s2"]),
        var=pd.DataFrame(index=["007", "g2", "g3"]),
        layers={"counts": counts, "scaled": counts / 3},
    )
    path = tmp_path / "cohort.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(InputError) as error:
        import_counts("h5ad", path)
    assert str(error.value) == (
        f"{path}: X holds values that are not whole numbers (e.g. 2.3979 for sample s1, gene "
        "007; 5 such cell(s)), so it is not raw read counts (normalized or log values?). The "
        "layer(s) 'counts' hold whole numbers: to use the first, set counts.h5ad_layer: counts."
    )
    result = import_counts("h5ad", path, h5ad_layer="counts")
    np.testing.assert_array_equal(result.counts.to_numpy(), counts.T)
    assert list(result.counts.index) == ["007", "g2", "g3"]
    adata.layers = {"scaled": counts / 3}
    adata.write_h5ad(path)
    with pytest.raises(InputError, match=r"No layer of this file holds whole numbers"):
        import_counts("h5ad", path)


@pytest.mark.parametrize("header", ["transcript_id\tgene_id\n", "TXNAME,GENEID\n", ""])
def test_tx2gene_with_or_without_header(tmp_path: Path, tx2gene: pd.Series, header: str) -> None:
    delimiter = "," if "," in header else "\t"
    path = tmp_path / "tx2gene.txt"
    path.write_text(header + "".join(f"{t}{delimiter}{g}\n" for t, g in tx2gene.items()))
    notes: list[str] = []
    read = read_tx2gene(path, notes)
    pd.testing.assert_series_equal(read, tx2gene)
    found = "a header line" if header else "no header line (the first row, "
    assert notes[0].startswith(f"{path}: tx2gene table read with {found}")
    paths = {s: SALMON / "raw" / s / "quant.sf.gz" for s in SALMON_SAMPLES[:2]}
    import_counts("salmon", paths, tx2gene=read)  # no transcript is left without a gene


def test_options_that_do_not_apply_are_warned(tx2gene: pd.Series) -> None:
    samples = ["hESC_0", "Fibroblasts_0"]
    genes = import_counts(
        "rsem",
        {s: FIX / f"rsem/{s}.genes.results.gz" for s in samples},
        counts_from_abundance="lengthScaledTPM",
    )
    assert genes.warnings == [
        "counts.counts_from_abundance is 'lengthScaledTPM', but RSEM genes.results files are "
        "gene level and rebuilding counts from abundance needs transcript-level input "
        "(tximport ignores it too): it was not applied. Give the isoforms.results files to "
        "use it, or set it to 'no'."
    ]
    star = import_counts(
        "star",
        {"treated2": FIX / "star/treated2.ReadsPerGene.out.tab"},
        tx2gene=tx2gene,
        counts_from_abundance="scaledTPM",
    )
    assert star.warnings == [
        "counts.tx2gene is set, but format 'star' reads gene-level read counts: the table was "
        "not used (it applies to salmon, kallisto and RSEM isoforms.results). Remove it from "
        "the config.",
        "counts.counts_from_abundance is 'scaledTPM', but format 'star' reads gene-level read "
        "counts, which have no abundance to rebuild counts from: it was not applied (it "
        "applies to salmon, kallisto and RSEM isoforms.results). Set it to 'no'.",
    ]
    assert import_counts("matrix", FIX / "matrix/pasilla_head.tsv").warnings == []
