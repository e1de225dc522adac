"""Matching the gene IDs of a count table to those of a gene-length table.

Count tables and annotations often come from different tools that disagree only on the
Ensembl version suffix: ``ENSG00000123456.7`` in one file, ``ENSG00000123456`` (or
another version) in the other. IDs are matched exactly first; a count ID left over is
then matched on its unversioned Ensembl stem, but only when that is unambiguous: the
stem belongs to exactly one count ID and exactly one length ID. Anything else is left
without a length and counted, so the run log and ``counts/length_report.tsv`` say how
many genes found a length and why the others did not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# An Ensembl stable ID (ENSG…, ENSMUSG…, ENSDARG…; genes or transcripts) with an
# optional ``.version``. GENCODE's ``_PAR_Y`` copies do not match, so they are matched
# exactly or not at all (their stem is shared with the X copy).
_ENSEMBL = re.compile(r"(ENS[A-Z]*[GT]\d{6,})(?:\.\d+)?")


def ensembl_stem(identifier: str) -> str | None:
    """The unversioned stem of an Ensembl ID (``ENSG00000123456.7`` → ``ENSG00000123456``).

    Returns ``None`` for anything that is not a whole Ensembl ID, versioned or not.
    """
    found = _ENSEMBL.fullmatch(identifier)
    return found.group(1) if found else None


@dataclass
class LengthMatch:
    """Lengths aligned to the count IDs, and how each ID found (or did not find) one.

    Attributes
    ----------
    lengths
        One length per count ID (count order), NaN where none was found.
    exact
        Count IDs found as they are.
    version_matched
        Count ID → the length-table ID it was matched to through its Ensembl stem.
    ambiguous
        Count IDs whose stem is shared by several count IDs or several length IDs.
    missing
        Count IDs with no length at all.
    """

    lengths: pd.Series
    exact: int
    version_matched: dict[str, str] = field(default_factory=dict)
    ambiguous: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        """How many count IDs found a length."""
        return self.exact + len(self.version_matched)

    def report(self, source: str) -> pd.DataFrame:
        """A two-column (``item``, ``value``) table of the counts, for ``length_report.tsv``."""
        total = len(self.lengths)
        rows = {
            "lengths_source": source,
            "count_gene_ids": total,
            "with_length": self.found,
            "matched_exactly": self.exact,
            "matched_ignoring_ensembl_version": len(self.version_matched),
            "ambiguous_ensembl_version": len(self.ambiguous),
            "without_length": len(self.missing) + len(self.ambiguous),
            "fraction_with_length": self.found / total if total else 0.0,
        }
        return pd.DataFrame({"item": list(rows), "value": [str(v) for v in rows.values()]})


def match_lengths(count_ids: Sequence[str] | pd.Index, lengths: pd.Series) -> LengthMatch:
    """Give each count gene ID its length, ignoring Ensembl versions when unambiguous.

    Parameters
    ----------
    count_ids
        Gene IDs of the count table.
    lengths
        Lengths indexed by gene ID (unique).

    Returns
    -------
    LengthMatch
        The aligned lengths and what matched how.
    """
    ids = pd.Index([str(i) for i in count_ids], dtype=object)
    length_ids = pd.Index([str(i) for i in lengths.index], dtype=object)
    values = pd.Series(lengths.to_numpy(dtype=float), index=length_ids)
    aligned = values.reindex(ids).to_numpy(dtype=float)
    exact = length_ids.get_indexer(ids) >= 0
    unmatched = np.flatnonzero(~exact)
    version_matched: dict[str, str] = {}
    ambiguous: list[str] = []
    if unmatched.size:
        # A stem used by two count IDs (ENSG1.1 and ENSG1.2) or two length IDs cannot
        # say which length belongs to which gene: those stay unmatched.
        count_stems = pd.Series([ensembl_stem(i) for i in ids], dtype=object)
        count_uses = count_stems.value_counts()
        by_stem: dict[str, list[str]] = {}
        for length_id in length_ids:
            stem = ensembl_stem(length_id)
            if stem is not None:
                by_stem.setdefault(stem, []).append(length_id)
        for row in unmatched:
            stem = count_stems.iloc[row]
            candidates = by_stem.get(stem, []) if stem is not None else []
            if not candidates:
                continue
            if len(candidates) == 1 and count_uses[stem] == 1:
                version_matched[ids[row]] = candidates[0]
                aligned[row] = values[candidates[0]]
            else:
                ambiguous.append(ids[row])
    taken = set(version_matched) | set(ambiguous)
    missing = [ids[row] for row in unmatched if ids[row] not in taken]
    return LengthMatch(
        lengths=pd.Series(aligned, index=pd.Index(ids, name="gene_id"), name="length"),
        exact=int(exact.sum()),
        version_matched=version_matched,
        ambiguous=ambiguous,
        missing=missing,
    )
