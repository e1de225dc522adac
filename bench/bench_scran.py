"""Time :func:`cohortnorm.scran.pooled_size_factors` against R's ``scran::calculateSumFactors``.

Simulates a low-input cohort with ``bench/simulate.py`` (by default 5,000 genes × 60 samples
in 3 batches, library sizes around 3e4, so scran picks ``min.mean = 0.1`` and the default
pool sizes 21..56 apply), times ours, then, when ``Rscript`` with scran is installed,
times ``calculateSumFactors(counts)`` on the same matrix inside R (``system.time``, so R's
start-up and the data transfer are excluded) and reports the largest relative difference::

    .venv/bin/python bench/bench_scran.py              # 5k × 60, ours and scran
    .venv/bin/python bench/bench_scran.py --no-r       # ours only
    .venv/bin/python bench/bench_scran.py --genes 2000 --samples 40 --clusters

The defaults are small on purpose (the machine may be shared). ``--json`` also writes the
numbers to a file.
"""

from __future__ import annotations

import argparse
import json
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

from cohortnorm.scran import pooled_size_factors

#: R side: read the counts (float64, row-major) and cluster labels, time calculateSumFactors.
R_SCRIPT = (
    R_READ_COUNTS
    + r"""
clusters <- readLines(file.path(dir, "clusters.txt"))
cl <- if (length(clusters)) clusters else NULL
suppressPackageStartupMessages(requireNamespace("scran"))
seconds <- system.time(sf <- scran::calculateSumFactors(counts, clusters = cl))[["elapsed"]]
writeBin(as.double(sf), file.path(dir, "sf.bin"))
cat(sprintf("%.17g\n", seconds), file = file.path(dir, "seconds.txt"))
cat(as.character(packageVersion("scran")), as.character(packageVersion("scuttle")), "\n",
    file = file.path(dir, "versions.txt"))
"""
)


def _run_r(
    counts: np.ndarray, clusters: list[str], workdir: Path
) -> tuple[float, np.ndarray, str] | None:
    """Time scran's calculateSumFactors in R; None when R or scran is missing."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: scran not timed")
        return None
    write_counts(workdir, counts)
    (workdir / "clusters.txt").write_text("".join(f"{c}\n" for c in clusters))
    script = workdir / "scran.R"
    script.write_text(R_SCRIPT)
    proc = subprocess.run(
        [rscript, str(script), str(workdir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(f"scran failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    seconds = float((workdir / "seconds.txt").read_text())
    sf = np.fromfile(workdir / "sf.bin", dtype="<f8")
    return seconds, sf, (workdir / "versions.txt").read_text().strip()


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command line entry point; returns the summary written by ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=5_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--depth", type=float, default=3e4, help="mean library size")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--clusters", action="store_true", help="clusters = batch")
    parser.add_argument("--no-r", action="store_true", help="do not time scran")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    cohort = simulate_cohort(
        args.genes, args.samples, n_batches=args.batches, depth=args.depth, seed=args.seed
    )
    counts = np.ascontiguousarray(cohort.counts, dtype=np.float64)
    counts = counts[counts.sum(axis=1) > 0]
    clusters = cohort.samples["batch"].astype(str).tolist() if args.clusters else []
    print(
        f"cohort: {counts.shape[0]:,} genes × {counts.shape[1]} samples, median library "
        f"size {np.median(counts.sum(axis=0)):,.0f}, clusters: {'batch' if clusters else 'none'}"
    )
    start = time.perf_counter()
    ours = pooled_size_factors(counts, clusters=clusters or None)
    seconds = time.perf_counter() - start
    summary: dict[str, object] = {
        "genes": counts.shape[0],
        "samples": counts.shape[1],
        "clusters": bool(clusters),
        "seed": args.seed,
        "ours_s": seconds,
        "min_mean": ours.min_mean,
        "pool_sizes": ours.pool_sizes,
    }
    print(f"ours : {seconds:8.3f} s (min_mean {ours.min_mean:g}, pools {ours.pool_sizes})")
    if not args.no_r:
        with tempfile.TemporaryDirectory(prefix="bench_scran_") as tmp:
            res = _run_r(counts, clusters, Path(tmp))
        if res is not None:
            r_seconds, ref, versions = res
            rel = float(np.max(np.abs(ours.size_factors / ref - 1)))
            summary.update(scran_s=r_seconds, scran_versions=versions, max_rel_diff=rel)
            print(f"scran calculateSumFactors ({versions}): {r_seconds:8.3f} s")
            print(f"max relative difference: {rel:.3g}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
