"""Sharded mode: one matrix from its per-shard stores, gene block by gene block (a block
of genes × all samples in memory) → its hand-off file, which export_matrix turns into
the deliverable as in the in-memory mode."""

import numpy as np

from cohortnorm.io.chunked import opened_shards
from cohortnorm.io.tables import matrix_writer
from cohortnorm.runner import run


def main(smk, logger):
    fix = "rerun the sharded jobs of this cohort (--forcerun sharded_apply)."
    with opened_shards(smk.input.shards, fix) as (shards, genes, samples):
        block = smk.params.genes_per_block
        with matrix_writer(smk.output[0], samples) as writer:
            for start in range(0, len(genes), block):
                rows = slice(start, min(start + block, len(genes)))
                values = np.hstack([part.counts[rows, :] for part in shards])
                writer.write(values, genes[rows].to_numpy())
    logger.info("assembled %s: %d genes × %d samples", smk.output[0], len(genes), len(samples))


run(main, snakemake)
