"""Time :func:`cohortnorm.rlog.rlog` against DESeq2's ``rlog`` in the same run.

Simulates the benchmark cohort of ``bench/run_benchmarks.py`` (by default 20,000 genes ×
200 samples, seed 2; all-zero genes dropped), then, in R (DESeq2), on ``design = ~1``:
``estimateSizeFactors``, the blind dispersion trend (``estimateDispersionsGeneEst`` +
``estimateDispersionsFit``) and ``rlogData`` — the steps of ``rlog(blind = TRUE)`` —
each timed with ``system.time`` (R start-up and data transfer excluded). Ours runs the
rlog core on R's size factors and trend dispersions (``dispFit``), so the like-for-like
ratio is DESeq2 ``rlogData`` / ours; the dispersion estimation is timed on the R side
only and reported separately until the workflow's own DESeq2 dispersion port is timed
with it. The values are compared cell by cell::

    .venv/bin/python bench/bench_rlog.py                          # 20k × 200 (slow in R)
    .venv/bin/python bench/bench_rlog.py --genes 2000 --samples 20

Prints one line per step and a summary with the ratios; ``--json`` also writes them.
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

from cohortnorm.rlog import rlog
from cohortnorm.transforms import deseq2_rlog

#: R side: read the counts (float64, row-major), time the rlog steps, write what ours needs.
R_SCRIPT = (
    R_READ_COUNTS
    + r"""
storage.mode(counts) <- "integer"
colnames(counts) <- paste0("s", seq_len(ncol(counts)))
suppressPackageStartupMessages(library(DESeq2))
dds <- DESeqDataSetFromMatrix(counts, S4Vectors::DataFrame(row.names = colnames(counts)), ~1)
t_sf <- system.time(dds <- estimateSizeFactors(dds))[["elapsed"]]
t_disp <- system.time({
  dds <- estimateDispersionsGeneEst(dds, quiet = TRUE)
  dds <- suppressMessages(estimateDispersionsFit(dds, fitType = "parametric", quiet = TRUE))
})[["elapsed"]]
t_rlog <- system.time(rld <- DESeq2:::rlogData(dds))[["elapsed"]]
writeBin(as.vector(t(rld)), file.path(dir, "rlog.bin"))
writeBin(as.numeric(sizeFactors(dds)), file.path(dir, "sf.bin"))
writeBin(as.numeric(mcols(dds)$dispFit), file.path(dir, "dispfit.bin"))
cat(sprintf("%.17g", c(t_sf, t_disp, t_rlog, attr(rld, "betaPriorVar"))), sep = "\n",
    file = file.path(dir, "seconds.txt"))
cat(as.character(packageVersion("DESeq2")), "\n", file = file.path(dir, "versions.txt"))
"""
)


def _run_deseq2(counts: np.ndarray, workdir: Path) -> dict[str, object] | None:
    """Run and time DESeq2's rlog steps in R; None when R or DESeq2 is missing."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: DESeq2 not timed")
        return None
    write_counts(workdir, counts)
    script = workdir / "rlog.R"
    script.write_text(R_SCRIPT)
    proc = subprocess.run(
        [rscript, str(script), str(workdir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(f"DESeq2 rlog failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    t_sf, t_disp, t_rlog, bpv = (float(v) for v in (workdir / "seconds.txt").read_text().split())
    return {
        "sf_s": t_sf,
        "dispersion_s": t_disp,
        "rlogdata_s": t_rlog,
        "beta_prior_var": bpv,
        "rlog": np.fromfile(workdir / "rlog.bin", dtype="<f8").reshape(counts.shape),
        "size_factors": np.fromfile(workdir / "sf.bin", dtype="<f8"),
        "dispfit": np.fromfile(workdir / "dispfit.bin", dtype="<f8"),
        "version": (workdir / "versions.txt").read_text().strip(),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command line entry point; returns the summary written by ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of ours; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    cohort = simulate_cohort(args.genes, args.samples, seed=args.seed)
    counts = np.ascontiguousarray(cohort.counts, dtype=np.float64)
    counts = counts[counts.sum(axis=1) > 0]
    print(f"cohort: {counts.shape[0]:,} genes × {counts.shape[1]} samples, seed {args.seed}")
    summary: dict[str, object] = {
        "genes": counts.shape[0],
        "samples": counts.shape[1],
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory(prefix="bench_rlog_") as tmp:
        r = _run_deseq2(counts, Path(tmp))
    if r is None:
        print("ours needs DESeq2's trend dispersions from R in this benchmark; nothing timed")
        return summary
    print(
        f"DESeq2 {r['version']}: size factors {r['sf_s']:.2f} s, dispersions "
        f"{r['dispersion_s']:.2f} s, rlogData {r['rlogdata_s']:.2f} s"
    )
    best = float("inf")
    values = np.empty(0)
    for _ in range(args.repeats):
        start = time.perf_counter()
        res = rlog(counts, r["size_factors"], r["dispfit"])
        best = min(best, time.perf_counter() - start)
        values = res.values
    diff = float(np.abs(values - r["rlog"]).max())
    ratio = r["rlogdata_s"] / best
    total = r["sf_s"] + r["dispersion_s"] + r["rlogdata_s"]
    print(f"ours rlog core: {best:.3f} s; max |ours − DESeq2| = {diff:.3g}")
    print(f"DESeq2 rlogData / ours: {ratio:.1f}×")
    # The whole of ours, as the workflow's transform rule runs it: DESeq2's size factors,
    # the blind dispersion trend and rlogData, from the counts alone.
    start = time.perf_counter()
    whole = deseq2_rlog(counts, size_factors=None, design=None)
    whole_s = time.perf_counter() - start
    whole_diff = float(np.abs(whole - r["rlog"]).max())
    print(
        f"DESeq2 rlog (size factors + dispersions + rlogData, {total:.2f} s) / ours whole "
        f"({whole_s:.3f} s, max |ours − DESeq2| = {whole_diff:.3g}): {total / whole_s:.1f}×"
    )
    summary.update(
        {
            "deseq2_version": r["version"],
            "deseq2_size_factors_s": r["sf_s"],
            "deseq2_dispersions_s": r["dispersion_s"],
            "deseq2_rlogdata_s": r["rlogdata_s"],
            "ours_rlog_s": best,
            "ours_whole_rlog_s": whole_s,
            "whole_ratio": total / whole_s,
            "whole_max_abs_diff": whole_diff,
            "rlogdata_ratio": ratio,
            "max_abs_diff": diff,
            "beta_prior_var_deseq2": r["beta_prior_var"],
            "beta_prior_var_ours": res.beta_prior_var,
        }
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
