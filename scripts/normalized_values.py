"""logCPM, CPM (edgeR, effective library sizes) and normalized counts.

normalized_counts divide by the `normalized_counts_factor` column of size_factors.tsv:
DESeq2's size factors by default, or normalization.method's effective library sizes
scaled to a geometric mean of 1 (normalization.normalized_counts_factors: method).
"""

import numpy as np

from cohortnorm import edger
from cohortnorm.io.tables import matrix_writer, read_matrix, read_table, row_blocks
from cohortnorm.runner import run


def main(smk, logger):
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    factors = factors.loc[counts.columns]
    values = counts.to_numpy()
    effective = factors["effective_lib_size"].to_numpy()
    divisor = factors["normalized_counts_factor"].to_numpy()
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
            normalized.write(block / divisor, genes[rows])
    logger.info(
        "wrote logCPM (prior.count=%s), CPM and normalized counts (divided by %s factors)",
        prior_count,
        factors["normalized_counts_factors"].iloc[0],
    )


run(main, snakemake)
