"""Checks that tie a count matrix to its sample sheet.

Each check raises :class:`~cohortnorm.errors.InputError` with a message that names
the samples or columns involved and says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cohortnorm.design import is_missing
from cohortnorm.errors import InputError, preview

_NO_COLUMN = "(no column)"
_NO_ROW = "(no sheet row)"


def side_by_side(
    sheet_samples: Sequence[str],
    count_samples: Sequence[str],
    sources: Mapping[str, str] | None = None,
    *,
    limit: int = 20,
) -> str:
    """The sample-sheet names beside the count columns, one pair per line.

    Sheet samples come first in sheet order, each beside its column (or
    ``(no column)``), then the columns without a sheet row. A column whose name was
    made from a file name (a BAM path) shows both: ``/data/S11.bam → S11``. Beyond
    ``limit`` rows the mismatched pairs are shown first and the rest counted.

    Parameters
    ----------
    sheet_samples
        Names in the sample sheet, in sheet order.
    count_samples
        Sample names found in the counts, in file order.
    sources
        Count sample name → the column or file it was read from, when different.
    limit
        Most pairs shown.
    """
    sources = dict(sources or {})
    in_counts = set(count_samples)
    in_sheet = set(sheet_samples)

    def shown(name: str) -> str:
        source = sources.get(name, name)
        return name if source == name else f"{source} → {name}"

    rows = [(name, shown(name) if name in in_counts else _NO_COLUMN) for name in sheet_samples]
    rows += [(_NO_ROW, shown(name)) for name in count_samples if name not in in_sheet]
    mismatched = [row for row in rows if _NO_COLUMN in row or _NO_ROW in row]
    matched = [row for row in rows if row not in mismatched]
    if len(rows) > limit:
        rows = mismatched[:limit] + matched[: max(limit - len(mismatched), 0)]
    width = max(len("sample sheet"), *(len(left) for left, _ in rows))
    lines = [f"  {'sample sheet'.ljust(width)}  counts"]
    lines += [f"  {left.ljust(width)}  {right}" for left, right in rows]
    hidden_mismatched = len(mismatched) - sum(1 for row in rows if row in mismatched)
    hidden_matched = len(matched) - sum(1 for row in rows if row in matched)
    if hidden_mismatched or hidden_matched:
        hidden = [
            f"{n} {kind}"
            for n, kind in ((hidden_mismatched, "unmatched"), (hidden_matched, "matched"))
            if n
        ]
        lines.append(
            f"  … and {' and '.join(hidden)} not shown ({len(sheet_samples)} sheet samples, "
            f"{len(count_samples)} count columns in all)"
        )
    return "\n".join(lines)


def reconcile_samples(
    count_samples: Sequence[str],
    sheet_samples: Sequence[str],
    *,
    counts_source: str,
    sheet_source: str,
    subset: bool = False,
    sources: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Match the count columns to the sample sheet and return the columns to keep.

    Parameters
    ----------
    count_samples
        Sample names found in the counts, in file order.
    sheet_samples
        Sample names of the sample sheet, in sheet order.
    counts_source, sheet_source
        File names used in messages.
    subset
        When true, count columns without a sheet row are dropped (and reported)
        instead of being an error.
    sources
        Count sample name → the column or file it was read from, shown in messages.

    Returns
    -------
    kept, dropped
        The samples in sample-sheet order, and the count columns dropped.

    Raises
    ------
    InputError
        A sheet sample is missing from the counts, or (unless ``subset``) a count
        column has no sheet row.
    """
    in_counts = set(count_samples)
    in_sheet = set(sheet_samples)
    missing = [s for s in sheet_samples if s not in in_counts]
    extra = [s for s in count_samples if s not in in_sheet]
    table = side_by_side(sheet_samples, count_samples, sources)
    if missing:
        raise InputError(
            f"{sheet_source}: {len(missing)} sample(s) in the sample sheet have no column in "
            f"{counts_source}: {preview(missing, 10)}. Fix the names, or remove those rows. "
            "Names must match exactly (case, spaces and punctuation count):\n" + table
        )
    if extra and not subset:
        raise InputError(
            f"{counts_source}: {len(extra)} count column(s) have no row in {sheet_source}: "
            f"{preview(extra, 10)}. Add them to the sample sheet, or set "
            "counts.subset_samples: true to analyse only the samples in the sheet:\n" + table
        )
    return list(sheet_samples), extra


def sheet_column(
    sheet: pd.DataFrame, column: str, samples: Sequence[str], *, sheet_source: str, purpose: str
) -> pd.Series:
    """Return ``sheet[column]`` for ``samples``, refusing empty cells.

    Parameters
    ----------
    sheet
        Sample sheet indexed by sample name.
    column
        Column to take.
    samples
        Samples, in the order wanted.
    sheet_source
        File name for messages.
    purpose
        What the column is used for, e.g. ``"filter.group"``.
    """
    if column not in sheet.columns:
        raise InputError(
            f"{sheet_source}: no column {column!r} (needed for {purpose}); "
            f"columns are {list(sheet.columns)}."
        )
    values = sheet.loc[list(samples), column]
    # The workflow's one missing-value rule (cohortnorm.design.MISSING_VALUES): empty,
    # NA, NaN, N/A, ... stop the run, in every column the config uses.
    empty = is_missing(values)
    if empty.any():
        raise InputError(
            f"{sheet_source}: column {column!r} (used for {purpose}) is empty or NA for "
            f"sample(s) {preview(values.index[empty].tolist(), 10)}. Fill in a value for each "
            "sample, or remove those samples."
        )
    return values.astype(str).str.strip()
