"""The block budget of every block-wise pass, and the slices that cut an axis by it.

Two figures, used the same way everywhere (``cell_slices(length, other, budget)``):

- :data:`BLOCK_CELLS` bounds the transient memory of a pass over a whole matrix (a
  transposed block, a block of logs or CPMs): 32 MiB of float64 per temporary, so a
  60,000 × 17,000 cohort needs one dense copy plus a few blocks, while each block is large
  enough (tens of genes even at 17,000 samples) that the per-block Python overhead is
  below 1 % of the pass.
- :data:`CACHE_BLOCK_CELLS` is for chains of elementwise steps on one block (the GLM and
  ComBat kernels): its temporaries stay in the CPU cache from one step to the next, so a
  chain of ten steps costs one pass over memory instead of ten.
"""

from __future__ import annotations

import os

#: Cells (32 MiB of float64) of one temporary of a pass over a whole matrix.
BLOCK_CELLS = 1 << 22

# Cells (1 MB of float64) of a block whose temporaries stay in cache from one step to the
# next, so that a chain of elementwise steps costs one pass over memory. Small enough for
# malloc to reuse too: numpy asks for huge pages from 4 MB up, which the kernel zeroes
# (and may compact memory for) on every allocation.
CACHE_BLOCK_CELLS = 1 << 17


def slices(length: int, step: int) -> list[slice]:
    """Consecutive slices of ``step`` indices (the last may be shorter) covering ``length``."""
    step = max(1, int(step))
    return [slice(start, min(start + step, length)) for start in range(0, length, step)]


def cell_slices(length: int, other: int, cells: int) -> list[slice]:
    """Slices of an axis of ``length`` whose blocks hold about ``cells`` cells each,
    when every index along it spans ``other`` cells of the other axis."""
    return slices(length, cells // max(other, 1))


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one.

    The default worker count of the threaded kernels when the caller gives none. The
    scripts always pass the rule's ``threads``, so on a cluster node a job never sizes its
    pool from the machine.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
