"""One command for the cohortnorm benchmark suite (``make bench``).

For every cohort size it simulates a matrix with known truth (``bench/simulate.py``),
writes it as TSV with the project's writer, then times in the same run:

* our stages, each in its own subprocess under ``/usr/bin/time -v`` (peak RSS):
  import TSV, filterByExpr, TMM, TMMwsp, RLE, upper quartile, DESeq2 ratio, logCPM,
  TPM, parametric ComBat, and the chain import+filter+TMM+logCPM+TPM in one process;
* the peers on the same files: edgeR / DESeq2 / sva through ``Rscript bench/peers_r.R``
  (timed inside R, start-up excluded, file read reported separately), rnanorm,
  pydeseq2, inmoose and conorm, each in its own subprocess too.

The batch-correction comparison runs on its own cohort (default 20,000 ×
200, 3 batches): parametric and non-parametric ComBat and ComBat-seq against sva and
inmoose. R's non-parametric ComBat is quadratic in genes; it is timed on gene subsets
and extrapolated quadratically (labelled as such).

The accuracy study compares estimated size factors with the simulated
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
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from simulate import simulate_cohort  # noqa: E402
from suite_accuracy import accuracy  # noqa: E402
from suite_common import (  # noqa: E402
    BENCH,
    COMBAT_STAGES,
    PY_PEERS,
    R_PEERS,
    R_SCALING_TASKS,
    SCALING_STAGES,
    fmt_seconds,
    parse_size,
    status_text,
)
from suite_prepare import prepare  # noqa: E402
from suite_report import describe_environment, report  # noqa: E402
from suite_stages import worker  # noqa: E402
from suite_timing import earlier_peers, extrapolate, run_r, run_stage  # noqa: E402
from suite_workflow import r_script_run, workflow_run  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=60000, help="genes of the scaling cohorts")
    parser.add_argument(
        "--samples", default="100,1000,5000,17000", help="comma list of sample counts (scaling)"
    )
    parser.add_argument(
        "--stages",
        default="scaling,combat,accuracy,workflow,workflow-vs-R",
        help="comma list of parts: scaling, combat, accuracy, workflow, workflow-vs-R; "
        "anything else (e.g. report) only merges the parts of earlier invocations and reports",
    )
    parser.add_argument(
        "--workflow-vs-r-sizes",
        default="60000x1000,20000x200",
        help="comma list of GENESxSAMPLES for the part workflow-vs-R",
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

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
            *(
                outdir / f"{part}.json"
                for part in ("combat", "accuracy", "workflow", "workflow_vs_r")
            ),
        ]:
            old.unlink(missing_ok=True)
    results: dict[str, Any] = {"environment": describe_environment(argv), "sizes": []}
    log = print

    if "scaling" in parts:
        run_scaling(args, outdir, peers, log)

    if "combat" in parts:
        run_combat(args, outdir, peers, log)

    if "workflow" in parts:
        run_workflow(args, outdir, log)

    if "accuracy" in parts:
        run_accuracy(args, outdir, log)

    if "workflow-vs-R" in parts:
        run_workflow_vs_r(args, outdir, log)

    # Parts may come from separate invocations (each kept under ~10 min): merge them.
    results["sizes"] = [
        json.loads(p.read_text())
        for p in sorted(
            outdir.glob(f"size_g{args.genes}_s*.json"),
            key=lambda p: int(p.stem.rsplit("_s", 1)[1]),
        )
    ]
    for part in ("combat", "accuracy", "workflow", "workflow_vs_r"):
        if (outdir / f"{part}.json").exists():
            results[part] = json.loads((outdir / f"{part}.json").read_text())
    (outdir / "results.json").write_text(json.dumps(results, indent=1))
    text = report(results, outdir, publish)
    print(text)
    if publish:
        (BENCH / "RESULTS.md").write_text(text)
        print(f"wrote {BENCH / 'RESULTS.md'}")
    print(f"wrote {outdir / 'results.md'}")


def run_scaling(args: argparse.Namespace, outdir: Path, peers: set[str], log: Callable) -> None:
    """Scaling: every stage and peer at each cohort size (``size_g*_s*.json``)."""
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
            log(f"   ours {stage:14s} {status_text(ours[stage])}")
        size_peers: dict[str, dict[str, Any]] = {}
        if n_samples <= args.peer_max_samples:
            if "r" in peers:
                rres = run_r(workdir, R_SCALING_TASKS, r_repeats)
                for stage, task in R_PEERS.items():
                    if task in rres:
                        size_peers.setdefault(stage, {})[task] = rres[task][0]
                log(f"   R: {', '.join(f'{k} {status_text(v[0])}' for k, v in rres.items())}")
            if "python" in peers:
                for stage in SCALING_STAGES:
                    for peer in PY_PEERS.get(stage, []):
                        if peer.startswith("inmoose"):
                            continue
                        rec = run_stage(peer, workdir)
                        size_peers.setdefault(stage, {})[peer] = rec
                        log(f"   peer {peer:20s} {status_text(rec)}")
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
            size_peers = earlier_peers(part)
        record = {"meta": meta, "ours": ours, "peers": size_peers}
        (outdir / f"size_g{args.genes}_s{n_samples}.json").write_text(json.dumps(record))
        for name in ("counts.npy", "filtered.npy", "logcpm.npy"):
            (workdir / name).unlink(missing_ok=True) if n_samples > 1000 else None


def run_combat(args: argparse.Namespace, outdir: Path, peers: set[str], log: Callable) -> None:
    """Batch correction: ComBat and ComBat-seq against sva and inmoose (``combat.json``)."""
    g, s = parse_size(args.combat_size)
    workdir = outdir / f"combat_g{g}_s{s}"
    log(f"== ComBat cohort {g} x {s}")
    cohort = simulate_cohort(g, s, n_batches=3, seed=args.seed + 1)
    meta = prepare(workdir, cohort, logcpm_tsv=True, filter_genes=False)
    del cohort
    subsets = [int(x) for x in args.nonpar_genes.split(",") if x]
    cb: dict[str, Any] = {"meta": meta, "ours": {}, "peers": {}, "nonpar_subsets": {}}
    for stage in COMBAT_STAGES:
        cb["ours"][stage] = run_stage(stage, workdir)
        log(f"   ours {stage:14s} {status_text(cb['ours'][stage])}")
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
        cb["peers"].setdefault("combat_nonpar", {})["ComBat_nonpar"] = extrapolate(
            np_recs, meta["n_kept"]
        )
        log(f"   R: {', '.join(f'{k} {status_text(v[-1])}' for k, v in rres.items())}")
    if "python" in peers:
        for stage in ("combat_par", "combat_seq"):
            peer = PY_PEERS[stage][0]
            cb["peers"].setdefault(stage, {})[peer] = run_stage(peer, workdir)
            log(f"   peer {peer:20s} {status_text(cb['peers'][stage][peer])}")
        np_recs = []
        for sub in subsets:
            rec = run_stage("inmoose_combat_nonpar", workdir, sub)
            rec["input_shape"] = [sub, s] if rec.get("status") == "ok" else None
            cb["nonpar_subsets"].setdefault(str(sub), {})["inmoose"] = rec
            np_recs.append(rec)
            log(f"   peer inmoose nonpar {sub} genes {status_text(rec)}")
        cb["peers"].setdefault("combat_nonpar", {})["inmoose_combat_nonpar"] = extrapolate(
            np_recs, meta["n_kept"]
        )
    if args.keep_peers and not peers and (outdir / "combat.json").exists():
        earlier = json.loads((outdir / "combat.json").read_text())
        cb["peers"] = earlier_peers(outdir / "combat.json")
        for sub, row in earlier.get("nonpar_subsets", {}).items():
            for key in ("sva", "inmoose"):
                if key in row:
                    cb["nonpar_subsets"].setdefault(sub, {})[key] = row[key]
    (outdir / "combat.json").write_text(json.dumps(cb))


def run_workflow(args: argparse.Namespace, outdir: Path, log: Callable) -> None:
    """The workflow itself on a simulated cohort (``workflow.json``)."""
    workdir = outdir / f"g{args.genes}_s{args.workflow_samples}"
    if not (workdir / "counts.tsv").exists():
        log(f"== workflow: simulating {args.genes} x {args.workflow_samples}")
        cohort = simulate_cohort(args.genes, args.workflow_samples, seed=args.seed)
        prepare(workdir, cohort, logcpm_tsv=False)
        del cohort
    log(f"== workflow: snakemake on {workdir.name}")
    run = workflow_run(workdir, outdir)
    log(f"   {status_text(run) if run['status'] != 'ok' else fmt_seconds(run['wall_seconds'])}")
    (outdir / "workflow.json").write_text(json.dumps(run))


def run_workflow_vs_r(args: argparse.Namespace, outdir: Path, log: Callable) -> None:
    """The R script, the workflow (TSV, then Parquet) and the in-process numerics on the
    same simulated cohorts, one after the other (``workflow_vs_r.json``)."""
    runs = []
    for size_text in args.workflow_vs_r_sizes.split(","):
        genes, samples = parse_size(size_text)
        workdir = outdir / f"g{genes}_s{samples}"
        if not (workdir / "counts.tsv").exists():
            log(f"== workflow-vs-R: simulating {genes} x {samples}")
            cohort = simulate_cohort(genes, samples, seed=args.seed)
            prepare(workdir, cohort, logcpm_tsv=False)
            del cohort
        run: dict[str, Any] = {"genes": genes, "samples": samples}
        log(f"== workflow-vs-R {genes} x {samples}: R script")
        run["r"] = r_script_run(workdir)
        # Three QC stages, as the R script's work: VST (on by default) is timed on its own.
        settings = {"transforms": {"vst": {"enabled": False}}}
        for kind in ("tsv", "parquet"):
            log(f"== workflow-vs-R {genes} x {samples}: workflow, {kind}")
            run[kind] = workflow_run(
                workdir, outdir, matrix_format=kind, settings=settings, tag=f"_{kind}"
            )
        log(f"== workflow-vs-R {genes} x {samples}: numerics in one process")
        run["e2e"] = run_stage("e2e", workdir)
        for key in ("r", "tsv", "parquet"):
            rec = run[key]
            ok = rec["status"] == "ok"
            log(f"   {key}: {fmt_seconds(rec['wall_seconds']) if ok else status_text(rec)}")
        runs.append(run)
    (outdir / "workflow_vs_r.json").write_text(json.dumps(runs))


def run_accuracy(args: argparse.Namespace, outdir: Path, log: Callable) -> None:
    """Accuracy against the simulated truth (``accuracy.json``)."""
    runs = []
    for size_text in args.accuracy_size.split(","):
        g, s = parse_size(size_text)
        log(f"== accuracy {g} x {s}")
        runs.append(accuracy(g, s, args.seed + 2))
    (outdir / "accuracy.json").write_text(json.dumps(runs))


if __name__ == "__main__":
    main()
