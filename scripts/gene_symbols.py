"""counts/gene_symbols.tsv: the annotation's gene name of every gene of the raw counts.

A separate table by default: every matrix reader (ours, edgeR's read.delim(row.names = 1),
pandas' index_col=0, AnnData) takes all columns but the first as samples, so a text column
there would become a sample or break the read. With io.gene_name_column, export_matrix
adds these names to every matrix deliverable as a second column.
"""

from cohortnorm.io.tables import read_matrix, write_table
from cohortnorm.panels import gene_symbols, read_annotation
from cohortnorm.runner import run


def main(smk, logger):
    genes = list(read_matrix(smk.input.counts).index)
    symbols = gene_symbols(genes, read_annotation(smk.input.annotation))
    named = int((symbols != "").sum())
    logger.info("%d of %d genes have a name in %s", named, len(genes), smk.input.annotation)
    if named == 0:
        logger.warning(
            "no gene of the counts is named in %s: do the gene IDs match (Ensembl versions "
            "are matched, other ID types are not)?",
            smk.input.annotation,
        )
    write_table(symbols.reset_index(), smk.output[0])


run(main, snakemake)
