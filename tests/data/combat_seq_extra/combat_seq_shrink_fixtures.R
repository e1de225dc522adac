# Fixtures for tests/test_combat_seq.py: ComBat_seq with shrink=TRUE (sva 3.46.0, R 4.2.2).
# Run from this folder:  Rscript combat_seq_shrink_fixtures.R
# monte_carlo_int_NB over all genes is deterministic (no gene.subset.n), so it is comparable.
suppressPackageStartupMessages(library(sva))
counts <- as.matrix(read.delim(gzfile("../marioni/counts.tsv.gz"), row.names = 1, check.names = FALSE))
samples <- read.delim("../marioni/samples.tsv", colClasses = "character")
keep <- read.delim(gzfile("../marioni/reference/edger_filterByExpr_keep.tsv.gz"))$keep
y <- counts[keep, ][1:400, ]
condition <- factor(samples$condition, levels = unique(samples$condition))
wr <- function(m, file) {
  write.table(data.frame(gene_id = rownames(m), m, check.names = FALSE), gzfile(file),
              sep = "\t", quote = FALSE, row.names = FALSE)
}
wr(suppressMessages(ComBat_seq(y, batch = samples$batch, group = condition, shrink = TRUE)),
   "marioni_first400_shrink.tsv.gz")
wr(suppressMessages(ComBat_seq(y, batch = samples$batch, group = condition, shrink = TRUE, shrink.disp = TRUE)),
   "marioni_first400_shrink_disp.tsv.gz")
