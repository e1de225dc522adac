"""The workflow itself, timed per rule on a simulated cohort."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suite_common import BENCH, WORKER_TIMEOUT, dense_mb, fmt_seconds, read_meta, status_text

#: "rule <name> finished in <seconds> s", the last line of every job's log (runner.run).
_FINISHED = re.compile(r"rule \S+ finished in ([0-9.]+) s")


def _job_logs(results: Path) -> dict[str, float]:
    """Seconds each job spent in its script's ``main`` (from its log), by log path
    relative to ``logs/`` without the suffix."""
    seconds = {}
    for path in (results / "logs").rglob("*.log"):
        found = _FINISHED.findall(path.read_text(errors="replace"))
        if found:
            seconds[str(path.relative_to(results / "logs").with_suffix(""))] = float(found[-1])
    return seconds


def bench_config(workdir: Path, outdir: str, **settings: Any) -> dict[str, Any]:
    """The benchmarks' workflow config for the simulated cohort in ``workdir``: TMM and
    parametric ComBat on ~condition; ``settings`` override or add top-level sections."""
    return {
        "samples": str(workdir / "samples.tsv"),
        "counts": {"format": "matrix", "path": str(workdir / "counts.tsv")},
        "lengths": str(workdir / "lengths.tsv"),
        "outdir": outdir,
        "filter": {"method": "filterByExpr", "group": "condition"},
        "normalization": {"method": "TMM"},
        "batch_correction": {"method": "combat", "batch": "batch", "covariates": ["condition"]},
        **settings,
    }


def snakemake_command(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """Write ``config`` into ``run_dir`` and return the ``snakemake --cores 2`` command
    that runs the workflow there."""
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-s", str(BENCH.parent / "Snakefile"), "-d", str(run_dir)]
    return [*command, "--configfile", str(run_dir / "config.yaml"), "--cores", "2", "--nocolor"]


def job_benchmarks(results: Path) -> dict[str, dict[str, float]]:
    """Each job's seconds and peak RSS from the rules' ``benchmark:`` files under an
    outdir, by path below ``benchmarks/`` without the suffix."""
    import pandas as pd

    jobs = {}
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        row = pd.read_csv(path, sep="\t").iloc[0]
        jobs[str(path.relative_to(results / "benchmarks").with_suffix(""))] = {
            "seconds": float(row["s"]),
            "max_rss_mb": float(row["max_rss"]),
        }
    return jobs


def workflow_run(
    workdir: Path,
    outdir: Path,
    *,
    matrix_format: str = "tsv",
    settings: dict[str, Any] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """Run the real workflow (``snakemake --cores 2``) on a scaling cohort's TSVs.

    Per-rule seconds and peak RSS come from the rules' own ``benchmark:`` files, so
    the figures are what a user of the workflow sees, TSV reading and writing included.
    Each job's ``main_seconds`` is the time its script spent in its own work (its log);
    the rest of the job's seconds is start-up: the interpreter, imports and Snakemake's
    script preamble. ``dag_seconds`` is a dry run (``-n``) of the same command:
    Snakemake's own start-up, config validation and DAG building, without any job.
    """
    run_dir = outdir / f"workflow_{workdir.name}{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = bench_config(
        workdir, "results/bench", **{"io": {"matrix_format": matrix_format}, **(settings or {})}
    )
    command = snakemake_command(run_dir, config)
    start = time.perf_counter()
    subprocess.run([*command, "-n", "-q"], capture_output=True, text=True, timeout=600)
    dag_seconds = time.perf_counter() - start
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=6 * WORKER_TIMEOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"status": "error", "reason": f"snakemake failed: {tail}"}
    results = run_dir / "results" / "bench"
    main_seconds = _job_logs(results)
    rules = job_benchmarks(results)
    for name, job in rules.items():
        log_name = "batch_correction" if name.startswith("batch_correction_") else name
        job["main_seconds"] = main_seconds.get(log_name)
    shutil.rmtree(run_dir / "results", ignore_errors=True)
    return {
        "status": "ok",
        "wall_seconds": wall,
        "dag_seconds": dag_seconds,
        "matrix_format": matrix_format,
        "rules": rules,
        "meta": read_meta(workdir),
    }


def r_script_run(workdir: Path) -> dict[str, Any]:
    """The plain R script (``workflow_vs_r.R``) on the same files, as one timed process."""
    out = workdir / "r_corrected.tsv"
    command = ["Rscript", str(BENCH / "workflow_vs_r.R")]
    command += [str(workdir / name) for name in ("counts.tsv", "samples.tsv", "lengths.tsv")]
    command.append(str(out))
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=6 * WORKER_TIMEOUT)
    except FileNotFoundError:
        return {"status": "unavailable", "reason": "Rscript not found"}
    wall = time.perf_counter() - start
    out.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"status": "error", "reason": f"R failed: {tail}"}
    return {"status": "ok", "wall_seconds": wall}


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


def workflow_vs_r_section(runs: list[dict[str, Any]] | None) -> list[str]:
    """The workflow against the plain R script, per cohort size: ratios and per-job table."""
    if not runs:
        return []
    lines = [
        "## The workflow against a plain R script (`workflow-vs-R`)",
        "",
        "One run, one after the other on the same files: the R script "
        "(`bench/workflow_vs_r.R`: read.delim, filterByExpr, calcNormFactors, cpm(log), "
        "TPM, sva ComBat ~condition, write the corrected matrix) as a process, then the whole "
        "`snakemake --cores 2` run with TSV deliverables and with Parquet (TMM, ComBat on "
        "~condition, QC of raw, normalized and batch-corrected values, VST off: the work of "
        "the R script plus every deliverable and figure), then the same numerics in one "
        "process (`e2e`: import, filter, TMM, logCPM, TPM, ComBat; no output written).",
        "",
        "| cohort | R script | workflow, TSV | ratio | workflow, Parquet | ratio | numerics "
        "in one process | TSV workflow / numerics | Snakemake DAG (dry run) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run["r"].get("wall_seconds")
        tsv = run["tsv"].get("wall_seconds")
        parquet = run["parquet"].get("wall_seconds")
        chain = run["e2e"].get("seconds")

        def ratio(value: float | None, base: float | None) -> str:
            return f"{value / base:.2f}×" if value and base else "—"

        lines.append(
            f"| {run['genes']:,} × {run['samples']:,} | {fmt_seconds(r)} | {fmt_seconds(tsv)} | "
            f"{ratio(tsv, r)} | {fmt_seconds(parquet)} | {ratio(parquet, r)} | "
            f"{fmt_seconds(chain)} | {ratio(tsv, chain)} | "
            f"{fmt_seconds(run['tsv'].get('dag_seconds'))} |"
        )
    lines.append("")
    for run in runs:
        for kind in ("tsv", "parquet"):
            rec = run[kind]
            if rec.get("status") != "ok":
                lines += [f"{kind} workflow not measured: {status_text(rec)}.", ""]
                continue
            jobs = rec["rules"]
            total = sum(j["seconds"] for j in jobs.values())
            startup = sum(j["seconds"] - (j["main_seconds"] or 0.0) for j in jobs.values())
            lines += [
                f"Per job, {run['genes']:,} × {run['samples']:,}, {kind}: {len(jobs)} jobs, "
                f"{total:.1f} s of job time in {rec['wall_seconds']:.1f} s wall on 2 cores; "
                f"{startup:.1f} s of it start-up (interpreter, imports, Snakemake's script "
                "preamble: job seconds less the script's own).",
                "",
                "| job | seconds | of which start-up | peak RSS |",
                "|---|---|---|---|",
            ]
            for name, job in sorted(jobs.items(), key=lambda item: -item[1]["seconds"]):
                own = job["main_seconds"]
                start = "—" if own is None else f"{job['seconds'] - own:.1f}"
                lines.append(
                    f"| {name} | {job['seconds']:.1f} | {start} | {job['max_rss_mb']:,.0f} MiB |"
                )
            lines.append("")
    return lines
