# DESeq2 1.38.3 rlogData on simulated edge-case genes, with the trend dispersions given,
# for cohortnorm.rlog. Usage (from the repository root):
#   Rscript tests/data/rlog_limma_extra/rlog_edge_fixture.R
# Tested with Debian bookworm: R 4.2.2, DESeq2 1.38.3. Output: rlog_edge.tsv.gz (counts,
# size factors and dispFit in, rlog and rlogIntercept out) and rlog_edge_params.tsv.gz.
suppressMessages(library(DESeq2))
OUT <- "tests/data/rlog_limma_extra"
f17 <- function(x) sprintf("%.17g", x)
set.seed(14)
m <- 12
sf_true <- exp(rnorm(m, 0, 0.4))
mu <- exp(runif(300, log(0.5), log(5e4)))
disp <- 0.05 + 2 / mu
counts <- t(sapply(seq_along(mu), function(i) rnbinom(m, mu = mu[i] * sf_true, size = 1 / disp[i])))
edge <- rbind(
  all_zero = rep(0, m),
  one_read = c(1, rep(0, m - 1)),
  one_big_outlier = c(5000, rep(0, m - 1)),
  one_zero_among_big = c(0, rep(20000, m - 1)),
  alternating = rep(c(0, 300), m / 2),
  huge = rep(5e6, m) + 0:(m - 1),
  tiny_dispersion = rep(c(100, 102, 98), m / 3),
  huge_dispersion = c(0, 0, 0, 1, 0, 800, 0, 3, 0, 0, 2000, 0)
)
counts <- rbind(counts, edge)
rownames(counts)[seq_along(mu)] <- paste0("g", seq_along(mu))
storage.mode(counts) <- "integer"
colnames(counts) <- paste0("s", seq_len(m))
dispfit <- c(0.05 + 2 / pmax(rowMeans(counts[seq_along(mu), ]), 0.1),
             NA, 1.5, 4, 0.06, 0.3, 0.04, 1e-8, 9)
dds <- DESeqDataSetFromMatrix(counts, S4Vectors::DataFrame(row.names = colnames(counts)), ~1)
dds <- estimateSizeFactors(dds)
dds <- DESeq2:::getBaseMeansAndVariances(dds)
mcols(dds)$dispFit <- dispfit
rld <- DESeq2:::rlogData(dds)
out <- data.frame(gene_id = rownames(counts), counts, dispFit = f17(dispfit),
                  matrix(f17(rld), nrow = nrow(rld), dimnames = list(NULL, paste0("rlog_", colnames(counts)))),
                  rlogIntercept = f17(as.numeric(attr(rld, "intercept"))), check.names = FALSE)
con <- gzfile(file.path(OUT, "rlog_edge.tsv.gz"), "w"); write.table(out, con, sep = "\t", quote = FALSE, row.names = FALSE); close(con)
par <- data.frame(quantity = c(rep("size_factor", m), "betaPriorVar"), name = c(colnames(counts), "rlog"),
                  value = f17(c(sizeFactors(dds), attr(rld, "betaPriorVar"))))
con <- gzfile(file.path(OUT, "rlog_edge_params.tsv.gz"), "w"); write.table(par, con, sep = "\t", quote = FALSE, row.names = FALSE); close(con)
