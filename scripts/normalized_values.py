"""logCPM, CPM (edgeR, effective library sizes) and DESeq2-normalized counts."""

import numpy as np

from cohortnorm import edger
from cohortnorm.io.runner import run
from cohortnorm.io.tables import matrix_writer, read_matrix, read_table, row_blocks


def main(smk, logger):
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    factors = factors.loc[counts.columns]
    values = counts.to_numpy()
    effective = factors["effective_lib_size"].to_numpy()
    size_factor = factors["size_factor"].to_numpy()
    genes, samples = counts.index.to_numpy(), list(counts.columns)
    prior_count = smk.params.prior_count
    # All three are elementwise given the per-sample sizes: written block by block of
    # genes, so that only the counts and one block of each output are in memory.
    with (
        matrix_writer(smk.output.logcpm, samples) as logcpm,
        matrix_writer(smk.output.cpm, samples) as cpm,
        matrix_writer(smk.output.normalized_counts, samples) as normalized,
    ):
        for rows in row_blocks(*values.shape):
            block = values[rows]
            log_values = edger.cpm(block, effective, log=True, prior_count=prior_count)
            logcpm.write(log_values, genes[rows])
            cpm.write(edger.cpm(block, effective), genes[rows])
            normalized.write(block / size_factor, genes[rows])
    logger.info("wrote logCPM (prior.count=%s), CPM and normalized counts", prior_count)


run(main, snakemake)
