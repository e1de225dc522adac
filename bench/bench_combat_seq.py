"""Time :func:`cohortnorm.combat_seq.combat_seq` against R's ``sva::ComBat_seq``.

Simulates the batch-correction benchmark cohort of ``bench/run_benchmarks.py`` (by
default 20,000 genes × 200 samples in 3 batches, ``seed + 1`` with the default seed, no
gene filter, design ``~condition``), times ours single-threaded and with ``--threads``,
then, when ``Rscript`` with sva is installed, times ``ComBat_seq(counts, batch, group)``
on the same matrix inside R (``system.time``, so R's start-up and the data transfer are
excluded) and compares the adjusted counts cell by cell::

    .venv/bin/python bench/bench_combat_seq.py             # 20k × 200, ours and sva
    .venv/bin/python bench/bench_combat_seq.py --no-r      # ours only
    .venv/bin/python bench/bench_combat_seq.py --genes 5000 --samples 60

Prints one line per run and a summary with the sva / ours ratio; ``--json`` also writes
the numbers to a file.
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

from cohortnorm.combat_seq import combat_seq

#: R side: read the counts (float64, row-major) and labels, time ComBat_seq, write result.
R_SCRIPT = (
    R_READ_COUNTS
    + r"""
labels <- read.delim(file.path(dir, "samples.tsv"), stringsAsFactors = FALSE)
suppressPackageStartupMessages(library(sva))
batch <- factor(labels$batch)
group <- factor(labels$condition)
seconds <- system.time(invisible(capture.output(
  adjusted <- ComBat_seq(counts, batch = batch, group = group))))[["elapsed"]]
writeBin(as.vector(t(adjusted)), file.path(dir, "adjusted.bin"))
cat(sprintf("%.17g\n", seconds), file = file.path(dir, "seconds.txt"))
cat(as.character(packageVersion("sva")), as.character(packageVersion("edgeR")), "\n",
    file = file.path(dir, "versions.txt"))
"""
)


def _time_ours(
    counts: np.ndarray, batch: np.ndarray, group: np.ndarray, threads: int, repeats: int
) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeats`` runs and the adjusted counts."""
    best = float("inf")
    adjusted = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        adjusted = combat_seq(counts, batch, group, threads=threads).adjusted
        best = min(best, time.perf_counter() - start)
    return best, adjusted


def _run_sva(
    counts: np.ndarray, samples_tsv: str, workdir: Path
) -> tuple[float, np.ndarray, str] | None:
    """Time sva's ComBat_seq in R; None when R or sva is missing."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: sva not timed")
        return None
    write_counts(workdir, counts)
    (workdir / "samples.tsv").write_text(samples_tsv)
    script = workdir / "combat_seq.R"
    script.write_text(R_SCRIPT)
    proc = subprocess.run(
        [rscript, str(script), str(workdir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(f"sva ComBat_seq failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    seconds = float((workdir / "seconds.txt").read_text())
    adjusted = np.fromfile(workdir / "adjusted.bin", dtype="<f8").reshape(counts.shape)
    return seconds, adjusted, (workdir / "versions.txt").read_text().strip()


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command line entry point; returns the summary written by ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument(
        "--seed",
        type=int,
        default=2,
        help="simulation seed (run_benchmarks.py uses its --seed + 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
        help="threads for the multi-threaded run (default: the CPUs available)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of ours; the best is kept")
    parser.add_argument("--no-r", action="store_true", help="do not time sva")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    cohort = simulate_cohort(args.genes, args.samples, n_batches=args.batches, seed=args.seed)
    counts = np.ascontiguousarray(cohort.counts, dtype=np.float64)
    batch = cohort.samples["batch"].to_numpy()
    group = cohort.samples["condition"].to_numpy()
    print(
        f"cohort: {counts.shape[0]:,} genes × {counts.shape[1]} samples, "
        f"{args.batches} batches, seed {args.seed}"
    )
    summary: dict[str, object] = {
        "genes": counts.shape[0],
        "samples": counts.shape[1],
        "batches": args.batches,
        "seed": args.seed,
        "cpus": os.cpu_count(),
    }
    runs = sorted({1, max(1, args.threads)})
    adjusted = np.empty(0)
    for threads in runs:
        seconds, adjusted = _time_ours(counts, batch, group, threads, args.repeats)
        summary[f"ours_threads{threads}_s"] = seconds
        print(f"ours  (threads={threads}): {seconds:8.2f} s")

    if not args.no_r:
        with tempfile.TemporaryDirectory(prefix="bench_combat_seq_") as tmp:
            sva = _run_sva(counts, cohort.samples.to_csv(sep="\t", index=False), Path(tmp))
        if sva is not None:
            seconds, ref, versions = sva
            diff = adjusted - ref
            summary.update(
                sva_s=seconds,
                sva_versions=versions,
                identical_fraction=float(np.mean(diff == 0)),
                cells_differing=int(np.count_nonzero(diff)),
                max_abs_diff=float(np.abs(diff).max()),
            )
            print(f"sva   ComBat_seq ({versions}): {seconds:8.2f} s")
            for threads in runs:
                ratio = seconds / float(summary[f"ours_threads{threads}_s"])  # type: ignore[arg-type]
                summary[f"ratio_threads{threads}"] = ratio
                print(f"sva / ours (threads={threads}): {ratio:6.1f}×")
            print(
                f"adjusted counts: {summary['identical_fraction']:.7f} identical to sva "
                f"({summary['cells_differing']} cells differ, max |diff| "
                f"{summary['max_abs_diff']:g})"
            )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
