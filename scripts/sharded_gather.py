"""Sharded mode: gather one step's per-shard statistics (params.step) in shard order →
the vectors every shard of the next step needs (.npz), and the step's tables.

The formulas are cohortnorm.sharded's gathers, which call the in-memory code on the
gathered vectors (docs/sharding.md).
"""

from dataclasses import replace

import numpy as np
import pandas as pd

from cohortnorm import combat, edger, expression, qc, sharded
from cohortnorm.batch import params_table
from cohortnorm.errors import InputError
from cohortnorm.io.shardfiles import (
    combat_plan,
    combat_seq_model,
    load,
    load_combat_fit,
    open_source,
    save,
    save_combat_fit,
)
from cohortnorm.io.tables import read_table, write_table
from cohortnorm.runner import run
from cohortnorm.validation import sheet_column


def main(smk, logger):
    parts = [load(path) for path in smk.input.parts]
    STEPS[smk.params.step](smk, parts, logger)


def summary(smk, parts, logger):
    """Library sizes, gene totals, expressed genes; filterByExpr's cutoff and sample size."""
    whole = sharded.gather_summaries(
        [sharded.ShardSummary(p["lib_size"], p["gene_totals"], p["expressed"]) for p in parts]
    )
    settings = smk.params.filter
    arrays = {"lib_size": whole.lib_size, "gene_totals": whole.gene_totals}
    arrays |= {"expressed": whole.expressed, "method": settings["method"]}
    if settings["method"] == "filterByExpr":
        group = None
        if settings["group"]:
            sheet = read_table(smk.input.samples, string_columns=["sample"]).set_index("sample")
            group = sheet_column(
                sheet,
                settings["group"],
                list(smk.params.sample_names),
                sheet_source=smk.input.samples,
                purpose="filter.group",
            ).to_numpy()
        plan = sharded.plan_filter(
            whole.lib_size,
            group=group,
            min_count=settings["min_count"],
            large_n=settings["large_n"],
            min_prop=settings["min_prop"],
        )
        arrays |= {"cutoff_cpm": plan.cutoff_cpm, "min_sample_size": plan.min_sample_size}
    save(smk.output.gathered, **arrays)


def reached(smk, parts, logger):
    """filterByExpr's keep vector and counts/filter_report.tsv (as filter_counts writes it)."""
    plan = load(smk.input.gathered)
    settings = smk.params.filter
    method = settings["method"]
    n_genes = plan["gene_totals"].size
    report: dict[str, object] = {"method": method, "group_column": settings["group"] or ""}
    if method == "filterByExpr":
        filter_plan = sharded.FilterPlan(float(plan["cutoff_cpm"]), float(plan["min_sample_size"]))
        keep = sharded.gather_filter(
            [p["reached"] for p in parts],
            plan["gene_totals"],
            filter_plan,
            settings["min_total_count"],
        )
        report |= {
            "min_count": settings["min_count"],
            "min_total_count": settings["min_total_count"],
            "large_n": settings["large_n"],
            "min_prop": settings["min_prop"],
            "cpm_cutoff": filter_plan.cutoff_cpm,
            "min_sample_size": filter_plan.min_sample_size,
        }
    else:
        keep = np.ones(n_genes, dtype=bool)
    n_kept = int(keep.sum())
    report |= {
        "genes_in": n_genes,
        "genes_kept": n_kept,
        "genes_removed": n_genes - n_kept,
        "fraction_kept": n_kept / max(n_genes, 1),
    }
    logger.info("%s kept %d of %d genes", method, n_kept, n_genes)
    if n_kept == 0:
        raise InputError(
            f"{smk.params.counts}: filtering ({method}) removed every gene. Lower "
            "filter.min_count, or check that the counts are raw counts."
        )
    save(smk.output.gathered, keep=keep, expressed=plan["expressed"][keep])
    table = pd.DataFrame({"parameter": list(report), "value": [str(v) for v in report.values()]})
    write_table(table, smk.output.report)


