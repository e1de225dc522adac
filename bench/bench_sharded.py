"""The sharded mode against the in-memory path on one simulated cohort.

Simulates a cohort (``bench/simulate.py``), runs the real workflow twice on the same
files, in memory and with ``sharding.samples_per_shard`` (TMM, parametric ComBat on
~condition, TPM; VST off, which the sharded mode refuses), then compares every matrix
deliverable and the size factors cell by cell and prints, for the sharded run, the time
and peak memory per kind of job (each per-shard step's largest and summed job), from the
rules' ``benchmark:`` files::

    .venv/bin/python bench/bench_sharded.py --genes 20000 --samples 2000 --shards 10

``--json`` also writes the summary (used for ``docs/scale.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from simulate import simulate_cohort, write_cohort  # noqa: E402
from suite_workflow import bench_config, job_benchmarks, snakemake_command  # noqa: E402

from cohortnorm.io.tables import read_matrix  # noqa: E402

#: The deliverables compared between the two runs (matrices; size factors separately).
MATRICES = [
    "counts/filtered_counts",
    "normalization/logcpm",
    "normalization/cpm",
    "normalization/normalized_counts",
    "tpm/tpm",
    "batch/combat_logcpm",
]


def run_workflow(workdir: Path, name: str, sharding: dict[str, Any] | None) -> dict[str, Any]:
    """One ``snakemake --cores 2`` run on the cohort in ``workdir``; wall time and jobs."""
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    settings: dict[str, Any] = {
        "transforms": {"vst": {"enabled": False}},
        "io": {"keep_handoff": False},
    }
    if sharding:
        settings["sharding"] = sharding
    command = snakemake_command(run_dir, bench_config(workdir, "results", **settings))
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: snakemake failed:\n{proc.stderr[-3000:]}")
    results = run_dir / "results"
    jobs = job_benchmarks(results)
    return {"wall_seconds": wall, "jobs": jobs, "results": str(results)}


def compare(memory: Path, sharded: Path) -> list[dict[str, Any]]:
    """Each deliverable of the two runs: bitwise equal, else the largest relative gap."""
    rows = []
    for stem in MATRICES:
        a = read_matrix(memory / f"{stem}.tsv").to_numpy(dtype=np.float64)
        b = read_matrix(sharded / f"{stem}.tsv").to_numpy(dtype=np.float64)
        rows.append(_difference(stem, a, b))
    factors = [
        pd.read_csv(path / "normalization/size_factors.tsv", sep="\t", index_col=0)
        for path in (memory, sharded)
    ]
    columns = factors[0].select_dtypes("number").columns
    rows.append(
        _difference(
            "normalization/size_factors",
            factors[0][columns].to_numpy(dtype=np.float64),
            factors[1][columns].to_numpy(dtype=np.float64),
        )
    )
    return rows


def _difference(name: str, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    if a.shape != b.shape:
        return {"output": name, "shape": [a.shape, b.shape], "bitwise": False}
    gap = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    relative = np.divide(gap, scale, out=np.zeros_like(gap), where=scale > 0)
    return {
        "output": name,
        "shape": list(a.shape),
        "bitwise": bool(np.array_equal(a, b)),
        "max_abs": float(gap.max(initial=0.0)),
        "max_rel": float(relative.max(initial=0.0)),
    }


def job_kinds(jobs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Jobs grouped by kind: a shard's number (or a matrix stem) is dropped from the name."""
    kinds: dict[str, dict[str, float]] = {}
    for name, job in jobs.items():
        kind = re.sub(r"/\d+$", "", name)
        kind = re.sub(r"^(export|sharded/assemble)/.*", r"\1", kind)
        entry = kinds.setdefault(kind, {"jobs": 0, "max_s": 0.0, "sum_s": 0.0, "max_rss_mb": 0.0})
        entry["jobs"] += 1
        entry["max_s"] = max(entry["max_s"], job["seconds"])
        entry["sum_s"] += job["seconds"]
        entry["max_rss_mb"] = max(entry["max_rss_mb"], job["max_rss_mb"])
    return kinds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "sharded")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    workdir = args.out / f"g{args.genes}_s{args.samples}"
    if not (workdir / "counts.tsv").exists():
        write_cohort(simulate_cohort(args.genes, args.samples, seed=args.seed), workdir)
    per_shard = math.ceil(args.samples / args.shards)
    memory = run_workflow(workdir, "in_memory", None)
    sharded = run_workflow(workdir, "sharded", {"samples_per_shard": per_shard})
    rows = compare(Path(memory["results"]), Path(sharded["results"]))
    summary = {
        "genes": args.genes,
        "samples": args.samples,
        "samples_per_shard": per_shard,
        "in_memory_wall_s": memory["wall_seconds"],
        "sharded_wall_s": sharded["wall_seconds"],
        "in_memory_max_rss_mb": max(j["max_rss_mb"] for j in memory["jobs"].values()),
        "sharded_max_rss_mb": max(j["max_rss_mb"] for j in sharded["jobs"].values()),
        "equality": rows,
        "sharded_jobs": job_kinds(sharded["jobs"]),
    }
    print(
        f"{args.genes:,} × {args.samples:,}, {per_shard} samples per shard: in memory "
        f"{memory['wall_seconds']:.1f} s (largest job {summary['in_memory_max_rss_mb']:,.0f} "
        f"MiB), sharded {sharded['wall_seconds']:.1f} s (largest job "
        f"{summary['sharded_max_rss_mb']:,.0f} MiB)"
    )
    print("| output | shape | bitwise | max abs | max rel |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['output']} | {row['shape']} | {row['bitwise']} | "
            f"{row.get('max_abs', float('nan')):.3g} | {row.get('max_rel', float('nan')):.3g} |"
        )
    print("| sharded job kind | jobs | largest (s) | sum (s) | peak RSS |\n|---|---|---|---|---|")
    for kind, entry in sorted(summary["sharded_jobs"].items(), key=lambda kv: -kv[1]["sum_s"]):
        print(
            f"| {kind} | {entry['jobs']} | {entry['max_s']:.1f} | {entry['sum_s']:.1f} | "
            f"{entry['max_rss_mb']:,.0f} MiB |"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
