"""A matrix deliverable (.tsv or .parquet) from its hand-off file (Arrow IPC); with
io.gene_name_column, a gene_name column after gene_id (counts/gene_symbols.tsv)."""

from cohortnorm.io.matrix_files import convert_matrix
from cohortnorm.runner import run


def main(smk, logger):
    names = None
    if "gene_symbols" in smk.input.keys():
        from cohortnorm.io.tables import read_table  # pandas: only with io.gene_name_column

        table = read_table(smk.input.gene_symbols, string_columns=["gene_id", "gene_name"])
        names = dict(zip(table["gene_id"], table["gene_name"].fillna(""), strict=True))
    genes, samples = convert_matrix(smk.input.matrix, smk.output[0], names)
    logger.info("wrote %s: %d genes × %d samples", smk.output[0], genes, samples)


run(main, snakemake)
