"""A transformed matrix (a registered normalizer with output "matrix") → normalization/<name>."""

import numpy as np

from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, read_table, write_matrix
from cohortnorm.registry import NORMALIZERS, load
from cohortnorm.runner import run


def main(smk, logger):
    name = smk.wildcards.transform
    entry = NORMALIZERS[name]
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    factors = factors.loc[counts.columns]
    data = {
        "size_factors": factors["size_factor"].to_numpy(),
        "lib_size": factors["lib_size"].to_numpy(),
    }
    options = {keyword: smk.params.normalization[key] for keyword, key in entry.parameters.items()}
    options |= {keyword: data[keyword] for keyword in entry.data}
    try:
        values = load(entry.function)(counts.to_numpy(), **options)
    except ValueError as error:
        raise InputError(
            f"{smk.input.counts}: {error} (normalization.transforms: {name})."
        ) from error
    write_matrix(values, counts.index, list(counts.columns), smk.output[0], finite=True)
    logger.info("wrote %s (%s): %d genes × %d samples", name, entry.r_function, *values.shape)


run(main, snakemake)
