"""The cohort's matrices as one AnnData file → normalization/normalized.h5ad.

AnnData is samples × genes: ``X`` holds logCPM, the layers ``counts`` (filtered
counts), ``logcpm``, ``cpm``, ``normalized_counts`` and, when computed, ``tpm`` (NaN
for genes left out of TPM) and ``batch_corrected`` (or, with a list of batch methods,
one layer per method named after it); ``obs`` is the sample sheet with
the size factors, ``var`` the gene IDs. Layers are written one at a time.
"""

import numpy as np

from cohortnorm.io.h5ad import write_h5ad_layers
from cohortnorm.io.tables import read_matrix, read_table
from cohortnorm.registry import BATCH_CORRECTORS
from cohortnorm.runner import run


def main(smk, logger):
    counts = read_matrix(smk.input.counts)
    genes, samples = counts.index, list(counts.columns)
    sheet = read_table(smk.input.samples, string_columns=["sample"]).set_index("sample")
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    obs = sheet.loc[samples].join(factors.loc[samples])
    layers = {"counts": smk.input.counts, "logcpm": smk.input.logcpm, "cpm": smk.input.cpm}
    layers["normalized_counts"] = smk.input.normalized_counts
    # With several batch methods, one layer per method, named after it.
    for name in ("tpm", "batch_corrected", *BATCH_CORRECTORS):
        if name in smk.input.keys():
            layers[name] = smk.input[name]

    def matrices():
        yield "counts", counts.to_numpy()
        for name, path in layers.items():
            if name != "counts":
                values = read_matrix(path, dtype=np.float64)
                if not values.index.equals(genes):
                    values = values.reindex(genes)  # TPM may leave genes out: NaN rows
                yield name, values.to_numpy()

    write_h5ad_layers(smk.output[0], obs, genes, matrices(), x_layer="logcpm")
    logger.info("wrote %d samples × %d genes, layers %s", len(samples), len(genes), list(layers))


run(main, snakemake)
