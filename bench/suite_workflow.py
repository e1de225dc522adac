"""The workflow itself, timed per rule on a simulated cohort."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suite_common import BENCH, WORKER_TIMEOUT, dense_mb, read_meta, status_text


def workflow_run(workdir: Path, outdir: Path) -> dict[str, Any]:
    """Run the real workflow (``snakemake --cores 2``) on a scaling cohort's TSVs.

    Per-rule seconds and peak RSS come from the rules' own ``benchmark:`` files, so
    the figures are what a user of the workflow sees, TSV reading and writing included.
    """
    import pandas as pd
    import yaml

    run_dir = outdir / f"workflow_{workdir.name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = {
        "samples": str(workdir / "samples.tsv"),
        "counts": {"format": "matrix", "path": str(workdir / "counts.tsv")},
        "lengths": str(workdir / "lengths.tsv"),
        "outdir": "results/bench",
        "filter": {"method": "filterByExpr", "group": "condition"},
        "normalization": {"method": "TMM"},
        "batch_correction": {"method": "combat", "batch": "batch", "covariates": ["condition"]},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-s", str(BENCH.parent / "Snakefile"), "-d", str(run_dir)]
    command += ["--configfile", str(run_dir / "config.yaml"), "--cores", "2", "--nocolor"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=6 * WORKER_TIMEOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"status": "error", "reason": f"snakemake failed: {tail}"}
    rules = {}
    for path in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        row = pd.read_csv(path, sep="\t").iloc[0]
        rules[path.stem] = {"seconds": float(row["s"]), "max_rss_mb": float(row["max_rss"])}
    shutil.rmtree(run_dir / "results", ignore_errors=True)
    return {"status": "ok", "wall_seconds": wall, "rules": rules, "meta": read_meta(workdir)}


def workflow_section(run: dict[str, Any] | None) -> list[str]:
    if not run:
        return []
    if run.get("status") != "ok":
        return ["## The workflow itself", "", f"Not measured: {status_text(run)}.", ""]
    meta = run["meta"]
    g, s = meta["n_genes"], meta["n_samples"]
    dense = dense_mb((g, s))
    lines = [
        f"## The workflow itself: `snakemake --cores 2` on {g:,} genes × {s:,} samples",
        "",
        "The same TSV through every rule (TMM, ComBat on ~condition, QC of three stages), "
        "as a user runs it: reading and writing the TSV tables included. Seconds and peak "
        "RSS of each job from its `benchmark:` file; jobs run two at a time where the "
        f"graph allows. Whole run: **{run['wall_seconds']:.0f} s** wall-clock; dense "
        f"float64 raw matrix {dense:,.0f} MiB.",
        "",
        "| rule | seconds | peak RSS | × dense |",
        "|---|---|---|---|",
    ]
    for rule, rec in run["rules"].items():
        lines.append(
            f"| {rule} | {rec['seconds']:.1f} | {rec['max_rss_mb']:,.0f} MiB | "
            f"{rec['max_rss_mb'] / dense:.2f}× |"
        )
    return [*lines, ""]
