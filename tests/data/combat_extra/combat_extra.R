# Extra sva::ComBat reference cases on marioni (filtered TMM log-CPM), for tests/test_combat.py.
# Usage (from this folder): Rscript combat_extra.R
# Tested with Debian bookworm: R 4.2.2, sva 3.46.0. Numbers written with %.17g.
suppressMessages(library(sva))
lc <- as.matrix(read.delim(gzfile("../marioni/reference/edger_logcpm_filtered_TMM.tsv.gz"),
                           row.names = 1, check.names = FALSE))
samples <- read.delim("../marioni/samples.tsv", colClasses = "character")
stopifnot(identical(samples$sample, colnames(lc)))
condition <- factor(samples$condition, levels = unique(samples$condition))
batch <- samples$batch
# A numeric covariate (arbitrary, fixed) and a batch vector where the last sample is alone.
numcov <- c(1.5, 2.25, 0.75, 3, 2, 1.25, 2.75, 0.5, 1.75, 2.5)
batch_single <- batch; batch_single[length(batch_single)] <- "R3"
write.table(data.frame(sample = samples$sample, condition = samples$condition, batch = batch,
                       batch_single = batch_single, numcov = sprintf("%.17g", numcov)),
            "samples_extra.tsv", sep = "\t", quote = FALSE, row.names = FALSE)
mod <- model.matrix(~condition)
mod_num <- model.matrix(~condition + numcov)
np_rows <- 1:500  # non-parametric ComBat is O(genes^2): subsets keep R fast

# Missing values: a fixed pattern on the first 500 genes (1 or 2 NAs per gene in some genes).
lc_na <- lc[np_rows, ]
na_pos <- cbind(row = c(3, 3, 10, 57, 120, 121, 250, 251, 251, 499),
                col = c(1, 8, 4, 10, 2, 2, 6, 3, 9, 7))
lc_na[na_pos] <- NA
write.table(data.frame(gene_id = rownames(lc_na)[na_pos[, 1]], sample = colnames(lc_na)[na_pos[, 2]]),
            "nan_positions.tsv", sep = "\t", quote = FALSE, row.names = FALSE)

f17 <- function(m, file) {
  out <- data.frame(rownames(m), matrix(sprintf("%.17g", m), nrow = nrow(m)), check.names = FALSE)
  names(out) <- c("gene_id", colnames(m))
  con <- gzfile(file, "w"); write.table(out, con, sep = "\t", quote = FALSE, row.names = FALSE); close(con)
}
run <- function(file, ...) {
  msgs <- capture.output(res <- withCallingHandlers(ComBat(...), message = function(m) {
    cat("MESSAGE:", conditionMessage(m)); invokeRestart("muffleMessage") }), type = "output")
  f17(res, file)
  cat(file, ":", msgs, sep = "\n  ")
}
run("refbatch_R1_parametric.tsv.gz", dat = lc, batch = batch, mod = mod, ref.batch = "R1")
run("refbatch_R1_nonparametric_first500.tsv.gz", dat = lc[np_rows, ], batch = batch, mod = mod,
    ref.batch = "R1", par.prior = FALSE)
run("meanonly_parametric.tsv.gz", dat = lc, batch = batch, mod = mod, mean.only = TRUE)
run("meanonly_nonparametric_first500.tsv.gz", dat = lc[np_rows, ], batch = batch, mod = mod,
    mean.only = TRUE, par.prior = FALSE)
run("numcov_parametric.tsv.gz", dat = lc, batch = batch, mod = mod_num)
run("numcov_nonparametric_first500.tsv.gz", dat = lc[np_rows, ], batch = batch, mod = mod_num,
    par.prior = FALSE)
run("singlesample_parametric.tsv.gz", dat = lc, batch = batch_single, mod = mod)
run("singlesample_nonparametric_first500.tsv.gz", dat = lc[np_rows, ], batch = batch_single,
    mod = mod, par.prior = FALSE)
run("nan_parametric_first500.tsv.gz", dat = lc_na, batch = batch, mod = mod)
run("nan_nonparametric_first500.tsv.gz", dat = lc_na, batch = batch, mod = mod, par.prior = FALSE)
run("nan_refbatch_R2_parametric_first500.tsv.gz", dat = lc_na, batch = batch, mod = mod, ref.batch = "R2")
cat("sva", as.character(packageVersion("sva")), R.version.string, "\n")
