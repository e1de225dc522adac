# filterByExpr and calcNormFactors at the exact CPM cutoff, where the last bit of the CPM
# decides. Counts are simulated so that many genes have exactly min.count reads in the
# sample with the median library size (CPM == cutoff in exact arithmetic).
# Usage (from the repository root): Rscript tests/data/cutoff/cutoff_fixtures.R
# Writes tests/data/cutoff/*.tsv(.gz) (numbers as %.17g) and sessionInfo.txt.
# Tested with Debian bookworm: R 4.2.2, edgeR 3.40.2.
suppressMessages(library(edgeR))
out <- "tests/data/cutoff"
f17 <- function(x) sprintf("%.17g", x)

# The case from the bug report: edgeR keeps FALSE, TRUE.
tiny <- matrix(c(10, 3, 3, 5490620, 7295977, 4501149), nrow = 2, byrow = TRUE,
               dimnames = list(c("g1", "g2"), c("s1", "s2", "s3")))
write.table(data.frame(gene_id = rownames(tiny), tiny, keep = filterByExpr(tiny, group = c("x", "y", "x")),
                       check.names = FALSE),
            file.path(out, "tiny.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)

# 20,000 genes x 3 samples (and x 6 for a second design), counts in 0..30 with many
# exact 10s, plus a few large genes that set library sizes of a few million.
set.seed(20261203)
simulate <- function(n_genes, n_samples) {
  x <- matrix(rpois(n_genes * n_samples, lambda = rep(runif(n_genes, 2, 20), n_samples)),
              nrow = n_genes)
  at_cut <- sample(n_genes, n_genes %/% 4)
  x[cbind(at_cut, sample(n_samples, length(at_cut), replace = TRUE))] <- 10L
  big <- sample(n_genes, 200)
  x[big, ] <- matrix(sample(5000:60000, 200 * n_samples, replace = TRUE), nrow = 200)
  dimnames(x) <- list(sprintf("gene%05d", seq_len(n_genes)), sprintf("s%d", seq_len(n_samples)))
  storage.mode(x) <- "integer"
  # Nudge the median library until count / lib * 1e6 and count * (1e6 / lib) round
  # differently for the counts at both cutoffs used below (10 and 5): only then do the
  # genes at the cutoff tell the two operation orders apart.
  lib <- colSums(x)
  m <- order(lib)[(n_samples + 1) %/% 2]
  differs <- function(L) all(sapply(c(10, 5), function(k) k / L * 1e6 != k * (1e6 / L)))
  while (!differs(median(colSums(x)))) x[big[1], m] <- x[big[1], m] + 1L
  x
}
for (design in list(list(name = "sim3", n = 3, group = c("x", "y", "x")),
                    list(name = "sim6", n = 6, group = c("x", "x", "x", "y", "y", "y")))) {
  x <- simulate(20000, design$n)
  keep <- filterByExpr(x, group = design$group)
  keep_nogroup <- filterByExpr(x)
  keep_mc5 <- filterByExpr(x, group = design$group, min.count = 5, min.total.count = 20)
  cuts <- data.frame(gene_id = rownames(x), x, keep = keep, keep_nogroup = keep_nogroup,
                     keep_mc5 = keep_mc5, check.names = FALSE)
  write.table(cuts, gzfile(file.path(out, paste0(design$name, "_counts_filter.tsv.gz"))),
              sep = "\t", quote = FALSE, row.names = FALSE)
  xf <- x[keep, , drop = FALSE]
  factors <- data.frame(
    sample = colnames(x),
    TMM = f17(calcNormFactors(xf, method = "TMM")),
    TMMwsp = f17(calcNormFactors(xf, method = "TMMwsp")),
    RLE = f17(calcNormFactors(xf, method = "RLE")),
    upperquartile = f17(calcNormFactors(xf, method = "upperquartile")),
    TMM_unfiltered = f17(calcNormFactors(x, method = "TMM")),
    check.names = FALSE)
  write.table(factors, file.path(out, paste0(design$name, "_factors.tsv")),
              sep = "\t", quote = FALSE, row.names = FALSE)
}
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
