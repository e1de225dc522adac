"""Sharded mode: one matrix from its per-shard stores, gene block by gene block (a block
of genes × all samples in memory) → its hand-off file, which export_matrix turns into
the deliverable as in the in-memory mode."""

import numpy as np

from cohortnorm.errors import InputError
from cohortnorm.io.chunked import open_store
from cohortnorm.io.tables import matrix_writer
from cohortnorm.runner import run


def main(smk, logger):
    shards = [open_store(path) for path in smk.input.shards]
    try:
        genes = shards[0].genes
        for part in shards[1:]:
            if not part.genes.equals(genes):
                raise InputError(
                    f"{part.source}: its genes differ from those of {shards[0].source}; "
                    "rerun the sharded jobs of this cohort (--forcerun sharded_apply)."
                )
        samples = [s for part in shards for s in part.samples]
        block = smk.params.genes_per_block
        with matrix_writer(smk.output[0], samples) as writer:
            for start in range(0, len(genes), block):
                rows = slice(start, min(start + block, len(genes)))
                values = np.hstack([part.counts[rows, :] for part in shards])
                writer.write(values, genes[rows].to_numpy())
    finally:
        for part in shards:
            part.close()
    logger.info("assembled %s: %d genes × %d samples", smk.output[0], len(genes), len(samples))


run(main, snakemake)
