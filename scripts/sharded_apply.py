"""Sharded mode: one shard's output matrices (params.step) → one store per matrix.

values: the shard's filtered counts, logCPM, CPM and normalized counts, from the gathered
keep vector and size_factors.tsv (prior.count uses the cohort's mean effective library
size). combat: the shard's ComBat-adjusted logCPM from the gathered fit.
"""

import numpy as np

from cohortnorm import expression, sharded
from cohortnorm.errors import InputError
from cohortnorm.io.chunked import open_store, shard_columns, write_shard_store
from cohortnorm.io.shardfiles import combat_plan, load, load_combat_fit, open_source, read_shard
from cohortnorm.io.tables import read_table
from cohortnorm.runner import run


def main(smk, logger):
    shard = int(smk.wildcards.shard)
    columns = shard_columns(smk.params.n_samples, shard, smk.params.samples_per_shard)
    try:
        if smk.params.step == "values":
            values_step(smk, shard, columns)
        elif smk.params.step == "tpm":
            tpm_step(smk, shard)
        else:
            combat_step(smk, columns)
    except (InputError, ValueError) as error:
        raise InputError(
            f"shard {shard} (samples {columns.start + 1} to {columns.stop}): {error}"
        ) from None
    logger.info(
        "%s of shard %d (samples %d to %d)", smk.params.step, shard, columns.start + 1, columns.stop
    )


def values_step(smk, shard, columns):
    keep = load(smk.input.filtered)["keep"]
    with open_source(smk.input.source) as source:
        _, values = read_shard(source, shard, smk.params.samples_per_shard)
        genes = source.genes[keep]
        samples = list(source.samples[columns])
    counts = np.asfortranarray(values[keep])
    factors = read_table(smk.input.size_factors, string_columns=["sample"])
    effective_all = factors["effective_lib_size"].to_numpy()
    effective = effective_all[columns]
    divisor = factors["normalized_counts_factor"].to_numpy()[columns]
    write_shard_store(smk.output.filtered_counts, counts.astype(np.int64), genes, samples)
    logcpm = sharded.apply_cpm(
        counts,
        effective,
        log=True,
        prior_count=smk.params.prior_count,
        mean_effective_size=float(np.mean(effective_all)),
    )
    write_shard_store(smk.output.logcpm, logcpm, genes, samples)
    write_shard_store(smk.output.cpm, sharded.apply_cpm(counts, effective), genes, samples)
    write_shard_store(smk.output.normalized_counts, counts / divisor, genes, samples)


def tpm_step(smk, shard):
    """The shard's TPM (or FPKM) over the kept genes with a length, as scripts/tpm.py
    computes it: per sample, so the shard alone suffices."""
    keep = load(smk.input.filtered)["keep"]
    lengths = load(smk.input.lengths)
    with open_source(smk.input.source) as source:
        columns, values = read_shard(source, shard, smk.params.samples_per_shard)
        genes = source.genes[keep][lengths["rows"]]
        samples = list(source.samples[columns])
    counts = np.asfortranarray(values[keep][lengths["rows"]])
    dtype = np.float32 if smk.params.dtype == "float32" else np.float64
    length_values = lengths["lengths"][:, None]
    if smk.params.unit == "FPKM":
        result = expression.fpkm(counts, length_values, counts.sum(axis=0), dtype=dtype)
    else:
        result = expression.tpm(counts, length_values, overwrite=True, dtype=dtype)
    write_shard_store(smk.output[0], result, genes, samples)


def combat_step(smk, columns):
    with open_store(smk.input.values) as store:
        values = np.asfortranarray(store.read_columns(slice(None)))
        genes, samples = store.genes, list(store.samples)
    fit = load_combat_fit(smk.input.gathered)
    adjusted = sharded.combat_shard_apply(values, columns, combat_plan(smk), fit)
    write_shard_store(smk.output[0], adjusted, genes, samples)


run(main, snakemake)
