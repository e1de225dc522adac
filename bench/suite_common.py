"""Shared by the benchmark modules: stage and peer names, loading inputs, formatting."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent

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


def resolve_function(module: str, name: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except Exception as error:
        raise Unavailable(f"import {module} failed: {type(error).__name__}: {error}") from None
    if not hasattr(mod, name):
        raise Unavailable(f"{module}.{name} does not exist")
    return getattr(mod, name)


def as_matrix(value: Any, dtype: type | None = np.float64) -> np.ndarray:
    """A genes × samples ndarray from whatever an importer returns (no copy if dtype=None)."""
    for attr in ("counts", "matrix"):
        if not isinstance(value, np.ndarray) and hasattr(value, attr):
            value = getattr(value, attr)
            break
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=dtype)


def adjusted_of(value: Any) -> Any:
    return getattr(value, "adjusted", value)


def load_array(workdir: Path, name: str) -> Any:
    return np.load(workdir / f"{name}.npy", allow_pickle=False)


def read_meta(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "meta.json").read_text())


def condition_design(condition: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(condition.size), (condition == "B").astype(float)])


def first_genes(matrix: np.ndarray, genes: int | None) -> np.ndarray:
    return matrix if genes is None else np.ascontiguousarray(matrix[:genes])


def dense_mb(shape: list[int] | tuple[int, int]) -> float:
    return shape[0] * shape[1] * 8 / 2**20


def best_peer(records: dict[str, Any]) -> tuple[str, float] | None:
    ok = [(k, v["seconds"]) for k, v in records.items() if v.get("status") == "ok"]
    return min(ok, key=lambda kv: kv[1]) if ok else None


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g} s" if value >= 0.01 else f"{value * 1000:.3g} ms"


def status_text(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "not run"
    if rec.get("status") == "ok":
        reused = f" (run of {rec['reused_from']})" if rec.get("reused_from") else ""
        return fmt_seconds(rec["seconds"]) + reused
    return f"{rec.get('status')}: {rec.get('reason', '')}".replace("|", "/")[:160]


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def parse_size(text: str) -> tuple[int, int]:
    g, s = text.lower().split("x")
    return int(g), int(s)
