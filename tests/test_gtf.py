"""Union-of-exons gene lengths from GTF files and length tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cohortnorm.errors import InputError
from cohortnorm.io.gtf import (
    gene_lengths_from_gtf,
    read_gene_lengths,
    read_lengths_table,
    union_lengths,
)

DATA = Path(__file__).parent / "data"


def brute_force_lengths(path: Path) -> pd.Series:
    """Count the distinct (chromosome, base) pairs of each gene's exons."""
    gtf = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=[0, 2, 3, 4, 8])
    gtf.columns = ["chr", "feature", "start", "end", "attr"]
    gtf = gtf[gtf["feature"] == "exon"]
    gtf["gene"] = gtf["attr"].str.extract(r'gene_id "([^"]+)"')[0]
    covered: dict[str, set[tuple[str, int]]] = {}
    for gene, chrom, start, end in gtf[["gene", "chr", "start", "end"]].itertuples(index=False):
        covered.setdefault(gene, set()).update((chrom, b) for b in range(start, end + 1))
    return pd.Series({gene: len(bases) for gene, bases in covered.items()})


def test_gencode_chr21_matches_reference_lengths() -> None:
    lengths = gene_lengths_from_gtf(DATA / "gtex_lung_chr21/gencode.v26.annotation.chr21.gtf.gz")
    expected = pd.read_csv(DATA / "gtex_lung_chr21/lengths.tsv.gz", sep="\t", index_col=0)
    assert lengths.dtype == np.int64
    assert lengths.index.name == "gene_id"
    pd.testing.assert_series_equal(
        lengths.reindex(expected.index), expected["length"], check_names=False
    )


def test_cufflinks_gtf_matches_brute_force() -> None:
    path = DATA / "salmon_isoformswitch/example.gtf.gz"
    lengths = gene_lengths_from_gtf(path)
    expected = brute_force_lengths(path)
    assert len(lengths) == 375
    pd.testing.assert_series_equal(
        lengths, expected.reindex(lengths.index), check_names=False, check_index_type=False
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 60), st.integers(0, 20)), max_size=40))
def test_union_lengths_property(intervals: list[tuple[int, int, int]]) -> None:
    groups = np.array([g for g, _, _ in intervals], dtype=np.int64)
    starts = np.array([s for _, s, _ in intervals], dtype=np.int64)
    ends = starts + np.array([w for _, _, w in intervals], dtype=np.int64)
    expected = np.zeros(4, dtype=np.int64)
    for g in range(4):
        bases = set()
        for group, start, end in zip(groups, starts, ends, strict=True):
            if group == g:
                bases.update(range(start, end + 1))
        expected[g] = len(bases)
    np.testing.assert_array_equal(union_lengths(groups, starts, ends, 4), expected)


def test_gff3_attributes_and_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "mini.gff3.gz"
    text = (
        "##gff-version 3\n"
        "1\tsrc\texon\t1\t10\t.\t+\t.\tID=e1;gene_id=G1\n"
        "# a comment in the middle\n"
        "1\tsrc\texon\t5\t20\t.\t+\t.\tID=e2;gene_id=G1\n"
        "2\tsrc\texon\t5\t20\t.\t+\t.\tID=e3;gene_id=G1\n"
        "1\tsrc\tCDS\t5\t20\t.\t+\t.\tID=c1;gene_id=G2\n"
    )
    path.write_bytes(gzip.compress(text.encode()))
    lengths = read_gene_lengths(path)
    assert lengths.to_dict() == {"G1": 20 + 16}


def test_bad_gtf(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        gene_lengths_from_gtf(tmp_path / "absent.gtf")
    path = tmp_path / "bad.gtf"
    path.write_text('1\ts\texon\t10\t5\t.\t+\t.\tgene_id "A";\n')
    with pytest.raises(InputError, match=r"bad\.gtf.*end < start.*gene A"):
        gene_lengths_from_gtf(path)
    path.write_text('1\ts\texon\t1\t5\t.\t+\t.\ttranscript_id "T";\n')
    with pytest.raises(InputError, match="no 'gene_id' attribute"):
        gene_lengths_from_gtf(path)
    path.write_text('1\ts\tgene\t1\t5\t.\t+\t.\tgene_id "A";\n')
    with pytest.raises(InputError, match="no rows of feature type 'exon'"):
        gene_lengths_from_gtf(path)


def test_lengths_table(tmp_path: Path) -> None:
    lengths = read_gene_lengths(DATA / "pasilla/lengths.tsv.gz")
    assert lengths["FBgn0000008"] == 5400 and lengths.dtype == np.int64
    path = tmp_path / "lengths.csv"
    path.write_text("gene,len\r\nA,10\r\nB,0\r\n")
    with pytest.raises(InputError, match=r"lengths\.csv.*gene B"):
        read_lengths_table(path)
    path.write_text("gene,len\nA,10\nA,12\n")
    with pytest.raises(InputError, match="appear more than once: A"):
        read_lengths_table(path)
    path.write_text("gene,len\nA,10.5\nB,3\n")
    assert read_lengths_table(path).dtype == np.float64
