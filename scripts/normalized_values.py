"""logCPM, CPM (edgeR, effective library sizes) and DESeq2-normalized counts."""

import numpy as np

from cohortnorm import edger
from cohortnorm.io.runner import run
from cohortnorm.io.tables import read_matrix, read_table, write_matrix


def main(smk, logger):
    counts = read_matrix(smk.input.counts)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    factors = factors.loc[counts.columns]
    values = counts.to_numpy(dtype=np.float64)
    effective = factors["effective_lib_size"].to_numpy()
    genes, samples = counts.index, list(counts.columns)
    write_matrix(
        edger.cpm(values, effective, log=True, prior_count=smk.params.prior_count),
        genes,
        samples,
        smk.output.logcpm,
    )
    write_matrix(edger.cpm(values, effective), genes, samples, smk.output.cpm)
    write_matrix(
        values / factors["size_factor"].to_numpy(), genes, samples, smk.output.normalized_counts
    )
    logger.info("wrote logCPM (prior.count=%s), CPM and normalized counts", smk.params.prior_count)


run(main, snakemake)
