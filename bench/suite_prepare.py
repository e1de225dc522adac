"""Simulated cohorts written as the workflow reads them, plus the stages' numpy inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from simulate import Cohort, write_cohort
from suite_common import Unavailable, resolve_function


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

    With ``filter_genes=False`` (the ComBat cohort, so that ComBat sees the
    full simulated gene count) the downstream inputs hold every gene.
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
            fil = resolve_function("cohortnorm.edger", "filter_by_expr")
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
        cnf = resolve_function("cohortnorm.edger", "calc_norm_factors")
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
