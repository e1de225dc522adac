"""Each timed stage: its inputs loaded untimed, then one call (run in a worker process)."""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from suite_common import (
    Unavailable,
    adjusted_of,
    as_matrix,
    condition_design,
    first_genes,
    load_array,
    read_meta,
    resolve_function,
)


def setup_stage(
    stage: str, workdir: Path, genes: int | None
) -> tuple[Callable[[], Any], tuple[int, int]]:
    """Load the inputs of ``stage`` (untimed) and return a zero-argument call."""
    meta = read_meta(workdir)
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
        fn = resolve_function("cohortnorm.io.importers", "import_counts")
        return (lambda: fn("matrix", tsv)), raw_shape
    if stage in ("chain", "e2e"):
        # chain: import → filter → TMM → logCPM + TPM in one process. e2e: the chain then
        # parametric ComBat, keeping only what the next step needs (the workflow runs each
        # step as its own rule and process).
        imp = resolve_function("cohortnorm.io.importers", "import_counts")
        read_table = resolve_function("cohortnorm.io.tables", "read_table")
        fil = resolve_function("cohortnorm.edger", "filter_by_expr")
        cnf = resolve_function("cohortnorm.edger", "calc_norm_factors")
        cpm = resolve_function("cohortnorm.edger", "cpm")
        tpm = resolve_function("cohortnorm.expression", "tpm")
        combat = resolve_function("cohortnorm.combat", "combat") if stage == "e2e" else None
        lengths_path = str(workdir / "lengths.tsv")
        design = condition_design(condition)

        def chain() -> Any:
            counts = as_matrix(imp("matrix", tsv), dtype=None)
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
            return adjusted_of(combat(logcpm, batch, covariates=design, parametric=True))

        return chain, raw_shape
    if stage == "filter":
        fn = resolve_function("cohortnorm.edger", "filter_by_expr")
        counts = load_array(workdir, "counts")
        return (lambda: fn(counts, group=condition)), counts.shape
    if stage in ("tmm", "tmmwsp", "rle", "uq"):
        fn = resolve_function("cohortnorm.edger", "calc_norm_factors")
        method = {"tmm": "TMM", "tmmwsp": "TMMwsp", "rle": "RLE", "uq": "upperquartile"}[stage]
        filtered = load_array(workdir, "filtered")
        return (lambda: fn(filtered, method=method)), filtered.shape
    if stage == "deseq2_ratio":
        fn = resolve_function("cohortnorm.deseq2", "size_factors")
        filtered = load_array(workdir, "filtered")
        return (lambda: fn(filtered, type="ratio")), filtered.shape
    if stage == "logcpm":
        fn = resolve_function("cohortnorm.edger", "cpm")
        filtered = load_array(workdir, "filtered")
        eff = load_array(workdir, "effective_lib_size")
        return (lambda: fn(filtered, eff, log=True, prior_count=2.0)), filtered.shape
    if stage == "tpm":
        fn = resolve_function("cohortnorm.expression", "tpm")
        filtered = load_array(workdir, "filtered")
        lengths = load_array(workdir, "filtered_lengths")
        return (lambda: fn(filtered, lengths)), filtered.shape
    if stage in ("combat_par", "combat_nonpar"):
        fn = resolve_function("cohortnorm.combat", "combat")
        data = first_genes(load_array(workdir, "logcpm"), genes)
        design = condition_design(condition)
        par = stage == "combat_par"
        return (lambda: adjusted_of(fn(data, batch, covariates=design, parametric=par))), data.shape
    if stage == "combat_seq":
        fn = resolve_function("cohortnorm.combat_seq", "combat_seq")
        filtered = first_genes(load_array(workdir, "filtered"), genes)
        return (lambda: adjusted_of(fn(filtered, batch, group=condition))), filtered.shape
    return setup_peer(stage, workdir, genes, condition, batch)


def setup_peer(
    stage: str, workdir: Path, genes: int | None, condition: np.ndarray, batch: np.ndarray
) -> tuple[Callable[[], Any], tuple[int, int]]:
    """The Python peers' stages (``condition``, ``batch``: the cohort's, from its meta)."""
    if stage.startswith("rnanorm_"):
        import pandas as pd

        rnanorm = importlib.import_module("rnanorm")
        filtered = load_array(workdir, "filtered")
        x = pd.DataFrame(filtered.T, columns=[f"g{i}" for i in range(filtered.shape[0])])
        if stage == "rnanorm_tmm":
            return (lambda: rnanorm.TMM().fit(x).get_norm_factors(x)), filtered.shape
        if stage == "rnanorm_uq":
            return (lambda: rnanorm.UQ().fit(x).get_norm_factors(x)), filtered.shape
        if stage == "rnanorm_cpm":
            return (lambda: rnanorm.CPM().fit_transform(x)), filtered.shape
        lengths = pd.Series(load_array(workdir, "filtered_lengths"), index=x.columns)
        return (lambda: rnanorm.TPM(gene_lengths=lengths).fit_transform(x)), filtered.shape
    if stage == "pydeseq2_ratio":
        import pandas as pd

        deseq2_norm = resolve_function("pydeseq2.preprocessing", "deseq2_norm")
        filtered = load_array(workdir, "filtered")
        x = pd.DataFrame(filtered.T)
        return (lambda: deseq2_norm(x)), filtered.shape
    if stage.startswith("conorm_"):
        import pandas as pd

        conorm = importlib.import_module("conorm")
        filtered = pd.DataFrame(load_array(workdir, "filtered"))
        fn = conorm.tmm_norm_factors if stage == "conorm_tmm" else conorm.mrn_norm_factors
        return (lambda: fn(filtered)), filtered.shape
    if stage.startswith("inmoose_"):
        module = "inmoose.pycombat"
        if stage == "inmoose_combat_seq":
            fn = resolve_function(module, "pycombat_seq")
            counts = first_genes(load_array(workdir, "filtered"), genes)
            return (lambda: fn(counts, list(batch), covar_mod=list(condition))), counts.shape
        fn = resolve_function(module, "pycombat_norm")
        data = first_genes(load_array(workdir, "logcpm"), genes)
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
    resolve_function("cohortnorm.runner", "reuse_freed_memory")()
    record: dict[str, Any] = {"stage": stage}
    try:
        call, shape = setup_stage(stage, workdir, genes)
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
