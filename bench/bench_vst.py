"""Time :func:`cohortnorm.vst.vst` against DESeq2's ``vst`` on the same simulated counts.

Simulates a cohort with ``bench/simulate.py`` (default 60,000 genes × 1,000 samples, the
size the speed target is stated for), times ours (size factors, the 1,000-gene trend and
the transform of every gene), then, when ``Rscript`` with DESeq2 is installed, times
``vst(counts)`` on the same matrix inside R (``system.time``: R's start-up and the data
transfer are excluded) and compares the two matrices cell by cell::

    .venv/bin/python bench/bench_vst.py                          # 60k × 1,000
    .venv/bin/python bench/bench_vst.py --genes 5000 --samples 50
    .venv/bin/python bench/bench_vst.py --full                   # varianceStabilizingTransformation
    .venv/bin/python bench/bench_vst.py --no-r

Prints one line per run and the DESeq2 / ours ratio; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from r_exchange import R_READ_COUNTS, write_counts
from simulate import simulate_cohort

from cohortnorm.vst import variance_stabilizing_transformation, vst

#: R side: read the counts (float64, row-major), time DESeq2's transform, write it back.
R_SCRIPT = (
    R_READ_COUNTS
    + r"""
full <- args[2] == "full"
storage.mode(counts) <- "integer"
suppressPackageStartupMessages(library(DESeq2))
seconds <- system.time(out <- if (full) varianceStabilizingTransformation(counts)
                              else vst(counts))[["elapsed"]]
writeBin(as.vector(t(out)), file.path(dir, "vst.bin"))
cat(sprintf("%.17g\n", seconds), file = file.path(dir, "seconds.txt"))
cat(as.character(packageVersion("DESeq2")), "\n", file = file.path(dir, "versions.txt"))
"""
)


def _run_deseq2(
    counts: np.ndarray, workdir: Path, full: bool
) -> tuple[float, np.ndarray, str] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: DESeq2 not timed")
        return None
    write_counts(workdir, counts)
    script = workdir / "vst.R"
    script.write_text(R_SCRIPT)
    proc = subprocess.run(
        [rscript, str(script), str(workdir), "full" if full else "vst"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"DESeq2 failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    seconds = float((workdir / "seconds.txt").read_text())
    values = np.fromfile(workdir / "vst.bin", dtype="<f8").reshape(counts.shape)
    return seconds, values, (workdir / "versions.txt").read_text().strip()


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command line entry point; returns the summary written by ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=60_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="varianceStabilizingTransformation")
    parser.add_argument("--repeats", type=int, default=1, help="runs of ours; the best is kept")
    parser.add_argument("--no-r", action="store_true", help="do not time DESeq2")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    cohort = simulate_cohort(args.genes, args.samples, seed=args.seed)
    counts = np.ascontiguousarray(cohort.counts, dtype=np.float64)
    name = "varianceStabilizingTransformation" if args.full else "vst"
    print(f"cohort: {counts.shape[0]:,} genes × {counts.shape[1]} samples, seed {args.seed}")
    summary: dict[str, object] = {
        "function": name,
        "genes": counts.shape[0],
        "samples": counts.shape[1],
        "seed": args.seed,
        "cpus": os.cpu_count(),
    }
    transform = variance_stabilizing_transformation if args.full else vst
    best = float("inf")
    ours = np.empty(0)
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = transform(counts)
        best = min(best, time.perf_counter() - start)
    summary["ours_s"] = best
    print(f"ours   {name}: {best:8.2f} s")
    if not args.no_r:
        with tempfile.TemporaryDirectory(prefix="bench_vst_") as tmp:
            result = _run_deseq2(counts, Path(tmp), args.full)
        if result is not None:
            seconds, theirs, version = result
            diff = float(np.max(np.abs(ours - theirs)))
            summary.update(
                deseq2_s=seconds, deseq2_version=version, ratio=seconds / best, max_abs=diff
            )
            print(f"DESeq2 {version} {name}: {seconds:8.2f} s")
            print(f"DESeq2 / ours: {seconds / best:.1f}×; max |ours − DESeq2| = {diff:.3g}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
