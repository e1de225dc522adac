# Extra edgeR / DESeq2 reference outputs for the core numerics: the non-default options the
# workflow exposes (TMM trims and weighting, upper-quartile p, filterByExpr thresholds,
# cpm prior counts, DESeq2 poscounts), on the four real datasets in tests/data.
# Usage (from the repository root): Rscript tests/data/core_extra/reference_core_extra.R
# Writes tests/data/core_extra/<dataset>.tsv.gz (numbers as %.17g) and sessionInfo.txt.
# Tested with Debian bookworm: R 4.2.2, edgeR 3.40.2, DESeq2 1.38.3.
suppressMessages({library(edgeR); library(DESeq2)})
out <- "tests/data/core_extra"
f17 <- function(x) sprintf("%.17g", x)
for (name in c("marioni", "pasilla", "airway", "gtex_lung_chr21")) {
  d <- file.path("tests/data", name)
  counts <- as.matrix(read.delim(gzfile(file.path(d, "counts.tsv.gz")), row.names = 1, check.names = FALSE))
  storage.mode(counts) <- "integer"
  samples <- read.delim(file.path(d, "samples.tsv"), colClasses = "character")
  condition <- factor(samples$condition, levels = unique(samples$condition))
  has_cond <- nlevels(condition) > 1
  grp <- if (has_cond) condition else NULL
  y <- DGEList(counts)
  keep <- filterByExpr(y, group = grp)
  keep_opts <- filterByExpr(y, group = grp, min.count = 5, min.total.count = 25, large.n = 3, min.prop = 0.5)
  keep_nogroup <- filterByExpr(y)
  yf <- y[keep, , keep.lib.sizes = FALSE]
  x <- yf$counts
  per_sample <- data.frame(
    sample = colnames(counts),
    TMM_unweighted = f17(calcNormFactors(x, method = "TMM", doWeighting = FALSE)),
    TMM_trim_0.2_0.1 = f17(calcNormFactors(x, method = "TMM", logratioTrim = 0.2, sumTrim = 0.1)),
    TMM_Acutoff_minus20 = f17(calcNormFactors(x, method = "TMM", Acutoff = -20)),
    TMMwsp_unweighted = f17(calcNormFactors(x, method = "TMMwsp", doWeighting = FALSE)),
    upperquartile_p0.9 = f17(calcNormFactors(x, method = "upperquartile", p = 0.9)),
    deseq2_poscounts_dds = f17(sizeFactors(estimateSizeFactors(
      DESeqDataSetFromMatrix(x, data.frame(row.names = colnames(x), s = seq_len(ncol(x))), ~1),
      type = "poscounts"))),
    deseq2_poscounts_matrix = f17(estimateSizeFactorsForMatrix(x, type = "poscounts")),
    check.names = FALSE)
  write.table(per_sample, gzfile(file.path(out, paste0(name, "_factors.tsv.gz"))),
              sep = "\t", quote = FALSE, row.names = FALSE)
  yf$samples$norm.factors <- calcNormFactors(x, method = "TMM")
  per_gene <- data.frame(gene_id = rownames(counts), keep_opts = keep_opts, keep_nogroup = keep_nogroup)
  write.table(per_gene, gzfile(file.path(out, paste0(name, "_filter.tsv.gz"))),
              sep = "\t", quote = FALSE, row.names = FALSE)
  lc <- cpm(yf, log = TRUE, prior.count = 0.5)
  lc <- data.frame(gene_id = rownames(lc), matrix(f17(lc), nrow = nrow(lc)), check.names = FALSE)
  names(lc) <- c("gene_id", colnames(counts))
  write.table(lc, gzfile(file.path(out, paste0(name, "_logcpm_prior0.5.tsv.gz"))),
              sep = "\t", quote = FALSE, row.names = FALSE)
}
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
