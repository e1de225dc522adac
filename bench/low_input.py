"""Known-truth benchmark of low-input, multi-site cohorts: which method for sparse data?

Each replicate cohort comes from ``bench/simulate.py``'s generator with low-input settings:

* library sizes log-uniform over 1e4–1e5 (``depth = sqrt(1e9)``, ``depth_range = 10``);
* 3 sites (batches) with per-gene shifts and inflated dispersions, 2 conditions balanced
  within each site, 10% DE genes (75% up), and a few compositional hogs;
* zero inflation on top of the negative-binomial zeros (as in exosome RNA): each sample
  gets a target dropout ``u_j`` drawn uniformly in [0.6, 0.9]; every count of sample ``j``
  is set to 0 with probability ``pi_j = max(0, (u_j - z_j) / (1 - z_j))``, ``z_j`` the
  sample's negative-binomial zero fraction, so the sample's share of zeros is about
  ``max(u_j, z_j)``.

**Truth.** Zero inflation scales a sample's expected counts by ``1 - pi_j``, so the true
size factor is the generator's ``s_j`` times ``1 - pi_j`` (geometric mean 1). Each
cohort has a *batch-free twin*: the same seed with no batch shift and no dispersion
inflation (same abundances, DE genes, hogs, depths, conditions and drop-out mask), which
gives the noise floor of the batch R² and the condition R² the biology alone carries.

**Size factors** (filterByExpr-filtered counts): edgeR ``calcNormFactors`` TMM, TMMwsp,
RLE, upper quartile (effective library size = library size × factor), DESeq2
``poscounts`` (DESeq2's ``ratio`` fails when every gene has a zero, as here), scran
pooling, and none (library sizes). Scored by the Spearman correlation with the true
factors and the RMSE of the centred log ratio (log estimate − log truth, mean removed).

**DE**: the test of ``suite_accuracy``: Welch's t-test of logCPM (edgeR
``cpm(log=TRUE)`` with the method's effective library sizes, ``suite_prepare._logcpm``)
between the conditions, Benjamini–Hochberg at 5%. That test is written inline in
``accuracy()``, so it is repeated here with the same calls. Sensitivity = true DE genes
called / true DE genes kept by the filter; observed FDR = false calls / calls.

**Batch correction**, on the same filtered counts: ComBat (parametric, on TMM logCPM,
condition as covariate), ComBat-seq and ComBat-ref (counts, condition as group, then TMM
logCPM). The simulated batch effect is known only inside the generator, so it is measured
on a copy of the cohort sequenced at 1e8 reads (same seed: the same per-gene batch shifts,
far less counting noise): its per-gene batch means of TMM logCPM, centred over the batches,
are the *true shifts*. For a corrected matrix:

* batch shift removed = 1 − slope(after) / slope(uncorrected), where slope is the
  least-squares slope through the origin of the matrix's centred batch means on the true
  shifts (the counting noise of the deep copy attenuates both slopes alike, and the
  ratio cancels it; noise in the batch means is uncorrelated with the true shifts, so
  removing it is not counted);
* DE fold change kept = slope(after) / slope(uncorrected) of the observed B − A mean
  difference of logCPM on the true log2 fold change, over the true DE genes kept;
* descriptive: the mean over genes of the per-gene batch R², and the mean condition R²
  over the true DE genes (:func:`cohortnorm.diagnostics.variance_explained`), next to the
  same in the batch-free twin (the level reached by chance with this many samples).

Run (about 1–2 min of CPU at the default size)::

    .venv/bin/python bench/low_input.py                          # 3 cohorts of 5,000 × 24
    .venv/bin/python bench/low_input.py --write bench/RESULTS_low_input.md
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from simulate import simulate_cohort  # noqa: E402
from suite_prepare import _logcpm  # noqa: E402

from cohortnorm.combat import combat  # noqa: E402
from cohortnorm.combat_ref import combat_ref  # noqa: E402
from cohortnorm.combat_seq import combat_seq  # noqa: E402
from cohortnorm.deseq2 import size_factors  # noqa: E402
from cohortnorm.diagnostics import variance_explained  # noqa: E402
from cohortnorm.edger import calc_norm_factors, filter_by_expr  # noqa: E402
from cohortnorm.scran import pooled_size_factors  # noqa: E402

SIZE_METHODS = ["TMM", "TMMwsp", "RLE", "poscounts (DESeq2)", "UQ", "scran", "none"]
CORRECTIONS = ["none", "ComBat", "ComBat-seq", "ComBat-ref"]
#: Sequencing depths (log-uniform) and target dropout (uniform) of the low-input setting.
DEPTH = (1e4, 1e5)
DROPOUT = (0.6, 0.9)
#: Sequencing depth of the noise-poor copy that estimates the true batch shifts.
DEEP = (1e8, 1e8)


def low_input_cohort(
    n_genes: int,
    n_samples: int,
    seed: int,
    *,
    batch_free: bool = False,
    depth: tuple[float, float] = DEPTH,
    dropout: tuple[float, float] = DROPOUT,
):
    """A low-input cohort and its truth (see the module docstring)."""
    options = dict(
        n_batches=3,
        n_hog_genes=5,
        hog_share=0.3,
        depth=float(np.sqrt(depth[0] * depth[1])),
        depth_range=depth[1] / depth[0],
        seed=seed,
    )
    if batch_free:
        options.update(batch_shift_sd=0.0, batch_dispersion_inflation=(1.0,))
    cohort = simulate_cohort(n_genes, n_samples, **options)
    rng = np.random.default_rng([seed, 7919])
    target = rng.uniform(*dropout, n_samples)
    uniform = rng.random(cohort.counts.shape)
    return cohort, target, uniform


def zero_inflate(counts: np.ndarray, target: np.ndarray, uniform: np.ndarray):
    """Counts with extra zeros reaching the per-sample target dropout, and ``1 - pi``."""
    natural = (counts == 0).mean(axis=0)
    pi = np.clip((target - natural) / (1.0 - natural), 0.0, 1.0)
    inflated = np.where(uniform < pi, 0, counts)
    return inflated, 1.0 - pi


def effective_library_sizes(filtered: np.ndarray, method: str) -> np.ndarray:
    lib = filtered.sum(axis=0)
    if method == "none":
        return lib
    if method == "poscounts (DESeq2)":
        return np.asarray(size_factors(filtered, type="poscounts"), dtype=float)
    if method == "scran":
        return np.asarray(pooled_size_factors(filtered).size_factors, dtype=float)
    name = {"UQ": "upperquartile"}.get(method, method)
    return lib * np.asarray(calc_norm_factors(filtered, method=name), dtype=float)


def de_calls(filtered: np.ndarray, eff: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """Welch t-test of logCPM + BH at 5%, as in ``run_benchmarks.accuracy``."""
    lib = filtered.sum(axis=0)
    eff_lib = eff / np.mean(eff) * np.mean(lib)
    logcpm = _logcpm(filtered, eff_lib)
    with warnings.catch_warnings():
        # Genes with (nearly) identical values in every sample: scipy warns, p is kept.
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(
            logcpm[:, condition == "B"], logcpm[:, condition == "A"], axis=1, equal_var=False
        )
    padj = stats.false_discovery_control(np.nan_to_num(test.pvalue, nan=1.0))
    return padj < 0.05


def tmm_logcpm(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    lib = counts.sum(axis=0)
    return _logcpm(counts, lib * calc_norm_factors(counts, method="TMM"))


def batch_means(values: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Per-gene batch means, centred over the batches (genes × batches)."""
    levels = sorted(set(batch))
    means = np.column_stack([values[:, batch == b].mean(axis=1) for b in levels])
    return means - means.mean(axis=1, keepdims=True)


