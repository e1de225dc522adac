"""Sharded mode: one shard's statistic for one step (params.step) → .npz.

Each step reads its shard (all genes × the shard's samples) and the vectors the previous
gather wrote, calls cohortnorm.sharded and writes per-gene / per-sample arrays; the
steps and their order are in docs/sharding.md.
"""

import numpy as np

from cohortnorm import qc, sharded
from cohortnorm.errors import InputError
from cohortnorm.io.chunked import open_store, shard_columns
from cohortnorm.io.shardfiles import (
    combat_plan,
    combat_seq_model,
    load,
    load_combat_fit,
    open_source,
    read_shard,
    save,
)
from cohortnorm.runner import run


def main(smk, logger):
    shard, step = int(smk.wildcards.shard), smk.params.step
    columns = shard_columns(smk.params.n_samples, shard, smk.params.samples_per_shard)
    try:
        if "source" in smk.input.keys():  # the counts
            with open_source(smk.input.source) as source:
                _, values = read_shard(source, shard, smk.params.samples_per_shard)
        else:  # this shard's part of an earlier step's result (one store per shard)
            with open_store(smk.input.values) as store:
                values = np.asfortranarray(store.read_columns(slice(None)))
        arrays = STEPS[step](smk, values, columns)
    except (InputError, ValueError) as error:
        raise InputError(
            f"shard {shard} (samples {columns.start + 1} to {columns.stop}): {error}"
        ) from None
    save(smk.output[0], **arrays)
    logger.info("%s of shard %d (samples %d to %d)", step, shard, columns.start + 1, columns.stop)


def summary(smk, values, columns):
    """Library sizes, gene totals, expressed genes; the per-sample QC counts."""
    part = sharded.shard_summary(values)
    detected = qc.count_summary(values)
    return {
        "lib_size": part.lib_size,
        "gene_totals": part.gene_totals,
        "expressed": part.expressed,
        "detected_genes": detected["detected_genes"].to_numpy(),
        "dropout_rate": detected["dropout_rate"].to_numpy(),
    }


def reached(smk, values, columns):
    plan = load(smk.input.gathered)
    if plan["method"] != "filterByExpr":
        return {"reached": np.zeros(values.shape[0], dtype=np.int64)}
    filter_plan = sharded.FilterPlan(float(plan["cutoff_cpm"]), float(plan["min_sample_size"]))
    return {
        "reached": sharded.shard_reaching_cutoff(values, plan["lib_size"][columns], filter_plan)
    }


def filtered(values, keep):
    """The shard's kept genes, Fortran-ordered as the in-memory filtered matrix is."""
    return np.asfortranarray(values[keep])


def stats(smk, values, columns):
    """On the filtered shard: library sizes, and what chooses TMM's reference, RLE's and
    DESeq2's geometric means."""
    gathered = load(smk.input.gathered)
    counts = filtered(values, gathered["keep"])
    expressed = gathered["expressed"]
    settings = smk.params.normalization
    lib_size = counts.sum(axis=0)
    arrays = {"lib_size": lib_size}
    method = settings["method"]
    if method in ("TMM", "TMMwsp"):
        f75, sqrt_sums = sharded.shard_reference_statistics(
            counts, lib_size, expressed, settings["p"]
        )
        arrays |= {"f75": f75, "sqrt_sums": sqrt_sums.astype(np.float64)}
    elif method == "RLE":
        arrays["log_sums"] = sharded.shard_log_sums(counts, expressed)
    if settings["size_factor_type"] == "ratio":
        arrays["deseq2_log_sums"] = sharded.shard_log_sums(counts)
    else:
        log_sums, any_positive = sharded.shard_positive_log_sums(counts)
        arrays |= {"deseq2_log_sums": log_sums, "any_positive": any_positive}
    return arrays


def factors(smk, values, columns):
    """The shard's raw edgeR factors and DESeq2 size factors (not yet rescaled)."""
    gathered = load(smk.input.gathered)
    counts = filtered(values, gathered["keep"])
    settings = smk.params.normalization
    method = settings["method"]
    lib_size = gathered["lib_size"][columns]
    raw = np.ones(counts.shape[1])
    if not gathered["trivial"]:
        extra = {}
        if method in ("TMM", "TMMwsp"):
            extra = {
                "ref_counts": gathered["ref_counts"],
                "ref_lib_size": float(gathered["ref_lib_size"]),
            }
        elif method == "RLE":
            extra = {"geo_mean": gathered["geo_mean"]}
        raw = sharded.shard_norm_factors(
            counts,
            lib_size,
            gathered["expressed"],
            method,
            logratio_trim=settings["logratio_trim"],
            sum_trim=settings["sum_trim"],
            do_weighting=settings["do_weighting"],
            a_cutoff=settings["a_cutoff"],
            p=settings["p"],
            **extra,
        )
    size = sharded.shard_size_factors(
        counts, gathered["log_means"], gathered["rows"], settings["size_factor_type"]
    )
    return {"norm_factor": raw, "size_factor": size}


def combat_fit(smk, values, columns):
    fitted = sharded.combat_shard_fit(values, columns, combat_plan(smk))
    return {"xty": fitted[0], "highest": fitted[1], "lowest": fitted[2]}


def combat_residuals(smk, values, columns):
    fit = load_combat_fit(smk.input.gathered)
    plan = combat_plan(smk)
    return {"squares": sharded.combat_shard_residuals(values, columns, plan, fit)}


def combat_sums(smk, values, columns):
    fit = load_combat_fit(smk.input.gathered)
    sb, sums = sharded.combat_shard_batch_sums(values, columns, combat_plan(smk), fit)
    return {"sb": sb, "sums": sums}


def combat_squares(smk, values, columns):
    fit = load_combat_fit(smk.input.gathered)
    return {"squares": sharded.combat_shard_squares(values, columns, combat_plan(smk), fit)}


def pca_sums(smk, values, columns):
    return {"sums": sharded.shard_gene_sums(values)}


def pca_squares(smk, values, columns):
    return {"squares": sharded.shard_gene_squares(values, load(smk.input.gathered)["gene_mean"])}


def pca_gram(smk, values, columns):
    gathered = load(smk.input.gathered)
    gram = sharded.shard_gene_cross_product(values, gathered["genes"], gathered["gene_mean"])
    return {"gram": gram}


def pca_scores(smk, values, columns):
    """The shard's PCA scores, and each sample's logCPM median and IQR."""
    gathered = load(smk.input.gathered)
    axes = sharded.PCAAxes(
        gathered["genes"],
        gathered["gene_mean"],
        gathered["loadings"],
        gathered["variance"],
        gathered["variance_ratio"],
    )
    distribution = qc.distribution_summary(values)
    return {
        "scores": sharded.shard_pca_scores(values, axes),
        "median": distribution["median"].to_numpy(),
        "iqr": distribution["iqr"].to_numpy(),
    }


def seq_nonzero(smk, values, columns):
    """ComBat-seq: per batch × filtered gene, whether the shard has a nonzero count."""
    counts = filtered(values, load(smk.input.gathered)["keep"])
    return {"nonzero": sharded.seq_shard_nonzero(counts, columns, combat_seq_model(smk).plan)}


def seq_lib(smk, values, columns):
    """ComBat-seq: each sample's sum over the genes it adjusts."""
    counts = filtered(values, load(smk.input.filtered)["keep"])
    return {"lib_size": sharded.seq_shard_lib_size(counts, load(smk.input.gathered)["keep"])}


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
    "pca_scores": pca_scores,
    "seq_nonzero": seq_nonzero,
    "seq_lib": seq_lib,
}


run(main, snakemake)
