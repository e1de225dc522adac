"""One command for the cohortnorm benchmark suite (``make bench``).

For every cohort size it simulates a matrix with known truth (``bench/simulate.py``),
writes it as TSV with the project's writer, then times in the same run:

* our stages, each in its own subprocess under ``/usr/bin/time -v`` (peak RSS):
  import TSV, filterByExpr, TMM, TMMwsp, RLE, upper quartile, DESeq2 ratio, logCPM,
  TPM, parametric ComBat, and the issue-2 chain import+filter+TMM+logCPM+TPM;
* the peers on the same files: edgeR / DESeq2 / sva through ``Rscript bench/peers_r.R``
  (timed inside R, start-up excluded, file read reported separately), rnanorm,
  pydeseq2, inmoose and conorm, each in its own subprocess too.

The batch-correction comparison (issue 3) runs on its own cohort (default 20,000 ×
200, 3 batches): parametric and non-parametric ComBat and ComBat-seq against sva and
inmoose. R's non-parametric ComBat is quadratic in genes; it is timed on gene subsets
and extrapolated quadratically (labelled as such).

The accuracy study (issue 5 §3) compares estimated size factors with the simulated
truth and measures the recovery of true DE genes by a Welch t-test on logCPM.

A stage whose function is missing, or a peer that is absent or raises, is reported
with the reason, never skipped silently. Results: ``bench/out/full/results.json``,
``bench/out/full/results.md`` and the scaling plot (``quick/`` for ``--quick``). Parts
run in separate invocations are merged (``size_*.json``, ``combat.json``,
``accuracy.json`` in the output folder; ``--fresh`` discards them); a full run (not
``--quick``) also copies the tables to ``bench/RESULTS.md`` and the plot to ``bench/scaling.png``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from simulate import Cohort, simulate_cohort, write_cohort  # noqa: E402

#: Our stages run at every scaling size, in this order.
SCALING_STAGES = [
    "disk_read",
    "import",
    "filter",
    "tmm",
    "tmmwsp",
    "rle",
    "uq",
    "deseq2_ratio",
    "logcpm",
    "tpm",
    "combat_par",
    "chain",
    "e2e",
]
#: Our stages of the batch-correction comparison.
COMBAT_STAGES = ["combat_par", "combat_nonpar", "combat_seq"]
#: Python peers per stage (R peers come from peers_r.R).
PY_PEERS: dict[str, list[str]] = {
    "tmm": ["rnanorm_tmm", "conorm_tmm"],
    "uq": ["rnanorm_uq"],
    "deseq2_ratio": ["pydeseq2_ratio", "conorm_mrn"],
    "logcpm": ["rnanorm_cpm"],
    "tpm": ["rnanorm_tpm"],
    "combat_par": ["inmoose_combat_par"],
    "combat_nonpar": ["inmoose_combat_nonpar"],
    "combat_seq": ["inmoose_combat_seq"],
}
#: R task per stage.
R_PEERS: dict[str, str] = {
    "import": "read",
    "filter": "filterByExpr",
    "tmm": "calcNormFactors_TMM",
    "tmmwsp": "calcNormFactors_TMMwsp",
    "rle": "calcNormFactors_RLE",
    "uq": "calcNormFactors_upperquartile",
    "deseq2_ratio": "DESeq2_ratio",
    "logcpm": "cpm_log",
    "combat_par": "ComBat_par",
    "combat_nonpar": "ComBat_nonpar",
    "combat_seq": "ComBat_seq",
}
R_SCALING_TASKS = [
    "filterByExpr",
    "calcNormFactors_TMM",
    "calcNormFactors_TMMwsp",
    "calcNormFactors_RLE",
    "calcNormFactors_upperquartile",
    "cpm_log",
    "DESeq2_ratio",
]
PEER_LABEL = {
    "read": "R data.table::fread",
    "filterByExpr": "edgeR filterByExpr",
    "calcNormFactors_TMM": "edgeR calcNormFactors TMM",
    "calcNormFactors_TMMwsp": "edgeR calcNormFactors TMMwsp",
    "calcNormFactors_RLE": "edgeR calcNormFactors RLE",
    "calcNormFactors_upperquartile": "edgeR calcNormFactors UQ",
    "cpm_log": "edgeR cpm(log=TRUE)",
    "DESeq2_ratio": "DESeq2 estimateSizeFactorsForMatrix",
    "ComBat_par": "sva ComBat",
    "ComBat_nonpar": "sva ComBat(par.prior=FALSE)",
    "ComBat_seq": "sva ComBat_seq",
    "rnanorm_tmm": "rnanorm TMM",
    "rnanorm_uq": "rnanorm UQ",
    "rnanorm_cpm": "rnanorm CPM (not log)",
    "rnanorm_tpm": "rnanorm TPM",
    "pydeseq2_ratio": "pydeseq2 deseq2_norm",
    "conorm_tmm": "conorm tmm_norm_factors",
    "conorm_mrn": "conorm mrn_norm_factors",
    "inmoose_combat_par": "inmoose pycombat_norm",
    "inmoose_combat_nonpar": "inmoose pycombat_norm(par_prior=False)",
    "inmoose_combat_seq": "inmoose pycombat_seq",
}
WORKER_TIMEOUT = 600
# run_stage: fresh processes per figure, while their calls add up to less than the budget.
FRESH_RUNS = 3
FRESH_BUDGET_S = 10.0


class Unavailable(Exception):
    """A function needed by a stage is missing (module or attribute)."""


# --------------------------------------------------------------------------- worker


def _resolve(module: str, name: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except Exception as error:
        raise Unavailable(f"import {module} failed: {type(error).__name__}: {error}") from None
    if not hasattr(mod, name):
        raise Unavailable(f"{module}.{name} does not exist")
    return getattr(mod, name)


def _as_matrix(value: Any, dtype: type | None = np.float64) -> np.ndarray:
    """A genes × samples ndarray from whatever an importer returns (no copy if dtype=None)."""
    for attr in ("counts", "matrix"):
        if not isinstance(value, np.ndarray) and hasattr(value, attr):
            value = getattr(value, attr)
            break
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=dtype)


def _adjusted(value: Any) -> Any:
    return getattr(value, "adjusted", value)


def _load(workdir: Path, name: str) -> Any:
    return np.load(workdir / f"{name}.npy", allow_pickle=False)


def _meta(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "meta.json").read_text())


def _design(condition: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(condition.size), (condition == "B").astype(float)])


def _subset(matrix: np.ndarray, genes: int | None) -> np.ndarray:
    return matrix if genes is None else np.ascontiguousarray(matrix[:genes])


def _setup_stage(
    stage: str, workdir: Path, genes: int | None
) -> tuple[Callable[[], Any], tuple[int, int]]:
    """Load the inputs of ``stage`` (untimed) and return a zero-argument call."""
    meta = _meta(workdir)
    condition = np.asarray(meta["condition"])
    batch = np.asarray(meta["batch"])
    tsv = str(workdir / "counts.tsv")
    raw_shape = (meta["n_genes"], meta["n_samples"])

    if stage == "disk_read":

        def read_bytes() -> int:
            # Evict this file (only) from the page cache so that the read is from disk.
            with open(tsv, "rb", buffering=0) as handle:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                total = 0
                while chunk := handle.read(1 << 24):
                    total += len(chunk)
            return total

        return read_bytes, raw_shape
    if stage == "import":
        fn = _resolve("cohortnorm.io.importers", "import_counts")
        return (lambda: fn("matrix", tsv)), raw_shape
    if stage in ("chain", "e2e"):
        # chain: issue 2's import → filter → TMM → logCPM + TPM. e2e: issue 5's path, the
        # chain then parametric ComBat, keeping only what the next step needs (every rule
        # of the workflow is its own process).
        imp = _resolve("cohortnorm.io.importers", "import_counts")
        read_table = _resolve("cohortnorm.io.tables", "read_table")
        fil = _resolve("cohortnorm.edger", "filter_by_expr")
        cnf = _resolve("cohortnorm.edger", "calc_norm_factors")
        cpm = _resolve("cohortnorm.edger", "cpm")
        tpm = _resolve("cohortnorm.expression", "tpm")
        combat = _resolve("cohortnorm.combat", "combat") if stage == "e2e" else None
        lengths_path = str(workdir / "lengths.tsv")
        design = _design(condition)

        def chain() -> Any:
            counts = _as_matrix(imp("matrix", tsv), dtype=None)
            lengths = read_table(lengths_path, string_columns=["gene_id"])["length"].to_numpy()
            keep = np.asarray(fil(counts, group=condition), dtype=bool)
            filtered = counts[keep]
            del counts
            lib = filtered.sum(axis=0)
            nf = np.asarray(cnf(filtered, method="TMM", lib_size=lib))
            logcpm = cpm(filtered, lib * nf, log=True, prior_count=2.0)
            tpm_values = tpm(filtered, lengths[keep].astype(float))
            if combat is None:
                return logcpm, tpm_values
            del tpm_values, filtered
            return _adjusted(combat(logcpm, batch, covariates=design, parametric=True))

        return chain, raw_shape
    if stage == "filter":
        fn = _resolve("cohortnorm.edger", "filter_by_expr")
        counts = _load(workdir, "counts")
        return (lambda: fn(counts, group=condition)), counts.shape
    if stage in ("tmm", "tmmwsp", "rle", "uq"):
        fn = _resolve("cohortnorm.edger", "calc_norm_factors")
        method = {"tmm": "TMM", "tmmwsp": "TMMwsp", "rle": "RLE", "uq": "upperquartile"}[stage]
        filtered = _load(workdir, "filtered")
        return (lambda: fn(filtered, method=method)), filtered.shape
    if stage == "deseq2_ratio":
        fn = _resolve("cohortnorm.deseq2", "size_factors")
        filtered = _load(workdir, "filtered")
        return (lambda: fn(filtered, type="ratio")), filtered.shape
    if stage == "logcpm":
        fn = _resolve("cohortnorm.edger", "cpm")
        filtered = _load(workdir, "filtered")
        eff = _load(workdir, "effective_lib_size")
        return (lambda: fn(filtered, eff, log=True, prior_count=2.0)), filtered.shape
    if stage == "tpm":
        fn = _resolve("cohortnorm.expression", "tpm")
        filtered = _load(workdir, "filtered")
        lengths = _load(workdir, "filtered_lengths")
        return (lambda: fn(filtered, lengths)), filtered.shape
    if stage in ("combat_par", "combat_nonpar"):
        fn = _resolve("cohortnorm.combat", "combat")
        data = _subset(_load(workdir, "logcpm"), genes)
        design = _design(condition)
        par = stage == "combat_par"
        return (lambda: _adjusted(fn(data, batch, covariates=design, parametric=par))), data.shape
    if stage == "combat_seq":
        fn = _resolve("cohortnorm.combat_seq", "combat_seq")
        filtered = _subset(_load(workdir, "filtered"), genes)
        return (lambda: _adjusted(fn(filtered, batch, group=condition))), filtered.shape

    # Python peers -------------------------------------------------------------
    if stage.startswith("rnanorm_"):
        import pandas as pd

        rnanorm = importlib.import_module("rnanorm")
        filtered = _load(workdir, "filtered")
        x = pd.DataFrame(filtered.T, columns=[f"g{i}" for i in range(filtered.shape[0])])
        if stage == "rnanorm_tmm":
            return (lambda: rnanorm.TMM().fit(x).get_norm_factors(x)), filtered.shape
        if stage == "rnanorm_uq":
            return (lambda: rnanorm.UQ().fit(x).get_norm_factors(x)), filtered.shape
        if stage == "rnanorm_cpm":
            return (lambda: rnanorm.CPM().fit_transform(x)), filtered.shape
        lengths = pd.Series(_load(workdir, "filtered_lengths"), index=x.columns)
        return (lambda: rnanorm.TPM(gene_lengths=lengths).fit_transform(x)), filtered.shape
    if stage == "pydeseq2_ratio":
        import pandas as pd

        deseq2_norm = _resolve("pydeseq2.preprocessing", "deseq2_norm")
        filtered = _load(workdir, "filtered")
        x = pd.DataFrame(filtered.T)
        return (lambda: deseq2_norm(x)), filtered.shape
    if stage.startswith("conorm_"):
        import pandas as pd

        conorm = importlib.import_module("conorm")
        filtered = pd.DataFrame(_load(workdir, "filtered"))
        fn = conorm.tmm_norm_factors if stage == "conorm_tmm" else conorm.mrn_norm_factors
        return (lambda: fn(filtered)), filtered.shape
    if stage.startswith("inmoose_"):
        module = "inmoose.pycombat"
        if stage == "inmoose_combat_seq":
            fn = _resolve(module, "pycombat_seq")
            counts = _subset(_load(workdir, "filtered"), genes)
            return (lambda: fn(counts, list(batch), covar_mod=list(condition))), counts.shape
        fn = _resolve(module, "pycombat_norm")
        data = _subset(_load(workdir, "logcpm"), genes)
        par = stage == "inmoose_combat_par"
        return (lambda: fn(data, list(batch), covar_mod=list(condition), par_prior=par)), data.shape
    raise Unavailable(f"unknown stage {stage!r}")


def worker(stage: str, workdir: Path, repeats: int, genes: int | None, out: Path) -> None:
    """Run one stage ``repeats`` times in this process and write a JSON record."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    # The malloc setting every workflow script makes (cohortnorm.runner.run), given to
    # the Python peers' processes too, so that no one pays page faults the others avoid.
    _resolve("cohortnorm.runner", "reuse_freed_memory")()
    record: dict[str, Any] = {"stage": stage}
    try:
        call, shape = _setup_stage(stage, workdir, genes)
        record["input_shape"] = list(shape)
        record["rss_after_load_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        record.update(status="ok", seconds=min(times), all_seconds=times)
    except Unavailable as error:
        record.update(status="not available", reason=str(error))
    except Exception as error:
        tb = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        record.update(status="error", reason=f"{type(error).__name__}: {error} ({where})")
    out.write_text(json.dumps(record))


# --------------------------------------------------------------------------- driver


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
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", stage]
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


def _filter_fallback(counts: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """edgeR filterByExpr defaults in numpy, used only to prepare inputs if ours is missing."""
    lib = counts.sum(axis=0)
    min_size = float(min(np.sum(condition == g) for g in np.unique(condition)))
    if min_size > 10:
        min_size = 10 + (min_size - 10) * 0.7
    cutoff = 10 / np.median(lib) * 1e6
    big = ((counts / lib * 1e6) >= cutoff).sum(axis=1) >= min_size - 1e-14
    return big & (counts.sum(axis=1) >= 15 - 1e-14)


def _logcpm(counts: np.ndarray, lib: np.ndarray, prior: float = 2.0) -> np.ndarray:
    """edgeR ``cpm(log=TRUE)`` formula (docs/methods.md §2), for preparing ComBat inputs."""
    p = prior * lib / lib.mean()
    # In place: one result array, no temporaries the size of the matrix.
    result = counts + p
    np.log(result, out=result)
    result -= np.log(lib + 2 * p) - np.log(1e6)
    result /= np.log(2)
    return result


def prepare(
    workdir: Path, cohort: Cohort, *, logcpm_tsv: bool, filter_genes: bool = True
) -> dict[str, Any]:
    """Write the cohort's TSVs and the .npy inputs of every stage; return notes.

    With ``filter_genes=False`` (the ComBat cohort, so that ComBat sees the issue's
    full gene count) the downstream inputs hold every gene.
    """
    from cohortnorm.io.tables import write_matrix

    workdir.mkdir(parents=True, exist_ok=True)
    notes: dict[str, Any] = {}
    start = time.perf_counter()
    write_cohort(cohort, workdir)
    notes["write_tsv_seconds"] = time.perf_counter() - start
    notes["tsv_bytes"] = (workdir / "counts.tsv").stat().st_size
    # The stages read float64 counts; written block by block from the int32 simulation
    # so that a 60,000 × 17,000 cohort never holds a second dense copy here.
    counts = cohort.counts
    stored = np.lib.format.open_memmap(
        workdir / "counts.npy", mode="w+", dtype=np.float64, shape=counts.shape
    )
    for start in range(0, counts.shape[0], 4096):
        stored[start : start + 4096] = counts[start : start + 4096]
    stored.flush()
    del stored
    condition = cohort.samples["condition"].to_numpy()
    if not filter_genes:
        keep = np.ones(counts.shape[0], dtype=bool)
        notes["filter_source"] = "no filter: every gene"
    else:
        try:
            fil = _resolve("cohortnorm.edger", "filter_by_expr")
            keep = np.asarray(fil(counts, group=condition), dtype=bool)
            notes["filter_source"] = "cohortnorm.edger.filter_by_expr"
        except Unavailable as error:
            keep = _filter_fallback(counts, condition)
            notes["filter_source"] = f"numpy fallback ({error})"
    filtered = counts[keep].astype(np.float64)
    del counts
    np.save(workdir / "filtered.npy", filtered)
    np.save(workdir / "filtered_lengths.npy", cohort.lengths[keep].astype(np.float64))
    lib = filtered.sum(axis=0)
    try:
        cnf = _resolve("cohortnorm.edger", "calc_norm_factors")
        nf = np.asarray(cnf(filtered, method="TMM"), dtype=float)
        notes["norm_source"] = "cohortnorm TMM"
    except Unavailable as error:
        nf = np.ones(filtered.shape[1])
        notes["norm_source"] = f"none ({error})"
    np.save(workdir / "effective_lib_size.npy", lib * nf)
    logcpm = _logcpm(filtered, lib * nf)
    np.save(workdir / "logcpm.npy", logcpm)
    if logcpm_tsv:
        write_matrix(
            logcpm, np.asarray(cohort.gene_ids)[keep], cohort.sample_ids, workdir / "logcpm.tsv"
        )
    meta = {
        "n_genes": int(cohort.counts.shape[0]),
        "n_samples": int(cohort.counts.shape[1]),
        "n_kept": int(keep.sum()),
        "condition": condition.tolist(),
        "batch": cohort.samples["batch"].tolist(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **notes,
    }
    (workdir / "meta.json").write_text(json.dumps(meta))
    return meta


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
    return {"status": "ok", "wall_seconds": wall, "rules": rules, "meta": _meta(workdir)}


def _workflow_section(run: dict[str, Any] | None) -> list[str]:
    if not run:
        return []
    if run.get("status") != "ok":
        return ["## The workflow itself", "", f"Not measured: {_status(run)}.", ""]
    meta = run["meta"]
    g, s = meta["n_genes"], meta["n_samples"]
    dense = _dense_mb((g, s))
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


def _dense_mb(shape: list[int] | tuple[int, int]) -> float:
    return shape[0] * shape[1] * 8 / 2**20


def _best_peer(records: dict[str, Any]) -> tuple[str, float] | None:
    ok = [(k, v["seconds"]) for k, v in records.items() if v.get("status") == "ok"]
    return min(ok, key=lambda kv: kv[1]) if ok else None


# --------------------------------------------------------------------------- accuracy


def accuracy(n_genes: int, n_samples: int, seed: int) -> list[dict[str, Any]]:
    """Size-factor rank correlation and DE recovery per normalization (issue 5 §3)."""
    from scipy import stats

    cohort = simulate_cohort(n_genes, n_samples, seed=seed)
    counts = cohort.counts.astype(np.float64)
    condition = cohort.samples["condition"].to_numpy()
    try:
        fil = _resolve("cohortnorm.edger", "filter_by_expr")
        keep = np.asarray(fil(counts, group=condition), dtype=bool)
    except Unavailable:
        keep = _filter_fallback(counts, condition)
    filtered = counts[keep]
    lib = filtered.sum(axis=0)
    de = cohort.de[keep]
    truth = cohort.true_size_factors
    rows: list[dict[str, Any]] = []
    methods = [
        "TMM",
        "TMMwsp",
        "RLE",
        "upperquartile",
        "DESeq2 ratio",
        "none",
        "TMM (rnanorm)",
        "upperquartile (rnanorm)",
        "DESeq2 ratio (pydeseq2)",
    ]
    for method in methods:
        row: dict[str, Any] = {"method": method}
        try:
            if method == "none":
                eff = lib.copy()
            elif method.endswith("(rnanorm)"):
                import pandas as pd

                rnanorm = importlib.import_module("rnanorm")
                x = pd.DataFrame(filtered.T)
                x.columns = x.columns.astype(str)
                est = rnanorm.TMM() if method.startswith("TMM") else rnanorm.UQ()
                eff = lib * np.asarray(est.fit(x).get_norm_factors(x), dtype=float)
            elif method.endswith("(pydeseq2)"):
                import pandas as pd

                deseq2_norm = _resolve("pydeseq2.preprocessing", "deseq2_norm")
                eff = np.asarray(deseq2_norm(pd.DataFrame(filtered.T))[1], dtype=float)
            elif method == "DESeq2 ratio":
                sf = _resolve("cohortnorm.deseq2", "size_factors")
                eff = np.asarray(sf(filtered, type="ratio"), dtype=float)
            else:
                cnf = _resolve("cohortnorm.edger", "calc_norm_factors")
                eff = lib * np.asarray(cnf(filtered, method=method), dtype=float)
        except Unavailable as error:
            rows.append({**row, "status": f"not available: {error}"})
            continue
        except Exception as error:
            rows.append({**row, "status": f"error: {type(error).__name__}: {error}"})
            continue
        row["spearman"] = float(stats.spearmanr(eff, truth).statistic)
        row["log_rmse"] = float(
            np.sqrt(np.mean((np.log(eff / truth) - np.mean(np.log(eff / truth))) ** 2))
        )
        # The effective library sizes enter logCPM exactly as edgeR's cpm() uses them;
        # a DESeq2 size factor is rescaled to the mean library size first.
        eff_lib = eff / np.mean(eff) * np.mean(lib)
        logcpm = _logcpm(filtered, eff_lib)
        test = stats.ttest_ind(
            logcpm[:, condition == "B"], logcpm[:, condition == "A"], axis=1, equal_var=False
        )
        padj = stats.false_discovery_control(np.nan_to_num(test.pvalue, nan=1.0))
        called = padj < 0.05
        tp = int(np.sum(called & de))
        row.update(
            status="ok",
            n_called=int(called.sum()),
            sensitivity=tp / max(int(de.sum()), 1),
            observed_fdr=(int(called.sum()) - tp) / max(int(called.sum()), 1),
        )
        rows.append(row)
    meta = {
        "n_genes": n_genes,
        "n_samples": n_samples,
        "n_kept": int(keep.sum()),
        "n_de_kept": int(de.sum()),
        "n_de_total": int(cohort.de.sum()),
    }
    return [{"_meta": meta}, *rows]


# --------------------------------------------------------------------------- report


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g} s" if value >= 0.01 else f"{value * 1000:.3g} ms"


def _status(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "not run"
    if rec.get("status") == "ok":
        reused = f" (run of {rec['reused_from']})" if rec.get("reused_from") else ""
        return _fmt_s(rec["seconds"]) + reused
    return f"{rec.get('status')}: {rec.get('reason', '')}".replace("|", "/")[:160]


def _slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def report(results: dict[str, Any], outdir: Path, publish: bool) -> str:
    """Render results.md (and the scaling plot); return the markdown."""
    lines: list[str] = []
    env = results["environment"]
    lines += [
        "# cohortnorm benchmark results",
        "",
        f"Machine: {env['cpus']} cores, {env['mem_gib']:.0f} GiB RAM, {env['platform']}; "
        f"Python {env['python']}, numpy {env['numpy']}; {env['r']}. "
        f"Generated {env['date']} by `{env['command']}`.",
        "",
        "Times are wall-clock seconds of the call alone, inputs loaded before the clock "
        "starts. Ours and the Python peers: the first call in a fresh process (what a "
        "workflow rule pays), fastest of up to 3 fresh processes while they add up to "
        "< 10 s. R: `system.time` inside R, best of 3 calls in one R session for "
        "matrices up to 2·10⁷ entries (a warm call: generous to R), start-up and file "
        "read excluded unless the row says so). Peak RSS is `/usr/bin/time -v` of the "
        "stage's own subprocess (interpreter + inputs + work); *× dense* divides it by "
        "the dense float64 size of the raw genes × samples matrix.",
        "",
    ]
    missing: dict[str, str] = {}
    for part in [*results["sizes"], results.get("combat") or {"ours": {}}]:
        for stage, rec in part["ours"].items():
            if rec.get("status") != "ok":
                missing.setdefault(stage, f"{rec.get('status')}: {rec.get('reason', '')}")
    if missing:
        lines += [
            "**Our stages without a figure in this report** (function missing or failing "
            "when the run was made; rerun `make bench` to fill them in):",
            "",
            *(f"- {stage}: {why}" for stage, why in missing.items()),
            "",
        ]
    for size in results["sizes"]:
        meta = size["meta"]
        g, s = meta["n_genes"], meta["n_samples"]
        dense = _dense_mb((g, s))
        lines += [
            f"## {g:,} genes × {s:,} samples",
            "",
            f"TSV {meta['tsv_bytes'] / 2**20:,.0f} MiB written in "
            f"{meta['write_tsv_seconds']:.1f} s; {meta['n_kept']:,} genes kept by the "
            f"filter ({meta['filter_source']}); dense float64 raw matrix {dense:,.0f} MiB.",
            "",
            "| stage | ours | peak RSS (× dense) | fastest peer | peer / ours | all peers |",
            "|---|---|---|---|---|---|",
        ]
        for stage, rec in size["ours"].items():
            peers = size["peers"].get(stage, {})
            best = _best_peer(peers)
            ratio = "—"
            if best and rec.get("status") == "ok" and rec["seconds"] > 0:
                ratio = f"{best[1] / rec['seconds']:.2f}×"
            rss = rec.get("peak_rss_mb") if rec.get("status") == "ok" else None
            rss_s = f"{rss:,.0f} MiB ({rss / dense:.2f}×)" if rss else "—"
            peer_s = "; ".join(f"{PEER_LABEL.get(k, k)}: {_status(v)}" for k, v in peers.items())
            lines.append(
                f"| {stage} | {_status(rec)} | {rss_s} | "
                f"{PEER_LABEL.get(best[0], best[0]) + ' ' + _fmt_s(best[1]) if best else '—'} | "
                f"{ratio} | {peer_s or '—'} |"
            )
        lines.append("")

    # Scaling ------------------------------------------------------------------
    by_stage: dict[str, list[tuple[int, float]]] = {}
    for size in results["sizes"]:
        s = size["meta"]["n_samples"]
        for stage, rec in size["ours"].items():
            if rec.get("status") == "ok":
                by_stage.setdefault(stage, []).append((s, rec["seconds"]))
    slopes = {k: _slope([p[0] for p in v], [p[1] for p in v]) for k, v in by_stage.items()}
    if len(results["sizes"]) > 1:
        lines += [
            "## Scaling in the number of samples",
            "",
            f"Genes fixed at {results['sizes'][0]['meta']['n_genes']:,}; slope of log10(time) "
            "against log10(samples) by least squares over all sizes, and between the two largest "
            "(fixed per-call overheads flatten the small sizes; 1 = linear). Plot: `scaling.png`.",
            "",
            "| stage | "
            + " | ".join(f"{s['meta']['n_samples']:,}" for s in results["sizes"])
            + " | slope (all) | slope (two largest) |",
            "|---|" + "---|" * (len(results["sizes"]) + 2),
        ]
        for stage, pts in by_stage.items():
            cells = dict(pts)
            row = " | ".join(_fmt_s(cells.get(s["meta"]["n_samples"])) for s in results["sizes"])
            sl = slopes[stage]
            tail = _slope(*map(list, zip(*sorted(pts)[-2:], strict=True))) if len(pts) > 1 else None
            lines.append(
                f"| {stage} | {row} | {'—' if sl is None else f'{sl:.2f}'} | "
                f"{'—' if tail is None else f'{tail:.2f}'} |"
            )
        lines.append("")
        _plot(by_stage, slopes, outdir / "scaling.png")
        if publish:
            shutil.copy(outdir / "scaling.png", BENCH / "scaling.png")

    # Batch correction -----------------------------------------------------------
    if results.get("combat"):
        cb = results["combat"]
        meta = cb["meta"]
        lines += [
            f"## Batch correction: {meta['n_genes']:,} genes × {meta['n_samples']:,} samples, "
            f"3 batches ({meta['n_kept']:,} genes: {meta['filter_source']}; ComBat on "
            "logCPM with TMM, ComBat-seq on counts; design ~condition)",
            "",
            "| stage | ours | peak RSS | sva | sva / ours | inmoose | inmoose / ours |",
            "|---|---|---|---|---|---|---|",
        ]
        for stage, rec in cb["ours"].items():
            sva = cb["peers"].get(stage, {}).get(R_PEERS[stage])
            inm = cb["peers"].get(stage, {}).get(PY_PEERS[stage][0])
            cells = []
            for peer in (sva, inm):
                label = _status(peer)
                if peer and peer.get("extrapolated"):
                    label += f" (**extrapolated**: {peer['extrapolated']})"
                ratio = "—"
                if peer and peer.get("status") == "ok" and rec.get("status") == "ok":
                    ratio = f"{peer['seconds'] / rec['seconds']:.1f}×"
                cells += [label, ratio]
            rss = rec.get("peak_rss_mb") if rec.get("status") == "ok" else None
            lines.append(
                f"| {stage} | {_status(rec)} | {f'{rss:,.0f} MiB' if rss else '—'} | "
                + " | ".join(cells)
                + " |"
            )
        if cb.get("nonpar_subsets"):
            lines += ["", "Non-parametric ComBat measured on gene subsets (s):", ""]
            lines += ["| genes | ours | sva | inmoose |", "|---|---|---|---|"]
            for g, row in sorted(cb["nonpar_subsets"].items(), key=lambda kv: int(kv[0])):
                lines.append(
                    f"| {int(g):,} | {_status(row.get('ours'))} | {_status(row.get('sva'))} | "
                    f"{_status(row.get('inmoose'))} |"
                )
        lines.append("")

    # Accuracy -------------------------------------------------------------------
    accuracy_runs = results.get("accuracy") or []
    if accuracy_runs and isinstance(accuracy_runs[0], dict):
        accuracy_runs = [accuracy_runs]
    for acc in accuracy_runs:
        meta = acc[0]["_meta"]
        lines += [
            f"## Accuracy on a simulated cohort ({meta['n_genes']:,} genes × "
            f"{meta['n_samples']:,} samples, 3 batches)",
            "",
            f"{meta['n_kept']:,} genes pass filterByExpr, {meta['n_de_kept']:,} of the "
            f"{meta['n_de_total']:,} true DE genes among them. True size factor "
            "s_j = N_j / Σ_g a_g·DE_gj·hog_gj·batch_gj (see `simulate.py`). DE: Welch t-test "
            "B vs A on logCPM (prior 2) with the method's effective library sizes, "
            "Benjamini–Hochberg at 5%; sensitivity over the true DE genes kept by the filter.",
            "",
            "| method | Spearman(size factor, truth) | log-scale RMSE | DE called | "
            "sensitivity | observed FDR |",
            "|---|---|---|---|---|---|",
        ]
        for row in acc[1:]:
            if row.get("status") != "ok":
                lines.append(f"| {row['method']} | {row.get('status')} | | | | |")
                continue
            lines.append(
                f"| {row['method']} | {row['spearman']:.4f} | {row['log_rmse']:.4f} | "
                f"{row['n_called']:,} | {row['sensitivity']:.1%} | {row['observed_fdr']:.1%} |"
            )
        lines.append("")

    lines += _workflow_section(results.get("workflow"))
    lines += _targets(results, slopes)
    text = "\n".join(lines) + "\n"
    (outdir / "results.md").write_text(text)
    return text


def _targets(results: dict[str, Any], slopes: dict[str, float | None]) -> list[str]:
    out = ["## Issue targets", ""]
    sizes = {(s["meta"]["n_genes"], s["meta"]["n_samples"]): s for s in results["sizes"]}
    cb = results.get("combat")
    if cb:
        for stage, target in (("combat_par", 5), ("combat_nonpar", 100), ("combat_seq", 5)):
            ours = cb["ours"].get(stage, {})
            sva = cb["peers"].get(stage, {}).get(R_PEERS[stage], {})
            if ours.get("status") == "ok" and sva.get("status") == "ok":
                ratio = sva["seconds"] / ours["seconds"]
                extra = f" (sva {sva['extrapolated']})" if sva.get("extrapolated") else ""
                out.append(
                    f"- **Issue 3** {stage}: sva/ours = {ratio:.1f}× (target ≥ {target}×: "
                    f"{'met' if ratio >= target else 'NOT met'}){extra}."
                )
            else:
                out.append(f"- **Issue 3** {stage}: ours {_status(ours)}; sva {_status(sva)}.")
    if not sizes:
        out.append("- Issues 2 and 5: no scaling sizes in this run.")
        return [*out, ""]
    key = next((k for k in sizes if k[1] == 1000), None) or max(sizes, key=lambda k: k[1])
    size = sizes[key]
    dense = _dense_mb(key)
    chain = size["ours"].get("chain", {})
    r_parts = ["filter", "tmm", "logcpm"]
    r_recs = [size["peers"].get(p, {}).get(R_PEERS[p], {}) for p in r_parts]
    label = f"{key[0]:,} × {key[1]:,}"
    if chain.get("status") == "ok" and all(r.get("status") == "ok" for r in r_recs):
        r_sum = sum(r["seconds"] for r in r_recs)
        rss = chain.get("peak_rss_mb", float("nan"))
        base = size["ours"].get("disk_read", {}).get("peak_rss_mb", 0.0)
        out.append(
            f"- **Issue 2** ({label}): import+filter+TMM+logCPM+TPM {_fmt_s(chain['seconds'])} vs "
            f"edgeR filterByExpr+calcNormFactors+cpm alone {_fmt_s(r_sum)} → ratio "
            f"{r_sum / chain['seconds']:.2f}× "
            f"({'met' if r_sum > chain['seconds'] else 'NOT met'}); "
            f"peak RSS {rss:,.0f} MiB = {rss / dense:.2f}× dense float64 "
            f"(target < 3×: {'met' if rss < 3 * dense else 'NOT met'}); "
            f"{(rss - base) / dense:.2f}× above an idle interpreter ({base:,.0f} MiB)."
        )
    else:
        out.append(
            f"- **Issue 2** ({label}): not computable — chain: {_status(chain)}; R: "
            + "; ".join(_status(r) for r in r_recs)
        )
    big = max(sizes, key=lambda k: k[1])
    cp = sizes[big]["ours"].get("combat_par", {})
    if cp.get("status") == "ok" and cp.get("peak_rss_mb"):
        d = _dense_mb(cp["input_shape"])
        out.append(
            f"- **Issue 3 memory**: parametric ComBat at {big[0]:,} × {big[1]:,} "
            f"(input {cp['input_shape'][0]:,} filtered genes): peak RSS "
            f"{cp['peak_rss_mb']:,.0f} MiB = {cp['peak_rss_mb'] / d:.2f}× its dense input "
            f"({cp['peak_rss_mb'] / _dense_mb(big):.2f}× the raw matrix); target < 4×."
        )
    disk = size["ours"].get("disk_read", {})
    if disk.get("status") == "ok":
        slow = []
        not_fastest = []
        for stage, rec in size["ours"].items():
            if stage in ("disk_read", "chain", "e2e") or rec.get("status") != "ok":
                continue
            if rec["seconds"] > 3 * disk["seconds"]:
                slow.append(f"{stage} ({rec['seconds'] / disk['seconds']:.1f}×)")
            best = _best_peer(size["peers"].get(stage, {}))
            if best and best[1] < rec["seconds"]:
                not_fastest.append(f"{stage} (peer {PEER_LABEL.get(best[0], best[0])})")
        out.append(
            f"- **Issue 5** ({label}): reading the TSV once takes {_fmt_s(disk['seconds'])} "
            "(cold: file evicted from the page cache). Stages over 3× that: "
            + (", ".join(slow) or "none")
            + ". Stages slower than the fastest peer: "
            + (", ".join(not_fastest) or "none")
            + "."
        )
    lin = {k: v for k, v in slopes.items() if v is not None and k != "disk_read"}
    if lin:
        out.append(
            "- **Issue 5 scaling** (log-log slope vs samples): "
            + ", ".join(f"{k} {v:.2f}" for k, v in lin.items())
            + "."
        )
        measured = sizes[big]["ours"].get("e2e", {})
        e2e = [k for k in ("chain", "combat_par") if k in slopes and slopes[k] is not None]
        if big[1] >= 17000 and measured.get("status") == "ok":
            rss_gib = measured.get("peak_rss_mb", float("nan")) / 1024
            minutes = measured["seconds"] / 60
            out.append(
                f"- **Issue 5 end to end** (measured, {big[0]:,} × {big[1]:,}, one process "
                f"holding only what the next step needs): import→filter→TMM→logCPM→TPM→"
                f"parametric ComBat {minutes:.1f} min (target < 15: "
                f"{'met' if minutes < 15 else 'NOT met'}), peak RSS {rss_gib:.1f} GiB "
                f"(target < 20: {'met' if rss_gib < 20 else 'NOT met'})."
            )
        elif len(e2e) == 2:
            s_max = big[1]
            t = sum(
                sizes[big]["ours"][k]["seconds"] * (17000 / s_max) ** max(slopes[k] or 1, 1.0)
                for k in e2e
            )
            genes_scale = 60000 / big[0]
            out.append(
                f"- **Issue 5 extrapolation** (not measured): import→TMM→logCPM→TPM + "
                f"parametric ComBat at {big[0]:,} × 17,000 ≈ {t / 60:.1f} min "
                f"(measured at {s_max:,} samples, scaled with max(slope, 1))"
                + (f", × {genes_scale:.1f} for 60,000 genes" if genes_scale != 1 else "")
                + "."
            )
    out.append("")
    return out


def _plot(by_stage: dict[str, list[tuple[int, float]]], slopes: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^v<>pPX*h"
    for i, (stage, pts) in enumerate(by_stage.items()):
        xs, ys = zip(*sorted(pts), strict=True)
        sl = slopes.get(stage)
        ax.loglog(
            xs,
            ys,
            marker=markers[i % len(markers)],
            color=colors[i % len(colors)],
            lw=2.2 if stage == "chain" else 1.2,
            label=f"{stage} (slope {sl:.2f})" if sl is not None else stage,
        )
    xs_all = sorted({p[0] for v in by_stage.values() for p in v})
    if xs_all:
        ref = np.array(xs_all, dtype=float)
        ax.loglog(ref, ref / ref[0] * 0.01, "k--", lw=0.8, label="slope 1 reference")
    ax.set_xlabel("samples")
    ax.set_ylabel("seconds")
    ax.set_title("cohortnorm stage time vs samples (log-log)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _environment(argv: list[str]) -> dict[str, Any]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    r = "R absent"
    if shutil.which("Rscript"):
        try:
            r = subprocess.run(
                [
                    "Rscript",
                    "-e",
                    "cat(R.version.string, '; edgeR', "
                    "as.character(packageVersion('edgeR')), '; DESeq2', "
                    "as.character(packageVersion('DESeq2')), '; sva', "
                    "as.character(packageVersion('sva')))",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout.strip()
        except Exception as error:
            r = f"R version query failed: {error}"
    return {
        "cpus": os.cpu_count(),
        "mem_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "r": r,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python bench/run_benchmarks.py " + " ".join(argv),
    }


def _parse_size(text: str) -> tuple[int, int]:
    g, s = text.lower().split("x")
    return int(g), int(s)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=60000, help="genes of the scaling cohorts")
    parser.add_argument(
        "--samples", default="100,1000,5000,17000", help="comma list of sample counts (scaling)"
    )
    parser.add_argument(
        "--stages",
        default="scaling,combat,accuracy,workflow",
        help="comma list of parts: scaling, combat, accuracy, workflow; anything else (e.g. "
        "report) only merges the parts of earlier invocations and reports",
    )
    parser.add_argument("--peers", default="r,python", help="comma list: r, python, or none")
    parser.add_argument(
        "--peer-max-samples",
        type=int,
        default=1000,
        help="run peers only at scaling sizes up to this many samples",
    )
    parser.add_argument("--combat-size", default="20000x200", help="GENESxSAMPLES for ComBat")
    parser.add_argument(
        "--nonpar-genes",
        default="1000,2000,4000",
        help="gene subsets for sva/inmoose non-parametric ComBat (extrapolated quadratically)",
    )
    parser.add_argument(
        "--accuracy-size", default="20000x12,20000x24,20000x100", help="comma list of GENESxSAMPLES"
    )
    parser.add_argument(
        "--workflow-samples",
        type=int,
        default=1000,
        help="samples of the cohort the real workflow runs on (part 'workflow')",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run (about 5 min on 2 cores); does not publish",
    )
    parser.add_argument("--no-publish", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument(
        "--keep-peers",
        action="store_true",
        help="with --peers none: keep the peer timings of an earlier invocation on the same "
        "simulated matrix (same seed and size), marked as reused",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard part results of earlier invocations"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker-genes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(args.worker, args.workdir, args.repeats, args.worker_genes, args.json)
        return

    if args.quick:
        args.genes, args.samples = 2000, "20,60"
        args.combat_size, args.nonpar_genes, args.accuracy_size = "2000x30", "200,400", "2000x40"
    parts = set(args.stages.split(","))
    peers = set(args.peers.split(",")) - {"none"}
    publish = not (args.quick or args.no_publish)
    outdir: Path = args.out / ("quick" if args.quick else "full")
    outdir.mkdir(parents=True, exist_ok=True)
    if args.fresh or args.quick:
        for old in [
            *outdir.glob("size_g*.json"),
            *(outdir / f"{part}.json" for part in ("combat", "accuracy", "workflow")),
        ]:
            old.unlink(missing_ok=True)
    results: dict[str, Any] = {"environment": _environment(argv), "sizes": []}
    log = print

    if "scaling" in parts:
        for n_samples in [int(s) for s in args.samples.split(",")]:
            workdir = outdir / f"g{args.genes}_s{n_samples}"
            log(f"== {args.genes} x {n_samples}: simulating and writing")
            cohort = simulate_cohort(args.genes, n_samples, seed=args.seed)
            meta = prepare(workdir, cohort, logcpm_tsv=False)
            del cohort
            entries = args.genes * n_samples
            r_repeats = 3 if entries <= 20_000_000 else 1  # calls in one R session
            ours = {}
            for stage in SCALING_STAGES:
                ours[stage] = run_stage(stage, workdir)
                log(f"   ours {stage:14s} {_status(ours[stage])}")
            size_peers: dict[str, dict[str, Any]] = {}
            if n_samples <= args.peer_max_samples:
                if "r" in peers:
                    rres = run_r(workdir, R_SCALING_TASKS, r_repeats)
                    for stage, task in R_PEERS.items():
                        if task in rres:
                            size_peers.setdefault(stage, {})[task] = rres[task][0]
                    log(f"   R: {', '.join(f'{k} {_status(v[0])}' for k, v in rres.items())}")
                if "python" in peers:
                    for stage in SCALING_STAGES:
                        for peer in PY_PEERS.get(stage, []):
                            if peer.startswith("inmoose"):
                                continue
                            rec = run_stage(peer, workdir)
                            size_peers.setdefault(stage, {})[peer] = rec
                            log(f"   peer {peer:20s} {_status(rec)}")
                    size_peers.setdefault("combat_par", {})["inmoose_combat_par"] = run_stage(
                        "inmoose_combat_par", workdir
                    )
            else:
                for stage in SCALING_STAGES:
                    size_peers.setdefault(stage, {})["peers"] = {
                        "status": "not run",
                        "reason": f"> --peer-max-samples {args.peer_max_samples}",
                    }
            part = outdir / f"size_g{args.genes}_s{n_samples}.json"
            if args.keep_peers and not peers and part.exists():
                size_peers = _earlier_peers(part)
            record = {"meta": meta, "ours": ours, "peers": size_peers}
            (outdir / f"size_g{args.genes}_s{n_samples}.json").write_text(json.dumps(record))
            for name in ("counts.npy", "filtered.npy", "logcpm.npy"):
                (workdir / name).unlink(missing_ok=True) if n_samples > 1000 else None

    if "combat" in parts:
        g, s = _parse_size(args.combat_size)
        workdir = outdir / f"combat_g{g}_s{s}"
        log(f"== ComBat cohort {g} x {s}")
        cohort = simulate_cohort(g, s, n_batches=3, seed=args.seed + 1)
        meta = prepare(workdir, cohort, logcpm_tsv=True, filter_genes=False)
        del cohort
        subsets = [int(x) for x in args.nonpar_genes.split(",") if x]
        cb: dict[str, Any] = {"meta": meta, "ours": {}, "peers": {}, "nonpar_subsets": {}}
        for stage in COMBAT_STAGES:
            cb["ours"][stage] = run_stage(stage, workdir)
            log(f"   ours {stage:14s} {_status(cb['ours'][stage])}")
        for sub in subsets:
            cb["nonpar_subsets"][str(sub)] = {"ours": run_stage("combat_nonpar", workdir, sub)}
        if "r" in peers:
            rres = run_r(workdir, ["ComBat_par", "ComBat_seq", "ComBat_nonpar"], 3, subsets)
            cb["peers"].setdefault("combat_par", {})["ComBat_par"] = rres["ComBat_par"][0]
            cb["peers"].setdefault("combat_seq", {})["ComBat_seq"] = rres["ComBat_seq"][0]
            np_recs = rres["ComBat_nonpar"]
            for rec in np_recs:
                if rec.get("status") == "ok":
                    cb["nonpar_subsets"].setdefault(str(rec["input_shape"][0]), {})["sva"] = rec
            cb["peers"].setdefault("combat_nonpar", {})["ComBat_nonpar"] = _extrapolate(
                np_recs, meta["n_kept"]
            )
            log(f"   R: {', '.join(f'{k} {_status(v[-1])}' for k, v in rres.items())}")
        if "python" in peers:
            for stage in ("combat_par", "combat_seq"):
                peer = PY_PEERS[stage][0]
                cb["peers"].setdefault(stage, {})[peer] = run_stage(peer, workdir)
                log(f"   peer {peer:20s} {_status(cb['peers'][stage][peer])}")
            np_recs = []
            for sub in subsets:
                rec = run_stage("inmoose_combat_nonpar", workdir, sub)
                rec["input_shape"] = [sub, s] if rec.get("status") == "ok" else None
                cb["nonpar_subsets"].setdefault(str(sub), {})["inmoose"] = rec
                np_recs.append(rec)
                log(f"   peer inmoose nonpar {sub} genes {_status(rec)}")
            cb["peers"].setdefault("combat_nonpar", {})["inmoose_combat_nonpar"] = _extrapolate(
                np_recs, meta["n_kept"]
            )
        if args.keep_peers and not peers and (outdir / "combat.json").exists():
            earlier = json.loads((outdir / "combat.json").read_text())
            cb["peers"] = _earlier_peers(outdir / "combat.json")
            for sub, row in earlier.get("nonpar_subsets", {}).items():
                for key in ("sva", "inmoose"):
                    if key in row:
                        cb["nonpar_subsets"].setdefault(sub, {})[key] = row[key]
        (outdir / "combat.json").write_text(json.dumps(cb))

    if "workflow" in parts:
        workdir = outdir / f"g{args.genes}_s{args.workflow_samples}"
        if not (workdir / "counts.tsv").exists():
            log(f"== workflow: simulating {args.genes} x {args.workflow_samples}")
            cohort = simulate_cohort(args.genes, args.workflow_samples, seed=args.seed)
            prepare(workdir, cohort, logcpm_tsv=False)
            del cohort
        log(f"== workflow: snakemake on {workdir.name}")
        run = workflow_run(workdir, outdir)
        log(f"   {_status(run) if run['status'] != 'ok' else _fmt_s(run['wall_seconds'])}")
        (outdir / "workflow.json").write_text(json.dumps(run))

    if "accuracy" in parts:
        runs = []
        for size_text in args.accuracy_size.split(","):
            g, s = _parse_size(size_text)
            log(f"== accuracy {g} x {s}")
            runs.append(accuracy(g, s, args.seed + 2))
        (outdir / "accuracy.json").write_text(json.dumps(runs))

    # Parts may come from separate invocations (each kept under ~10 min): merge them.
    results["sizes"] = [
        json.loads(p.read_text())
        for p in sorted(
            outdir.glob(f"size_g{args.genes}_s*.json"),
            key=lambda p: int(p.stem.rsplit("_s", 1)[1]),
        )
    ]
    for part in ("combat", "accuracy", "workflow"):
        if (outdir / f"{part}.json").exists():
            results[part] = json.loads((outdir / f"{part}.json").read_text())
    (outdir / "results.json").write_text(json.dumps(results, indent=1))
    text = report(results, outdir, publish)
    print(text)
    if publish:
        (BENCH / "RESULTS.md").write_text(text)
        print(f"wrote {BENCH / 'RESULTS.md'}")
    print(f"wrote {outdir / 'results.md'}")


def _earlier_peers(part: Path) -> dict[str, dict[str, Any]]:
    """Peer records of an earlier invocation on the same (deterministic) matrix, marked."""
    earlier = json.loads(part.read_text())
    when = earlier.get("meta", {}).get("date", "an earlier invocation")
    out: dict[str, dict[str, Any]] = {}
    for stage, recs in earlier.get("peers", {}).items():
        for name, rec in recs.items():
            out.setdefault(stage, {})[name] = {**rec, "reused_from": when}
    return out


def _extrapolate(records: list[dict[str, Any]], n_genes: int) -> dict[str, Any]:
    """Quadratic extrapolation in genes from the largest successful subset."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("input_shape")]
    if not ok:
        return records[-1] if records else {"status": "not run", "reason": "no subsets"}
    best = max(ok, key=lambda r: r["input_shape"][0])
    g = best["input_shape"][0]
    if g >= n_genes:
        return best
    xs = [r["input_shape"][0] for r in ok]
    exponent = _slope(xs, [r["seconds"] for r in ok])
    seconds = best["seconds"] * (n_genes / g) ** 2
    note = f"quadratic from {g:,} genes"
    if exponent is not None:
        note += f"; measured exponent {exponent:.2f}"
    return {**best, "seconds": seconds, "extrapolated": note, "measured_seconds": best["seconds"]}


if __name__ == "__main__":
    main()
