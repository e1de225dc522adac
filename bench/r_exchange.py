"""The count matrix handed from a bench script to its R peer: one binary file, no text.

``write_counts`` writes ``counts.bin`` (float64, little-endian, row-major) and
``dims.txt``; an R script that starts with ``R_READ_COUNTS`` has ``dir`` (its first
argument) and ``counts`` (genes × samples, double) after those lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

R_READ_COUNTS = r"""
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
dims <- scan(file.path(dir, "dims.txt"), quiet = TRUE)
counts <- matrix(readBin(file.path(dir, "counts.bin"), "double", dims[1] * dims[2]),
                 nrow = dims[1], ncol = dims[2], byrow = TRUE)
"""


def write_counts(workdir: Path, counts: np.ndarray) -> None:
    """Write ``counts`` where an R script starting with ``R_READ_COUNTS`` reads it."""
    np.ascontiguousarray(counts, dtype="<f8").tofile(workdir / "counts.bin")
    (workdir / "dims.txt").write_text(f"{counts.shape[0]} {counts.shape[1]}\n")
