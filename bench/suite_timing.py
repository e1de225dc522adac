"""Timing protocol: fresh worker processes under /usr/bin/time, R peers through Rscript."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suite_common import BENCH, FRESH_BUDGET_S, FRESH_RUNS, WORKER_TIMEOUT, loglog_slope


def run_stage(stage: str, workdir: Path, genes: int | None = None) -> dict[str, Any]:
    """Time ``stage`` as a workflow rule meets it: the first call in a fresh process.

    Up to :data:`FRESH_RUNS` fresh processes while their calls add up to less than
    :data:`FRESH_BUDGET_S`; the record is the fastest run, with every run's seconds in
    ``all_seconds`` and the largest peak RSS. One protocol at every size, so that a
    slope over sizes compares like with like (a warm second call in the same process
    skips the page faults of first-touch memory and is several times faster for the
    cheapest stages).
    """
    best: dict[str, Any] | None = None
    seconds: list[float] = []
    peak = 0.0
    for _ in range(FRESH_RUNS):
        record = _run_worker(stage, workdir, genes)
        if record.get("status") != "ok":
            return record if best is None else best
        seconds.append(record["seconds"])
        peak = max(peak, record.get("peak_rss_mb", 0.0))
        if best is None or record["seconds"] < best["seconds"]:
            best = record
        if sum(seconds) >= FRESH_BUDGET_S:
            break
    assert best is not None
    best["all_seconds"] = seconds
    if peak:
        best["peak_rss_mb"] = peak
    return best


def _run_worker(stage: str, workdir: Path, genes: int | None = None) -> dict[str, Any]:
    """Run ``stage`` once in a subprocess under ``/usr/bin/time -v``; return its record."""
    out = workdir / f"stage_{stage}{'' if genes is None else f'_{genes}'}.json"
    timefile = out.with_suffix(".time")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(BENCH / "run_benchmarks.py"), "--worker", stage]
    cmd += ["--workdir", str(workdir), "--repeats", "1", "--json", str(out)]
    if genes is not None:
        cmd += ["--worker-genes", str(genes)]
    use_time = Path("/usr/bin/time").exists()
    if use_time:
        cmd = ["/usr/bin/time", "-v", "-o", str(timefile), *cmd]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"stage": stage, "status": "timeout", "reason": f">{WORKER_TIMEOUT} s"}
    wall = time.perf_counter() - start
    if not out.exists():
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return {"stage": stage, "status": "error", "reason": f"worker died: {' | '.join(tail)}"}
    record = json.loads(out.read_text())
    record["process_wall_seconds"] = wall
    if use_time and timefile.exists():
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
        if match:
            record["peak_rss_mb"] = int(match.group(1)) / 1024
    if genes is not None:
        record["genes_subset"] = genes
    return record


def run_r(
    workdir: Path, tasks: list[str], repeats: int, nonpar_genes: list[int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Time R tasks on ``workdir``'s files; returns task → list of records."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {t: [{"status": "not available", "reason": "Rscript not on PATH"}] for t in tasks}
    out = workdir / f"r_{'_'.join(sorted({t.split('_')[0] for t in tasks}))}.tsv"
    cmd = [rscript, str(BENCH / "peers_r.R"), f"counts={workdir / 'counts.tsv'}"]
    cmd += [f"samples={workdir / 'samples.tsv'}", f"out={out}", f"tasks={','.join(tasks)}"]
    cmd += [f"repeats={repeats}", f"logcpm={workdir / 'logcpm.tsv'}"]
    if nonpar_genes:
        cmd.append(f"nonpar_genes={','.join(map(str, nonpar_genes))}")
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", "-o", str(out.with_suffix(".time")), *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {t: [{"status": "timeout", "reason": f">{3 * WORKER_TIMEOUT} s"}] for t in tasks}
    if proc.returncode != 0 or not out.exists():
        reason = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
        return {t: [{"status": "error", "reason": f"Rscript failed: {reason}"}] for t in tasks}
    peak = None
    timefile = out.with_suffix(".time")
    if timefile.exists():
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
        peak = int(match.group(1)) / 1024 if match else None
    import pandas as pd

    table = pd.read_csv(out, sep="\t", keep_default_na=True)
    result: dict[str, list[dict[str, Any]]] = {}
    for row in table.itertuples(index=False):
        ok = not (isinstance(row.seconds, float) and math.isnan(row.seconds))
        rec = {
            "status": "ok" if ok else "error",
            "seconds": float(row.seconds) if ok else None,
            "input_shape": [int(row.n_genes), int(row.n_samples)],
            "reason": "" if not isinstance(row.note, str) else row.note,
            "r_process_peak_rss_mb": peak,
        }
        result.setdefault(row.task, []).append(rec)
    for t in tasks:
        result.setdefault(t, [{"status": "error", "reason": "no row written by peers_r.R"}])
    return result


def extrapolate(records: list[dict[str, Any]], n_genes: int) -> dict[str, Any]:
    """Quadratic extrapolation in genes from the largest successful subset."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("input_shape")]
    if not ok:
        return records[-1] if records else {"status": "not run", "reason": "no subsets"}
    best = max(ok, key=lambda r: r["input_shape"][0])
    g = best["input_shape"][0]
    if g >= n_genes:
        return best
    xs = [r["input_shape"][0] for r in ok]
    exponent = loglog_slope(xs, [r["seconds"] for r in ok])
    seconds = best["seconds"] * (n_genes / g) ** 2
    note = f"quadratic from {g:,} genes"
    if exponent is not None:
        note += f"; measured exponent {exponent:.2f}"
    return {**best, "seconds": seconds, "extrapolated": note, "measured_seconds": best["seconds"]}


def earlier_peers(part: Path) -> dict[str, dict[str, Any]]:
    """Peer records of an earlier invocation on the same (deterministic) matrix, marked."""
    earlier = json.loads(part.read_text())
    when = earlier.get("meta", {}).get("date", "an earlier invocation")
    out: dict[str, dict[str, Any]] = {}
    for stage, recs in earlier.get("peers", {}).items():
        for name, rec in recs.items():
            out.setdefault(stage, {})[name] = {**rec, "reused_from": when}
    return out