def slope(observed: np.ndarray, truth: np.ndarray) -> float:
    """Least-squares slope through the origin of ``observed`` on ``truth``."""
    observed, truth = np.ravel(observed), np.ravel(truth)
    return float(observed @ truth / (truth @ truth))


def mean_r2(values: np.ndarray, labels: np.ndarray, genes: np.ndarray | None = None) -> float:
    r2 = variance_explained(values if genes is None else values[genes], labels)
    return float(np.nanmean(r2))


def one_cohort(
    n_genes: int,
    n_samples: int,
    seed: int,
    depth: tuple[float, float] = DEPTH,
    dropout: tuple[float, float] = DROPOUT,
) -> dict[str, object]:
    cohort, target, uniform = low_input_cohort(
        n_genes, n_samples, seed, depth=depth, dropout=dropout
    )
    twin, _, _ = low_input_cohort(
        n_genes, n_samples, seed, batch_free=True, depth=depth, dropout=dropout
    )
    counts, kept_share = zero_inflate(cohort.counts, target, uniform)
    twin_counts, _ = zero_inflate(twin.counts, target, uniform)
    truth = cohort.true_size_factors * kept_share
    truth /= np.exp(np.mean(np.log(truth)))
    condition = cohort.samples["condition"].to_numpy()
    batch = cohort.samples["batch"].to_numpy()
    counts = counts.astype(np.float64)
    keep = np.asarray(filter_by_expr(counts, group=condition), dtype=bool)
    filtered = counts[keep]
    de = cohort.de[keep]
    meta = {
        "lib_min": float(counts.sum(axis=0).min()),
        "lib_max": float(counts.sum(axis=0).max()),
        "dropout_min": float((counts == 0).mean(axis=0).min()),
        "dropout_max": float((counts == 0).mean(axis=0).max()),
        "kept": int(keep.sum()),
        "de_kept": int(de.sum()),
    }
    size_rows = []
    for method in SIZE_METHODS:
        row: dict[str, object] = {"method": method, "seed": seed}
        started = time.process_time()
        try:
            eff = effective_library_sizes(filtered, method)
        except Exception as error:  # a method that fails on this data is a result too
            size_rows.append({**row, "status": f"{type(error).__name__}: {error}"})
            continue
        log_ratio = np.log(eff / truth)
        called = de_calls(filtered, eff, condition)
        tp = int(np.sum(called & de))
        size_rows.append(
            {
                **row,
                "status": "ok",
                "spearman": float(stats.spearmanr(eff, truth).statistic),
                "log_rmse": float(np.sqrt(np.mean((log_ratio - log_ratio.mean()) ** 2))),
                "sensitivity": tp / max(int(de.sum()), 1),
                "observed_fdr": (int(called.sum()) - tp) / max(int(called.sum()), 1),
                "n_called": int(called.sum()),
                "cpu_s": time.process_time() - started,
            }
        )

    before = tmm_logcpm(filtered)
    floor = tmm_logcpm(twin_counts.astype(np.float64)[keep])
    deep, _, _ = low_input_cohort(n_genes, n_samples, seed, depth=DEEP)
    true_shift = batch_means(tmm_logcpm(deep.counts.astype(np.float64)[keep]), batch)
    true_fc = cohort.log2_fold_change[keep][de]
    group_design = np.column_stack([np.ones(n_samples), condition == "B"]).astype(float)
    floor_batch = mean_r2(floor, batch)
    floor_cond = mean_r2(floor, condition, de)
    slopes = {}
    correction_rows = []
    for method in CORRECTIONS:
        started = time.process_time()
        try:
            if method == "none":
                after = before
            elif method == "ComBat":
                after = combat(before, batch, covariates=group_design, threads=1).adjusted
            elif method == "ComBat-seq":
                after = tmm_logcpm(combat_seq(filtered, batch, group=condition, threads=1).adjusted)
            else:
                after = tmm_logcpm(combat_ref(filtered, batch, group=condition, threads=1).adjusted)
        except Exception as error:
            correction_rows.append(
                {"method": method, "seed": seed, "status": f"{type(error).__name__}: {error}"}
            )
            continue
        shift_slope = slope(batch_means(after, batch), true_shift)
        observed_fc = after[de][:, condition == "B"].mean(axis=1) - after[de][
            :, condition == "A"
        ].mean(axis=1)
        fc_slope = slope(observed_fc, true_fc)
        if method == "none":
            slopes = {"shift": shift_slope, "fc": fc_slope}
        correction_rows.append(
            {
                "method": method,
                "seed": seed,
                "status": "ok",
                "batch_removed": 1.0 - shift_slope / slopes["shift"],
                "biology_kept": fc_slope / slopes["fc"],
                "batch_r2": mean_r2(after, batch),
                "batch_r2_twin": floor_batch,
                "condition_r2_de": mean_r2(after, condition, de),
                "condition_r2_twin": floor_cond,
                "cpu_s": time.process_time() - started,
            }
        )
    return {"meta": meta, "size": size_rows, "correction": correction_rows}


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _table(frame: pd.DataFrame, order: list[str], columns: dict[str, str]) -> list[str]:
    lines = [
        "| method | " + " | ".join(columns.values()) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method in order:
        rows = frame[frame["method"] == method]
        failed = rows[rows["status"] != "ok"]
        ok = rows[rows["status"] == "ok"]
        cells = [_mean_sd(ok[name]) if name in ok else "—" for name in columns]
        note = (
            f" (failed in {len(failed)} of {len(rows)}: {failed['status'].iloc[0]})"
            if len(failed)
            else ""
        )
        lines.append(f"| {method}{note} | " + " | ".join(cells) + " |")
    return lines


def report(
    results: list[dict[str, object]],
    n_genes: int,
    n_samples: int,
    depth: tuple[float, float] = DEPTH,
    dropout: tuple[float, float] = DROPOUT,
) -> str:
    size = pd.DataFrame([row for r in results for row in r["size"]])
    correction = pd.DataFrame([row for r in results for row in r["correction"]])
    meta = pd.DataFrame([r["meta"] for r in results])
    lines = [
        f"{len(results)} simulated cohorts of {n_genes:,} genes × {n_samples} samples "
        f"(3 sites, 2 conditions); values are mean ± SD over the cohorts. Sequencing depth "
        f"{depth[0]:,.0f}–{depth[1]:,.0f}, target dropout {dropout[0]:.0%}–{dropout[1]:.0%}; "
        f"realised library sizes "
        f"{meta['lib_min'].min():,.0f}–{meta['lib_max'].max():,.0f} reads, dropout (share of "
        f"zeros per sample) {meta['dropout_min'].min():.0%}–{meta['dropout_max'].max():.0%}; "
        f"filterByExpr kept {meta['kept'].min()}–{meta['kept'].max()} genes, of which "
        f"{meta['de_kept'].min()}–{meta['de_kept'].max()} truly DE.",
        "",
        "### Size factors and DE (Welch t on logCPM, BH 5%)",
        "",
        *_table(
            size,
            SIZE_METHODS,
            {
                "spearman": "Spearman vs true factors",
                "log_rmse": "RMSE of centred log ratio",
                "sensitivity": "DE sensitivity",
                "observed_fdr": "observed FDR (nominal 5%)",
            },
        ),
        "",
        "### Batch correction (TMM logCPM; R² of a one-way model per gene)",
        "",
        *_table(
            correction,
            CORRECTIONS,
            {
                "batch_removed": "batch shift removed",
                "biology_kept": "DE fold change kept",
                "batch_r2": "mean batch R²",
                "batch_r2_twin": "mean batch R², batch-free twin",
                "condition_r2_de": "condition R² on DE genes",
                "condition_r2_twin": "condition R² on DE genes, twin",
            },
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--cohorts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--depth", type=float, nargs=2, default=DEPTH, help="library size range (log-uniform)"
    )
    parser.add_argument(
        "--dropout", type=float, nargs=2, default=DROPOUT, help="target dropout range; 0 0: none"
    )
    parser.add_argument("--write", type=Path, help="also write the markdown here")
    parser.add_argument("--append", action="store_true", help="add a section to --write")
    parser.add_argument("--title", help="heading of the section written")
    args = parser.parse_args(argv)
    started = time.process_time()
    depth, dropout = tuple(args.depth), tuple(args.dropout)
    results = [
        one_cohort(args.genes, args.samples, args.seed + k, depth, dropout)
        for k in range(args.cohorts)
    ]
    table = report(results, args.genes, args.samples, depth, dropout)
    cpu = time.process_time() - started
    print(table)
    print(f"CPU time: {cpu:.0f} s")
    if args.write:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = shlex.join(
            ["python", "bench/low_input.py", *(argv if argv is not None else sys.argv[1:])]
        )
        heading = args.title or (
            f"{args.genes:,} genes × {args.samples} samples, depth "
            f"{depth[0]:,.0f}–{depth[1]:,.0f}, dropout {dropout[0]:.0%}–{dropout[1]:.0%}"
        )
        section = (
            f"## {heading}\n\n"
            f"Generated {today} at commit {commit or 'unknown'} by `{command.strip()}` "
            f"({cpu:.0f} s of CPU).\n\n" + table.replace("### ", "#### ")
        )
        if args.append and args.write.exists():
            with open(args.write, "a", encoding="utf-8") as handle:
                handle.write("\n" + section)
        else:
            args.write.write_text(
                "# Low-input cohorts: known-truth comparison\n\n"
                "The model, the truth and the scores are described in the docstring of "
                "`bench/low_input.py`.\n\n" + section,
                encoding="utf-8",
            )
    return table


if __name__ == "__main__":
    main()
