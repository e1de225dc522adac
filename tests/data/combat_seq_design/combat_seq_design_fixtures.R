# sva ComBat_seq references for the workflow's ComBat-seq design handling, on pasilla.
# Usage (from the repository root): Rscript tests/data/combat_seq_design/combat_seq_design_fixtures.R
# Tested with Debian bookworm: R 4.2.2, sva 3.46.0, edgeR 3.40.2.
# Writes (integers, genes x samples, gzipped TSV):
#   group_covar.tsv.gz   ComBat_seq(counts[keep,], batch, group = condition,
#                        covar_mod = model.matrix(~n_lanes)[, -1])
#   group_covar_sorted_levels.tsv.gz  the same with group = the character sheet column,
#                        as the workflow calls it (batch_correction.covariates: [condition, n_lanes])
#   zero_group.tsv.gz    ComBat_seq(counts[keep,], batch, group = condition) after setting the
#                        treated samples of the genes in zero_group_genes.txt to 0
#                        (condition: factor, levels in order of appearance: untreated first)
#   zero_group_sorted_levels.tsv.gz  the same with group = the character column (sorted
#                        levels: treated, the all-zero level, first)
#   zero_reference_group.tsv.gz  the same genes zero in every untreated sample instead
#   confounded.txt       sva's error for a covariate confounded with batch
suppressMessages({library(sva); library(edgeR)})
out <- "tests/data/combat_seq_design"
d <- "tests/data/pasilla"
counts <- as.matrix(read.delim(gzfile(file.path(d, "counts.tsv.gz")), row.names = 1, check.names = FALSE))
storage.mode(counts) <- "integer"
samples <- read.delim(file.path(d, "samples.tsv"), colClasses = c("character", "character", "character", "numeric"))
condition <- factor(samples$condition, levels = unique(samples$condition))
batch <- samples$batch
keep <- filterByExpr(DGEList(counts), group = condition)
x <- counts[keep, , drop = FALSE]
wimat <- function(m, file) {
  df <- data.frame(gene_id = rownames(m), m, check.names = FALSE)
  write.table(df, gzfile(file.path(out, file)), sep = "\t", quote = FALSE, row.names = FALSE)
}
cov <- model.matrix(~n_lanes, data = samples)[, -1, drop = FALSE]
wimat(suppressMessages(ComBat_seq(x, batch = batch, group = condition, covar_mod = cov)), "group_covar.tsv.gz")
# The workflow passes the sheet column as it is, so sva's as.factor() sorts the levels.
wimat(suppressMessages(ComBat_seq(x, batch = batch, group = samples$condition, covar_mod = cov)),
      "group_covar_sorted_levels.tsv.gz")

# Genes zero in every treated sample: the group coefficient diverges to -Inf in glmFit.
totals <- rowSums(x)
ranked <- order(totals, decreasing = TRUE)
genes <- rownames(x)[ranked[c(1, 50, 500, 2000, 5000)]]
xz <- x
xz[genes, condition == "treated"] <- 0L
writeLines(genes, file.path(out, "zero_group_genes.txt"))
wimat(suppressMessages(ComBat_seq(xz, batch = batch, group = condition)), "zero_group.tsv.gz")
# As a user calls it with the sheet column (character): as.factor sorts, so "treated", the
# all-zero level, is the reference, and the fit of those genes stops elsewhere.
wimat(suppressMessages(ComBat_seq(xz, batch = batch, group = samples$condition)),
      "zero_group_sorted_levels.tsv.gz")
# The same genes zero in every untreated sample (the reference level).
xu <- x
xu[genes, condition == "untreated"] <- 0L
wimat(suppressMessages(ComBat_seq(xu, batch = batch, group = condition)), "zero_reference_group.tsv.gz")

# A covariate that takes one value per batch is confounded with it: sva refuses.
site <- ifelse(batch == "paired-end", "siteB", "siteA")
msg <- tryCatch({ComBat_seq(x, batch = batch, group = condition,
                            covar_mod = model.matrix(~site)[, -1, drop = FALSE]); "no error"},
                error = function(e) conditionMessage(e))
writeLines(msg, file.path(out, "confounded.txt"))
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
