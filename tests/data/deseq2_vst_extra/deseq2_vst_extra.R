# DESeq2 VST fixtures for cases the real datasets do not reach.
# Usage (from this folder): Rscript deseq2_vst_extra.R
# Simulated counts (project's own, no licence restriction): 400 genes x 8 samples, NB with
# dispersion 0.05 + 2/mean, design ~batch + condition (2 x 2, two samples per cell);
# genes 1-5 are zero in every condition-B sample (their condition coefficient runs off
# towards -Inf until the IRLS deviance test stops it), gene 6 is zero everywhere.
# Writes counts.tsv, samples.tsv, vst_design.tsv (blind=FALSE, parametric), vst_mean.tsv
# (blind=TRUE, fitType mean), dispersions.tsv (design dispGeneEst, dispGeneIter, dispFit),
# coefficients.tsv, sessionInfo.txt; numbers as sprintf("%.17g").
suppressMessages(library(DESeq2))
set.seed(14)
n <- 400; m <- 8
means <- exp(rnorm(n, 4, 1.5))
disp <- 0.05 + 2 / means
counts <- matrix(rnbinom(n * m, mu = rep(means, m), size = rep(1 / disp, m)), n, m)
samples <- data.frame(sample = paste0("S", 1:m), batch = rep(c("b1", "b2"), each = 4),
                      condition = rep(c("A", "A", "B", "B"), 2))
counts[1:5, samples$condition == "B"] <- 0
counts[6, ] <- 0
rownames(counts) <- sprintf("g%03d", 1:n); colnames(counts) <- samples$sample
cd <- data.frame(row.names = samples$sample, batch = factor(samples$batch), condition = factor(samples$condition))
dds <- DESeqDataSetFromMatrix(counts, cd, ~batch + condition)
dds <- estimateSizeFactors(dds)
dds <- estimateDispersions(dds, fitType = "parametric", quiet = TRUE)
vsd <- assay(varianceStabilizingTransformation(dds, blind = FALSE))
vsm <- assay(varianceStabilizingTransformation(dds, blind = TRUE, fitType = "mean"))
f17 <- function(x) sprintf("%.17g", x)
wm <- function(x, file) write.table(data.frame(gene_id = rownames(x), matrix(f17(x), nrow(x), dimnames = list(NULL, colnames(x))), check.names = FALSE),
                                    file, sep = "\t", quote = FALSE, row.names = FALSE)
write.table(data.frame(gene_id = rownames(counts), counts, check.names = FALSE), "counts.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
write.table(samples, "samples.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
wm(vsd, "vst_design.tsv"); wm(vsm, "vst_mean.tsv")
mc <- mcols(dds)
write.table(data.frame(gene_id = rownames(counts), dispGeneEst = f17(mc$dispGeneEst), dispGeneIter = mc$dispGeneIter,
                       dispFit = f17(mc$dispFit)), "dispersions.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
cf <- attr(dispersionFunction(dds), "coefficients")
write.table(data.frame(name = c(names(cf), paste0("size_factor_", samples$sample)), value = f17(c(cf, sizeFactors(dds)))),
            "coefficients.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
writeLines(capture.output(sessionInfo()), "sessionInfo.txt")
