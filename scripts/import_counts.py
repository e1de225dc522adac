"""Import counts in any supported format → counts/raw_counts.tsv (or .parquet) and lengths."""

import numpy as np
import pandas as pd

from cohortnorm.io.gtf import read_gene_lengths
from cohortnorm.io.importers import import_counts, read_tx2gene, validate_count_matrix
from cohortnorm.io.tables import write_matrix, write_table
from cohortnorm.lengths import match_lengths
from cohortnorm.registry import FORMATS
from cohortnorm.runner import run
from cohortnorm.validation import reconcile_samples

LOGGED = 500  # sample → source lines in the log; all of them are in sample_columns.tsv


def main(smk, logger):
    settings = smk.params.counts_config
    fmt = settings["format"]
    quantifier = FORMATS[fmt].kind == "quantifier"
    files = list(smk.input.counts)
    sheet_samples = list(smk.params.sample_names)
    per_sample = "{sample}" in settings["path"]
    paths = dict(zip(sheet_samples, files, strict=True)) if per_sample else files[0]
    tx2gene_notes: list[str] = []
    tx2gene = (
        read_tx2gene(smk.input.tx2gene, tx2gene_notes) if "tx2gene" in smk.input.keys() else None
    )
    for note in tx2gene_notes:
        logger.info("%s", note)
    logger.info("reading %s counts from %d file(s)", fmt, len(files))
    result = import_counts(
        fmt,
        paths,
        samples=sheet_samples,
        star_strand=settings["star_strand"],
        tx2gene=tx2gene,
        counts_from_abundance=settings["counts_from_abundance"],
        h5ad_layer=settings["h5ad_layer"],
    )
    for note in result.notes:
        logger.info("%s", note)
    for warning in result.warnings:
        logger.warning("%s", warning)
    counts = result.counts
    source = settings["path"]
    keep, dropped = reconcile_samples(
        list(counts.columns),
        sheet_samples,
        counts_source=source,
        sheet_source=smk.input.samples,
        subset=settings["subset_samples"],
        sources=result.sources,
    )
    if dropped:
        logger.warning(
            "dropped %d count column(s) without a sample-sheet row: %s", len(dropped), dropped
        )
    if keep != list(counts.columns):  # selecting columns copies the whole matrix
        counts = counts[keep]
    if quantifier:
        # DESeqDataSetFromTximport rounds estimated counts; round half to even as R does.
        fractional = int(np.count_nonzero(counts.to_numpy() % 1))
        counts = counts.round(0)
        logger.info("rounded %d fractional quantifier counts to the nearest integer", fractional)
    validate_count_matrix(counts, source, require_integer=True)
    counts = counts.astype(np.int64, copy=False)
    logger.info("imported %d genes × %d samples", *counts.shape)
    write_matrix(counts.to_numpy(), counts.index, list(counts.columns), smk.output.counts)

    # The quantifier's own gene TPM (tximport's `abundance`) is what tpm/tpm reports for
    # quantifier input; other formats get a table without rows.
    abundance = (
        result.abundance.reindex(index=counts.index)[keep]
        if quantifier
        else pd.DataFrame(np.empty((0, len(keep))), columns=keep)
    )
    write_matrix(abundance.to_numpy(), abundance.index, keep, smk.output.abundance)

    lengths, report = gene_lengths(smk, result, counts.index, keep, logger)
    write_table(lengths, smk.output.lengths, index_label="gene_id")
    write_sample_columns(result.sources, keep, smk.output.sample_columns, logger)
    write_table(report, smk.output.length_report)


def write_sample_columns(sources, samples, path, logger):
    """counts/sample_columns.tsv: each sample and the column or file its counts came from."""
    table = pd.DataFrame({"sample": samples, "source": [sources.get(s, s) for s in samples]})
    logger.info("sample ← source of its counts:")
    width = max(len(str(s)) for s in samples)
    for sample, source in list(zip(table["sample"], table["source"], strict=True))[:LOGGED]:
        logger.info("  %s ← %s", str(sample).ljust(width), source)
    if len(table) > LOGGED:
        logger.info("  … %d more in %s", len(table) - LOGGED, path)
    write_table(table, path)


def gene_lengths(smk, result, genes, samples, logger) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-gene lengths (column `length`) or per-sample quantifier lengths, and a report."""
    has_file = "lengths" in smk.input.keys()
    if isinstance(result.lengths, pd.DataFrame):
        if has_file:
            logger.warning(
                "lengths (%s) is not used: for %s input TPM is the quantifier's own abundance "
                "and FPKM uses its effective lengths. Remove `lengths` from the config.",
                smk.input.lengths,
                smk.params.counts_config["format"],
            )
        logger.info(
            "using the quantifier's average transcript lengths per sample for all %d genes",
            len(genes),
        )
        lengths = result.lengths.reindex(index=genes)[samples]
        match = match_lengths(genes, lengths.iloc[:, 0])
        return lengths, match.report(f"{smk.params.counts_config['format']} effective lengths")
    if has_file:
        source = str(smk.input.lengths)
        table = read_gene_lengths(source)
        match = match_lengths(genes, table)
        logger.info(
            "%d of %d count gene IDs found a length in %s (%d read)",
            match.found,
            len(genes),
            source,
            table.size,
        )
        if match.found == 0:
            logger.warning(
                "no count gene ID (e.g. %s) is in %s (e.g. %s): TPM will stop. Use lengths from "
                "the annotation the counts were made with.",
                ", ".join(map(str, genes[:3])),
                source,
                ", ".join(map(str, table.index[:3])),
            )
        if match.version_matched:
            examples = list(match.version_matched.items())[:3]
            logger.info(
                "%d gene ID(s) matched ignoring the Ensembl version suffix, e.g. %s",
                len(match.version_matched),
                ", ".join(f"{count_id} = {length_id}" for count_id, length_id in examples),
            )
        if match.ambiguous:
            logger.warning(
                "%d gene ID(s) got no length because their unversioned Ensembl ID is shared by "
                "several IDs in the counts or in %s: %s",
                len(match.ambiguous),
                source,
                ", ".join(match.ambiguous[:5]),
            )
        lengths = match.lengths
    elif isinstance(result.lengths, pd.Series):
        source = "featureCounts Length column"
        match = match_lengths(genes, result.lengths)
        logger.info("using gene lengths from the featureCounts Length column")
        lengths = match.lengths
    else:
        logger.info("no gene lengths configured: TPM is not computed")
        source = "none"
        match = match_lengths(genes, pd.Series(dtype=float))
        lengths = match.lengths
    # Genes without a length are left out rather than written as NaN (TPM treats an
    # absent gene as one without a length; length_report.tsv counts them).
    lengths = lengths.dropna()
    if np.all(lengths.to_numpy() == np.round(lengths.to_numpy())):
        lengths = lengths.astype(np.int64)  # whole bases stay written as integers
    return lengths.to_frame("length"), match.report(source)


run(main, snakemake)
