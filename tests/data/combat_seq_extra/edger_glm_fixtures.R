# Fixtures for tests/test_edger_glm.py (edgeR 3.40.2, R 4.2.2).
# Run from this folder:  Rscript edger_glm_fixtures.R
# Uses the marioni counts restricted to filterByExpr-kept genes and batch R1 (7 samples),
# the same kind of input ComBat_seq hands to edgeR.
suppressPackageStartupMessages(library(edgeR))
counts <- as.matrix(read.delim(gzfile("../marioni/counts.tsv.gz"), row.names = 1, check.names = FALSE))
samples <- read.delim("../marioni/samples.tsv", colClasses = "character")
keep <- read.delim(gzfile("../marioni/reference/edger_filterByExpr_keep.tsv.gz"))$keep
storage.mode(counts) <- "double"
r1 <- samples$batch == "R1"
y <- counts[keep, r1]
y <- y[rowSums(y == 0) < ncol(y), ]
cond <- factor(samples$condition[r1])
mod <- model.matrix(~cond)
f17 <- function(x) sprintf("%.17g", x)
out <- function(m, file) {
  m <- as.matrix(m)
  df <- data.frame(gene_id = rownames(y), apply(m, 2, f17), check.names = FALSE)
  write.table(df, gzfile(file), sep = "\t", quote = FALSE, row.names = FALSE)
}
common_null <- estimateGLMCommonDisp(y, design = NULL, subset = nrow(y))
common_mod <- estimateGLMCommonDisp(y, design = mod, subset = nrow(y))
tag <- estimateGLMTagwiseDisp(y, design = mod, dispersion = common_mod, prior.df = 0)
writeLines(c(paste0("common_null\t", f17(common_null)), paste0("common_mod\t", f17(common_mod))),
           "marioni_R1_common_disp.tsv")
out(cbind(tagwise = tag), "marioni_R1_tagwise_disp.tsv.gz")
apl <- adjustedProfileLik(0.05, y, mod, log(colSums(y)))
out(cbind(apl = apl), "marioni_R1_apl_0.05.tsv.gz")
# glmFit on all 10 samples: levenberg path (batch + condition) and oneway path (batch only)
yall <- counts[keep, ]
yall <- yall[rowSums(yall) > 0, ]
batch <- factor(samples$batch); condall <- factor(samples$condition)
design <- cbind(model.matrix(~ -1 + batch), condLiver = as.numeric(condall == "Liver"))
y <- yall
fit <- glmFit(DGEList(yall), design = design, dispersion = 0.02, prior.count = 1e-4)
out(cbind(fit$coefficients), "marioni_glmfit_levenberg_coef.tsv.gz")
out(cbind(fit$unshrunk.coefficients), "marioni_glmfit_levenberg_unshrunk.tsv.gz")
out(fit$fitted.values, "marioni_glmfit_levenberg_fitted.tsv.gz")
fit1 <- glmFit(DGEList(yall), design = model.matrix(~ -1 + batch), dispersion = 0.02, prior.count = 1e-4)
out(cbind(fit1$coefficients), "marioni_glmfit_oneway_coef.tsv.gz")
out(fit1$fitted.values, "marioni_glmfit_oneway_fitted.tsv.gz")
cat(fit$method, fit1$method, "\n")
