"""Sharded mode, ComBat-seq: the adjusted counts from the gene blocks, in gene order
(one block in memory at a time) → the hand-off file of batch/combat_seq_counts; and
batch/combat_params.tsv as the in-memory ComBat-seq writes it (batches, then genes)."""

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError
from cohortnorm.io.shardfiles import combat_seq_model, load, read_source
from cohortnorm.io.tables import matrix_writer, write_table
from cohortnorm.runner import run


def main(smk, logger):
    samples = read_source(smk.input.source)["samples"]
    levels = combat_seq_model(smk).plan.blevels
    genes, gamma, phi, divergent = [], [], [], []
    with matrix_writer(smk.output.counts, samples) as writer:
        for path in smk.input.blocks:
            part = load(path)
            writer.write(part["adjusted"], part["genes"])
            genes.append(part["genes"][part["kept"]])
            gamma.append(part["gamma_hat"])
            phi.append(part["phi_hat"])
            divergent.append(part["divergent"])
    written = sum(load(path)["adjusted"].shape[0] for path in smk.input.blocks)
    expected = int(load(smk.input.filtered)["keep"].sum())
    if written != expected:  # never a deliverable missing genes
        raise InputError(
            f"the ComBat-seq gene blocks hold {written} genes, the filtered counts "
            f"{expected}: rerun the blocks (--forcerun sharded_seq_block)."
        )
    kept = np.concatenate(genes)
    gamma_hat, phi_hat = np.vstack(gamma), np.vstack(phi)
    frames = []
    for index, level in enumerate(levels):
        frames.append(
            pd.DataFrame(
                {
                    "batch": str(level),
                    "gene_id": kept,
                    "gamma_hat": gamma_hat[:, index],
                    "gamma_star": gamma_hat[:, index],  # shrink = FALSE: gamma.star = gamma.hat
                    "phi_hat": phi_hat[:, index],
                    "all_zero_in": np.concatenate(divergent),
                }
            )
        )
    write_table(pd.concat(frames, ignore_index=True), smk.output.params, finite=True)
    logger.info("assembled ComBat-seq: %d genes adjusted", kept.size)


run(main, snakemake)