def stats(smk, parts, logger):
    """The filtered library sizes, TMM's reference column, RLE's and DESeq2's geometric
    means: what every shard's factors need."""
    gathered = load(smk.input.gathered)
    settings = smk.params.normalization
    method, sf_type = settings["method"], settings["size_factor_type"]
    keep, expressed = gathered["keep"], gathered["expressed"]
    sizes = np.concatenate([p["lib_size"] for p in parts])
    samples = list(smk.params.sample_names)
    try:
        edger.require_reads(
            sizes,
            samples,
            fix=(
                f"every count of these samples is 0 in {smk.params.counts} after the "
                "expression filter. Remove them from the sample sheet, or relax the filter "
                "(filter.min_count, filter.min_total_count, or filter.method: none)."
            ),
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    n = sizes.size
    trivial = not expressed.any() or n == 1 or method == "none"
    arrays = {"keep": keep, "expressed": expressed, "lib_size": sizes, "trivial": trivial}
    try:
        if not trivial and method in ("TMM", "TMMwsp"):
            ref = sharded.choose_reference(
                method,
                np.concatenate([p["f75"] for p in parts]),
                np.concatenate([p["sqrt_sums"] for p in parts]).astype(np.longdouble),
            )
            with open_source(smk.input.source) as source:
                column = source.read_columns(slice(ref, ref + 1))[:, 0]
            arrays |= {"ref_counts": column[keep][expressed], "ref_lib_size": sizes[ref]}
            logger.info("%s reference sample: %s", method, samples[ref])
        elif not trivial and method == "RLE":
            geo_mean = np.exp(sharded.gather_log_means([p["log_sums"] for p in parts], n))
            if not (geo_mean > 0).any():
                raise ValueError(
                    "RLE needs at least one gene with a positive count in every sample; "
                    "use TMM or TMMwsp for sparse data"
                )
            arrays["geo_mean"] = geo_mean
        positive = None
        if sf_type == "poscounts":
            positive = np.logical_or.reduce([p["any_positive"] for p in parts])
        log_means = sharded.gather_deseq2_log_means(
            [p["deseq2_log_sums"] for p in parts], n, sf_type, positive
        )
        rows = sharded.usable_genes(log_means)
        if sf_type == "ratio" and rows.size == 0:
            raise ValueError(
                "every gene contains at least one zero, cannot compute log geometric means"
            )
    except ValueError as error:
        raise InputError(factor_message(smk, error)) from error
    save(smk.output.gathered, **arrays, log_means=log_means, rows=rows)


def factor_message(smk, error):
    settings = smk.params.normalization
    return (
        f"{smk.params.counts}: {error} (normalization.method={settings['method']}, "
        f"normalization.size_factor_type={settings['size_factor_type']}). For sparse, "
        "low-input data set normalization.size_factor_type: poscounts and "
        "normalization.method: TMMwsp."
    )


def factors(smk, parts, logger):
    """normalization/size_factors.tsv, as the in-memory size_factors job writes it."""
    gathered = load(smk.input.gathered)
    settings = smk.params.normalization
    method, sf_type = settings["method"], settings["size_factor_type"]
    lib_size = gathered["lib_size"]
    raw = np.concatenate([p["norm_factor"] for p in parts])
    if method == "upperquartile" and not np.all(raw > 0):
        error = ValueError(
            f"the {settings['p']} quantile of the counts is zero in "
            f"{int(np.sum(~(raw > 0)))} sample(s): upper-quartile normalization is "
            "undefined; use TMM or a higher p"
        )
        raise InputError(factor_message(smk, error))
    norm_factor = raw if gathered["trivial"] else edger.rescale_factors(raw)
    size_factor = np.concatenate([p["size_factor"] for p in parts])
    if sf_type == "poscounts":
        size_factor = edger.rescale_factors(size_factor)
    table = expression.size_factor_table(
        list(smk.params.sample_names),
        lib_size,
        norm_factor,
        size_factor,
        settings,
        smk.params.counts,
    )
    write_table(table, smk.output.table, finite=True)


def combat_fit(smk, parts, logger):
    plan = combat_plan(smk)
    for message in plan.messages:
        logger.info("%s", message)
    fit = sharded.gather_combat_fit([(p["xty"], p["highest"], p["lowest"]) for p in parts], plan)
    save_combat_fit(smk.output.gathered, fit)


def combat_residuals(smk, parts, logger):
    fit = load_combat_fit(smk.input.gathered)
    var_pooled = np.sum([p["squares"] for p in parts], axis=0)
    save_combat_fit(smk.output.gathered, replace(fit, var_pooled=var_pooled))


def combat_sums(smk, parts, logger):
    fit = load_combat_fit(smk.input.gathered)
    model = combat_plan(smk).model
    gamma_hat = np.linalg.solve(model.btb, np.sum([p["sb"] for p in parts], axis=0).T)
    mean = np.sum([p["sums"] for p in parts], axis=0) / model.n_per_batch.astype(float)[:, None]
    save_combat_fit(smk.output.gathered, replace(fit, gamma_hat=gamma_hat, mean=mean))


def combat_squares(smk, parts, logger):
    """The priors and the parametric or non-parametric estimates (sva's it.sol /
    int.eprior, the in-memory code), and batch/combat_params.tsv."""
    fit = load_combat_fit(smk.input.gathered)
    plan = combat_plan(smk)
    model = plan.model
    ss = np.sum([p["squares"] for p in parts], axis=0)
    n = model.n_per_batch.astype(float)[:, None]
    cnt = np.broadcast_to(n, fit.mean.shape).copy()
    delta_hat, gamma_star, delta_star, _ = combat._shrink(
        cnt,
        fit.mean,
        ss,
        fit.gamma_hat,
        model.ref,
        plan.parametric,
        plan.mean_only,
        None,
        smk.threads,
    )
    fit = replace(fit, gamma_star=gamma_star, delta_star=delta_star, delta_hat=delta_hat)
    save_combat_fit(smk.output.gathered, fit)
    with open_source(smk.input.source) as source:
        genes = source.genes[load(smk.input.filtered)["keep"]]
    if not fit.keep.all():
        logger.info(
            "%d gene(s) constant within a batch are returned unadjusted and have no rows in "
            "the parameter table",
            int((~fit.keep).sum()),
        )
    table = params_table(
        plan.levels,
        genes[fit.keep],
        gamma_hat=fit.gamma_hat.T,
        gamma_star=fit.gamma_star.T,
        delta_hat=fit.delta_hat.T,
        delta_star=fit.delta_star.T,
    )
    write_table(table, smk.output.params, finite=True)


def pca_sums(smk, parts, logger):
    n = len(smk.params.sample_names)
    save(smk.output.gathered, gene_mean=np.sum([p["sums"] for p in parts], axis=0) / n)


def pca_squares(smk, parts, logger):
    """The top variable genes (qc.top_variable_genes), as cohortnorm.qc.pca picks them."""
    n = len(smk.params.sample_names)
    variance = np.sum([p["squares"] for p in parts], axis=0) / n
    genes = qc.top_genes_by_variance(variance, smk.params.qc["top_variable_genes"])
    save(smk.output.gathered, gene_mean=load(smk.input.gathered)["gene_mean"], genes=genes)


def pca_gram(smk, parts, logger):
    """The PCA axes: eigenvectors of the gathered cross-product of the top genes."""
    gathered = load(smk.input.gathered)
    axes = sharded.gather_pca_axes(
        np.sum([p["gram"] for p in parts], axis=0),
        gathered["genes"],
        gathered["gene_mean"],
        len(smk.params.sample_names),
        smk.params.qc["n_pcs"],
    )
    save(
        smk.output.gathered,
        genes=axes.genes,
        gene_mean=axes.gene_mean,
        loadings=axes.loadings,
        variance=axes.variance,
        variance_ratio=axes.variance_ratio,
        n_genes=gathered["gene_mean"].size,
    )


def seq_nonzero(smk, parts, logger):
    """The filtered genes ComBat-seq adjusts: nonzero somewhere in every batch."""
    keep = sharded.gather_seq_keep([p["nonzero"] for p in parts])
    logger.info("ComBat-seq adjusts %d of %d filtered genes", int(keep.sum()), keep.size)
    save(smk.output.gathered, keep=keep)


class FilteredRows:
    """The filtered genes of the counts (what ComBat-seq reads) as a matrix source."""

    def __init__(self, source, keep):
        self.source, self.keep = source, keep
        self.shape = (int(keep.sum()), source.shape[1])

    def read_columns(self, columns):
        return self.source.read_columns(columns)[self.keep]


def seq_lib(smk, parts, logger):
    """Library sizes over the adjusted genes, and the pooled pass: each batch's common
    dispersion over all of them (reads one batch at a time: kept genes × its samples)."""
    keep = load(smk.input.gathered)["keep"]
    lib_size = np.concatenate([p["lib_size"] for p in parts])
    model = combat_seq_model(smk)
    with open_source(smk.input.source) as source:
        rows = FilteredRows(source, load(smk.input.filtered)["keep"])
        common = sharded.seq_common_dispersions(rows, model.plan, keep, lib_size, smk.threads)
    save(smk.output.gathered, keep=keep, lib_size=lib_size, common=np.asarray(common))


STEPS = {
    "summary": summary,
    "reached": reached,
    "stats": stats,
    "factors": factors,
    "combat_fit": combat_fit,
    "combat_residuals": combat_residuals,
    "combat_sums": combat_sums,
    "combat_squares": combat_squares,
    "pca_sums": pca_sums,
    "pca_squares": pca_squares,
    "pca_gram": pca_gram,
    "seq_nonzero": seq_nonzero,
    "seq_lib": seq_lib,
}


run(main, snakemake)
