# The plain R script a user would write for what the workflow does, timed as a whole
# process (start-up, package loading and file reading included, as a user runs it):
# read.delim -> edgeR filterByExpr -> calcNormFactors (TMM) -> cpm(log = TRUE) -> TPM ->
# sva::ComBat(~condition), writing the corrected matrix.
#
#   Rscript bench/workflow_vs_r.R counts.tsv samples.tsv lengths.tsv out.tsv
suppressPackageStartupMessages({
  library(edgeR)
  library(sva)
})
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(args[1], row.names = 1, check.names = FALSE))
samples <- read.delim(args[2], colClasses = "character")
samples <- samples[match(colnames(counts), samples$sample), ]
lengths <- read.delim(args[3], colClasses = c("character", "numeric"))
y <- DGEList(counts, group = samples$condition)
keep <- filterByExpr(y, group = samples$condition)
y <- y[keep, , keep.lib.sizes = FALSE]
y <- calcNormFactors(y, method = "TMM")
logcpm <- cpm(y, log = TRUE, prior.count = 2)
rate <- y$counts / lengths$length[match(rownames(y), lengths$gene_id)]
tpm <- t(t(rate) / colSums(rate)) * 1e6
mod <- model.matrix(~condition, data = samples)
corrected <- ComBat(logcpm, batch = samples$batch, mod = mod)
write.table(corrected, args[4], sep = "\t", quote = FALSE, col.names = NA)
