"""Sharded mode, ComBat-seq: one gene block (a range of the count file's genes, its
filtered genes × all samples) adjusted with the pooled dispersions and library sizes →
.npz of adjusted counts and per-gene estimates. Every step here is per gene."""

import numpy as np

from cohortnorm import combat_seq, sharded
from cohortnorm.errors import InputError
from cohortnorm.io.shardfiles import combat_seq_model, load, open_source, save
from cohortnorm.runner import run


def main(smk, logger):
    block, n_blocks = int(smk.wildcards.block), smk.params.n_blocks
    filtered = load(smk.input.filtered)["keep"]
    pooled = load(smk.input.gathered)
    model = combat_seq_model(smk)
    # The count file's genes cut into n_blocks equal ranges: the number of blocks is fixed
    # before the run (from the estimated gene count), the ranges from the real one, so
    # the blocks always cover every gene whatever the estimate.
    start = filtered.size * block // n_blocks
    stop = filtered.size * (block + 1) // n_blocks
    in_block = np.flatnonzero(filtered[start:stop]) + start
    # Position of these genes among the filtered genes (what the ComBat-seq keep vector
    # and the deliverable are indexed by).
    first = int(filtered[:start].sum())
    seq_keep = pooled["keep"][first : first + in_block.size]
    with open_source(smk.input.source) as source:
        genes = source.genes[in_block]
        values = np.asarray(source.read_rows(in_block), dtype=np.float64)
    try:
        adjusted, gamma_hat, phi_hat = sharded.seq_gene_block(
            values, seq_keep, model.plan, list(pooled["common"]), pooled["lib_size"], smk.threads
        )
    except (InputError, ValueError) as error:
        raise InputError(f"gene block {block} (genes {start + 1} to {stop}): {error}") from None
    divergent = combat_seq.divergent_levels(
        values[seq_keep], model.group_labels, model.covariates, model.covariate_names
    )
    save(
        smk.output[0],
        genes=np.asarray(genes, dtype=str),
        adjusted=adjusted,
        kept=seq_keep,
        gamma_hat=gamma_hat,
        phi_hat=phi_hat,
        divergent=np.asarray([levels or "none" for levels in divergent], dtype=str),
    )
    logger.info(
        "ComBat-seq gene block %d: %d genes, %d adjusted", block, len(genes), int(seq_keep.sum())
    )


run(main, snakemake)
