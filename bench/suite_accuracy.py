"""Accuracy against simulated truth: size factors and recovery of true DE genes."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from simulate import simulate_cohort
from suite_common import Unavailable, resolve_function
from suite_prepare import _filter_fallback, _logcpm


def accuracy(n_genes: int, n_samples: int, seed: int) -> list[dict[str, Any]]:
    """Size-factor rank correlation and DE recovery per normalization."""
    from scipy import stats

    cohort = simulate_cohort(n_genes, n_samples, seed=seed)
    counts = cohort.counts.astype(np.float64)
    condition = cohort.samples["condition"].to_numpy()
    try:
        fil = resolve_function("cohortnorm.edger", "filter_by_expr")
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

                deseq2_norm = resolve_function("pydeseq2.preprocessing", "deseq2_norm")
                eff = np.asarray(deseq2_norm(pd.DataFrame(filtered.T))[1], dtype=float)
            elif method == "DESeq2 ratio":
                sf = resolve_function("cohortnorm.deseq2", "size_factors")
                eff = np.asarray(sf(filtered, type="ratio"), dtype=float)
            else:
                cnf = resolve_function("cohortnorm.edger", "calc_norm_factors")
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
