"""TPM (or FPKM on request) for visualization → tpm/tpm.tsv. Not for DE testing.

Salmon, kallisto and RSEM input: the quantifier's own gene TPM (tximport's `abundance`,
written by the import as counts/abundance_tpm), for the kept genes, not renormalized.
Every other format: TPM from the counts and gene lengths, over the kept genes.
"""

from pathlib import Path

import numpy as np

from cohortnorm import expression
from cohortnorm.errors import InputError
from cohortnorm.io.gtf import read_gene_lengths
from cohortnorm.io.tables import read_matrix, write_matrix
from cohortnorm.registry import FORMATS
from cohortnorm.runner import run


def main(smk, logger):
    dtype = np.float32 if smk.params.dtype == "float32" else np.float64
    if FORMATS[smk.params.counts_format].kind == "quantifier":
        quantifier_values(smk, logger, dtype)
    else:
        values_from_counts(smk, logger, dtype)


def quantifier_values(smk, logger, dtype):
    """The quantifier's TPM (or FPKM from it) for the genes kept by the filter."""
    kept = read_matrix(smk.input.counts)
    abundance = read_matrix(smk.input.abundance, dtype=np.float64)
    absent = kept.index.difference(abundance.index, sort=False)
    missing_samples = [s for s in kept.columns if s not in abundance.columns]
    if len(absent) or missing_samples:
        raise InputError(
            f"{smk.input.abundance} does not hold every kept gene and sample (missing genes: "
            f"{', '.join(absent[:5]) or 'none'}; samples: {missing_samples or 'none'}). It "
            "is written by the import: rerun with --forcerun import_counts."
        )
    if smk.params.unit == "FPKM":
        lengths = read_matrix(smk.input.lengths, dtype=np.float64)
        lengths = lengths.reindex(index=abundance.index, columns=abundance.columns)
        try:
            values = expression.fpkm_from_tpm(abundance.to_numpy(), lengths.to_numpy())
        except ValueError as error:
            raise InputError(
                f"{smk.input.abundance}: FPKM cannot be computed from the quantifier's TPM "
                f"and effective lengths ({error}). Check the {smk.params.counts_format} output "
                "of every sample, or set tpm.unit: TPM."
            ) from None
    else:
        values = abundance.to_numpy()
    rows = abundance.index.get_indexer(kept.index)
    columns = abundance.columns.get_indexer(kept.columns)
    # Rounded once from float64 when tpm.dtype is float32 (visualization only).
    result = values[np.ix_(rows, columns)].astype(dtype)
    write_matrix(result, kept.index, list(kept.columns), smk.output[0])
    share = abundance.to_numpy()[np.ix_(rows, columns)].sum(axis=0)
    total = abundance.to_numpy()[:, columns].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = share / total
    logger.info(
        "wrote the %s quantifier's own %s (tximport abundance%s) for the %d kept of %d genes "
        "× %d samples (%s); not renormalized: the kept genes hold %.1f%%–%.1f%% of each "
        "sample's TPM",
        smk.params.counts_format,
        smk.params.unit,
        ", FPKM = TPM·1e9/Σ(TPM·length)" if smk.params.unit == "FPKM" else "",
        len(rows),
        len(abundance.index),
        len(columns),
        result.dtype,
        100 * np.nanmin(fraction) if fraction.size else 0.0,
        100 * np.nanmax(fraction) if fraction.size else 0.0,
    )


def length_report(smk) -> Path:
    """counts/length_report.tsv, written by the import beside counts/gene_lengths.tsv."""
    return Path(smk.input.lengths).with_name("length_report.tsv")


def no_length_matched(smk, counts) -> InputError:
    """The error for "not one kept gene has a length": name the file, show IDs, say the fix."""
    source = smk.params.lengths_file
    count_examples = ", ".join(map(str, counts.index[:3]))
    if source:
        try:
            file_examples = ", ".join(map(str, read_gene_lengths(source).index[:3]))
        except (InputError, OSError):
            file_examples = "(unreadable)"
        instead = (
            "use the featureCounts Length column"
            if smk.params.counts_format == "featurecounts"
            else "skip TPM"
        )
        fix = (
            "Use a lengths table or GTF from the same annotation (and release) as the "
            f"counts, or remove `lengths` from the config to {instead}."
        )
        return InputError(
            f"{source}: none of the {len(counts.index)} kept count gene IDs matched a gene ID "
            f"in this lengths file (versioned Ensembl IDs are matched with or without their "
            f".N suffix), so TPM cannot be computed. Count IDs look like {count_examples}; "
            f"IDs in {source} look like {file_examples}. {fix} See {length_report(smk)}."
        )
    return InputError(
        f"{smk.input.lengths}: none of the {len(counts.index)} kept genes (e.g. "
        f"{count_examples}) has a valid length, so TPM cannot be computed. Give a lengths "
        "table or GTF in the config key `lengths`."
    )


def values_from_counts(smk, logger, dtype):
    """TPM or FPKM from counts and one length per gene (or per gene and sample)."""
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    lengths = read_matrix(smk.input.lengths)
    if list(lengths.columns) == ["length"]:
        length_values = lengths["length"].reindex(counts.index).to_numpy()[:, None]
    else:
        length_values = lengths.reindex(index=counts.index, columns=counts.columns).to_numpy()
    bad = (~np.isfinite(length_values) | (length_values <= 0)).any(axis=1)
    if bad.all():
        raise no_length_matched(smk, counts)
    if bad.any():
        bad_genes = counts.index[bad]
        source = smk.params.lengths_file or smk.input.lengths
        message = (
            f"{source}: {bad.sum()} of {len(bad)} kept gene(s) have no length "
            f"(first: {', '.join(bad_genes[:5])}; see {length_report(smk)})"
        )
        if smk.params.missing_lengths == "error":
            raise InputError(
                message + ". Provide a lengths file or GTF that covers every gene, or set "
                "tpm.missing_lengths: drop to leave those genes out of TPM."
            )
        # TPM sums over genes, so one bad length would turn a whole sample's column into NaN.
        logger.warning("%s; they are left out of %s.", message, smk.params.unit)
        counts, length_values = counts.loc[~bad], length_values[~bad]
    values = counts.to_numpy()
    # tpm.dtype float32 is for visualization only (TPM/FPKM have no contract with R).
    if smk.params.unit == "FPKM":
        result = expression.fpkm(values, length_values, values.sum(axis=0), dtype=dtype)
    else:
        # The counts are not needed afterwards: TPM overwrites them (no second copy; a
        # float32 TPM fills the first half of their memory).
        result = expression.tpm(values, length_values, overwrite=True, dtype=dtype)
    write_matrix(result, counts.index, list(counts.columns), smk.output[0])
    logger.info(
        "wrote %s (%s) for %d genes × %d samples, renormalized over these genes",
        smk.params.unit,
        result.dtype,
        *values.shape,
    )


run(main, snakemake)
