"""Low-count filtering (edgeR filterByExpr, a CPM threshold, or none)."""

import numpy as np
import pandas as pd

from cohortnorm import edger
from cohortnorm.io.tables import read_matrix, read_table, write_matrix, write_table
from cohortnorm.runner import run
from cohortnorm.validation import sheet_column


def main(smk, logger):
    settings = smk.params.filter
    # float64 straight from the file: the one dense copy this step holds.
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    values = counts.to_numpy()
    sheet = read_table(smk.input.samples, string_columns=["sample"]).set_index("sample")
    group = None
    if settings["group"]:
        group = sheet_column(
            sheet,
            settings["group"],
            counts.columns,
            sheet_source=smk.input.samples,
            purpose="filter.group",
        ).to_numpy()
    method = settings["method"]
    summary: dict[str, object] = {"method": method, "group_column": settings["group"] or ""}
    if method == "filterByExpr":
        details = edger.filter_by_expr_details(
            values,
            group=group,
            min_count=settings["min_count"],
            min_total_count=settings["min_total_count"],
            large_n=settings["large_n"],
            min_prop=settings["min_prop"],
        )
        keep = details.keep
        summary |= {
            "min_count": settings["min_count"],
            "min_total_count": settings["min_total_count"],
            "large_n": settings["large_n"],
            "min_prop": settings["min_prop"],
            "cpm_cutoff": details.cutoff_cpm,
            "min_sample_size": details.min_sample_size,
        }
    elif method == "cpm":
        min_samples = settings["min_samples"]
        if min_samples is None:
            min_samples = int(pd.Series(group).value_counts().min()) if group is not None else 1
        reached = edger.samples_reaching_cpm(values, values.sum(axis=0), settings["cpm_threshold"])
        keep = reached >= min_samples
        summary |= {"cpm_cutoff": settings["cpm_threshold"], "min_sample_size": min_samples}
    else:
        keep = np.ones(values.shape[0], dtype=bool)
    n_kept = int(keep.sum())
    summary |= {
        "genes_in": values.shape[0],
        "genes_kept": n_kept,
        "genes_removed": values.shape[0] - n_kept,
        "fraction_kept": n_kept / max(values.shape[0], 1),
    }
    logger.info("%s kept %d of %d genes", method, n_kept, values.shape[0])
    if n_kept == 0:
        from cohortnorm.errors import InputError

        raise InputError(
            f"{smk.input.counts}: filtering ({method}) removed every gene. Lower "
            "filter.min_count / filter.cpm_threshold, or check that the counts are raw counts."
        )
    if n_kept < 0.1 * values.shape[0]:
        logger.warning(
            "filtering removed %.0f%% of genes: low-input or very sparse data?",
            100 * (1 - n_kept / values.shape[0]),
        )
    write_matrix(
        values, counts.index, list(counts.columns), smk.output.counts, rows=keep, dtype=np.int64
    )
    report = pd.DataFrame({"parameter": list(summary), "value": [str(v) for v in summary.values()]})
    write_table(report, smk.output.report)


run(main, snakemake)
