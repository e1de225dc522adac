"""Sharded mode: gene lengths for TPM from the `lengths` file, matched to the store's gene
IDs (as the in-memory import matches them) → counts/gene_lengths.tsv,
counts/length_report.tsv, and the kept genes' lengths every TPM shard job reads."""

import numpy as np

from cohortnorm.errors import InputError
from cohortnorm.io.gtf import read_gene_lengths
from cohortnorm.io.shardfiles import load, open_source, save
from cohortnorm.io.tables import write_table
from cohortnorm.lengths import match_lengths
from cohortnorm.runner import run


def main(smk, logger):
    with open_source(smk.input.source) as source:
        genes = source.genes
    table = read_gene_lengths(str(smk.input.lengths))
    match = match_lengths(genes, table)
    logger.info(
        "%d of %d count gene IDs found a length in %s", match.found, len(genes), smk.input.lengths
    )
    lengths = match.lengths.dropna()
    if np.all(lengths.to_numpy() == np.round(lengths.to_numpy())):
        lengths = lengths.astype(np.int64)  # whole bases stay written as integers
    write_table(lengths.to_frame("length"), smk.output.lengths, index_label="gene_id")
    write_table(match.report(str(smk.input.lengths)), smk.output.report)
    # The kept genes with a valid length, as scripts/tpm.py picks them.
    keep = load(smk.input.filtered)["keep"]
    kept = genes[keep]
    values = lengths.reindex(kept).to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values <= 0)
    source_name = str(smk.input.lengths)
    if bad.all():
        raise InputError(
            f"{source_name}: none of the {len(kept)} kept count gene IDs matched a gene ID in "
            f"this lengths file (versioned Ensembl IDs are matched with or without their .N "
            f"suffix), so TPM cannot be computed. Count IDs look like "
            f"{', '.join(map(str, kept[:3]))}; IDs in {source_name} look like "
            f"{', '.join(map(str, table.index[:3]))}. Use a lengths table or GTF from the "
            f"same annotation (and release) as the counts, or remove `lengths` from the "
            f"config to skip TPM. See {smk.output.report}."
        )
    if bad.any():
        message = (
            f"{source_name}: {bad.sum()} of {len(bad)} kept gene(s) have no length "
            f"(first: {', '.join(kept[bad][:5])}; see {smk.output.report})"
        )
        if smk.params.missing_lengths == "error":
            raise InputError(
                message + ". Provide a lengths file or GTF that covers every gene, or set "
                "tpm.missing_lengths: drop to leave those genes out of TPM."
            )
        logger.warning("%s; they are left out of %s.", message, smk.params.unit)
    save(smk.output.rows, rows=np.flatnonzero(~bad), lengths=values[~bad])


run(main, snakemake)
