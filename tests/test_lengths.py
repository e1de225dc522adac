"""Matching count gene IDs to a lengths table, Ensembl versions included."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cohortnorm.lengths import ensembl_stem, match_lengths


def lengths(mapping: dict[str, float]) -> pd.Series:
    return pd.Series(mapping, dtype=float)


def test_ensembl_stem() -> None:
    assert ensembl_stem("ENSG00000123456.7") == "ENSG00000123456"
    assert ensembl_stem("ENSG00000123456") == "ENSG00000123456"
    assert ensembl_stem("ENSMUSG00000000001.4") == "ENSMUSG00000000001"
    assert ensembl_stem("ENSG00000182378.14_PAR_Y") is None  # not the X copy's length
    assert ensembl_stem("FBgn0000008") is None
    assert ensembl_stem("gene.1") is None


def test_versions_match_in_either_direction() -> None:
    match = match_lengths(
        ["ENSG00000000001.5", "ENSG00000000002", "FBgn1"],
        lengths({"ENSG00000000001": 100, "ENSG00000000002.3": 200, "FBgn1": 300}),
    )
    np.testing.assert_array_equal(match.lengths.to_numpy(), [100, 200, 300])
    assert match.exact == 1
    assert match.version_matched == {
        "ENSG00000000001.5": "ENSG00000000001",
        "ENSG00000000002": "ENSG00000000002.3",
    }
    assert match.found == 3 and not match.ambiguous and not match.missing


def test_ambiguous_stems_stay_unmatched_and_are_counted() -> None:
    match = match_lengths(
        # two versions of gene 1 in the counts; gene 2 has two versions in the table
        ["ENSG00000000001.1", "ENSG00000000001.2", "ENSG00000000002", "ENSG00000000009", "x"],
        lengths({"ENSG00000000001": 100, "ENSG00000000002.1": 5, "ENSG00000000002.2": 6}),
    )
    assert np.isnan(match.lengths.to_numpy()).all()
    assert match.ambiguous == ["ENSG00000000001.1", "ENSG00000000001.2", "ENSG00000000002"]
    assert match.missing == ["ENSG00000000009", "x"]
    report = match.report("my_lengths.tsv").set_index("item")["value"]
    assert report["lengths_source"] == "my_lengths.tsv"
    assert report["count_gene_ids"] == "5"
    assert report["with_length"] == "0"
    assert report["ambiguous_ensembl_version"] == "3"
    assert report["without_length"] == "5"


def test_exact_match_wins_over_a_version_match() -> None:
    # ENSG1.2 is found as is; ENSG1.1 shares its stem with it, so it is not guessed.
    match = match_lengths(
        ["ENSG00000000001.2", "ENSG00000000001.1"],
        lengths({"ENSG00000000001.2": 100}),
    )
    assert match.exact == 1
    assert match.ambiguous == ["ENSG00000000001.1"]
    assert match.lengths.iloc[0] == 100 and np.isnan(match.lengths.iloc[1])
