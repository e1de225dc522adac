"""Consecutive slices for block-wise processing, shared by every numeric module.

Each module keeps its own cell budget (what fits its temporaries); these helpers only
cut an axis into slices.
"""

from __future__ import annotations


def slices(length: int, step: int) -> list[slice]:
    """Consecutive slices of ``step`` indices (the last may be shorter) covering ``length``."""
    step = max(1, int(step))
    return [slice(start, min(start + step, length)) for start in range(0, length, step)]


def cell_slices(length: int, other: int, cells: int) -> list[slice]:
    """Slices of an axis of ``length`` whose blocks hold about ``cells`` cells each,
    when every index along it spans ``other`` cells of the other axis."""
    return slices(length, cells // max(other, 1))
