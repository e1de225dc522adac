"""TPM (or FPKM on request) for visualization → tpm/tpm.tsv. Not for DE testing."""

import numpy as np

from cohortnorm import expression
from cohortnorm.errors import InputError
from cohortnorm.io.runner import run
from cohortnorm.io.tables import read_matrix, write_matrix


def main(smk, logger):
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    lengths = read_matrix(smk.input.lengths)
    if list(lengths.columns) == ["length"]:
        length_values = lengths["length"].reindex(counts.index).to_numpy()[:, None]
    else:
        length_values = lengths.reindex(index=counts.index, columns=counts.columns).to_numpy()
    bad = (~np.isfinite(length_values) | (length_values <= 0)).any(axis=1)
    if bad.any():
        bad_genes = counts.index[bad]
        message = (
            f"{smk.input.lengths}: {bad.sum()} of {len(bad)} kept gene(s) have a missing, zero or "
            f"negative length (first: {', '.join(bad_genes[:5])})"
        )
        if smk.params.missing_lengths == "error" or bad.all():
            raise InputError(
                message + ". Provide a lengths file or GTF that covers every gene, or set "
                "tpm.missing_lengths: drop."
            )
        # TPM sums over genes, so one bad length would turn a whole sample's column into NaN.
        logger.warning("%s; they are left out of %s.", message, smk.params.unit)
        counts, length_values = counts.loc[~bad], length_values[~bad]
    values = counts.to_numpy()
    # tpm.dtype float32 is for visualization only (TPM/FPKM have no contract with R).
    dtype = np.float32 if smk.params.dtype == "float32" else np.float64
    if smk.params.unit == "FPKM":
        result = expression.fpkm(values, length_values, values.sum(axis=0), dtype=dtype)
    else:
        # The counts are not needed afterwards: TPM overwrites them (no second copy; a
        # float32 TPM fills the first half of their memory).
        result = expression.tpm(values, length_values, overwrite=True, dtype=dtype)
    write_matrix(result, counts.index, list(counts.columns), smk.output[0])
    logger.info(
        "wrote %s (%s) for %d genes × %d samples", smk.params.unit, result.dtype, *values.shape
    )


run(main, snakemake)
