# DESeq2 rlog(blind=FALSE) and limma removeBatchEffect(batch2, covariates) references for
# cohortnorm.rlog and cohortnorm.limma, from the datasets in tests/data.
# Usage (from the repository root): Rscript tests/data/rlog_limma_extra/rlog_limma_fixtures.R
# Tested with Debian bookworm: R 4.2.2, DESeq2 1.38.3, limma 3.54.1.
# Numbers are written with sprintf("%.17g") (exact double round trip), gzip-compressed.
suppressMessages({library(DESeq2); library(limma)})
OUT <- "tests/data/rlog_limma_extra"
f17 <- function(x) sprintf("%.17g", x)
rd <- function(path) read.delim(gzfile(path), row.names = 1, check.names = FALSE, colClasses = c("character"))
wmat <- function(m, file) {
  out <- data.frame(gene_id = rownames(m), matrix(f17(m), nrow = nrow(m)), check.names = FALSE)
  names(out) <- c("gene_id", colnames(m))
  con <- gzfile(file.path(OUT, file), "w"); write.table(out, con, sep = "\t", quote = FALSE, row.names = FALSE); close(con)
}
wtab <- function(df, file) {
  con <- gzfile(file.path(OUT, file), "w"); write.table(df, con, sep = "\t", quote = FALSE, row.names = FALSE); close(con)
}
load_ds <- function(name) {
  D <- file.path("tests/data", name)
  counts <- as.matrix(read.delim(gzfile(file.path(D, "counts.tsv.gz")), row.names = 1, check.names = FALSE))
  storage.mode(counts) <- "integer"
  samples <- read.delim(file.path(D, "samples.tsv"), check.names = FALSE, stringsAsFactors = FALSE, colClasses = "character")
  stopifnot(identical(samples$sample, colnames(counts)))
  keep <- as.logical(rd(file.path(D, "reference", "edger_filterByExpr_keep.tsv.gz"))$keep)
  logcpm <- rd(file.path(D, "reference", "edger_logcpm_filtered_TMM.tsv.gz"))
  logcpm <- matrix(as.numeric(as.matrix(logcpm)), nrow = nrow(logcpm), dimnames = dimnames(logcpm))
  list(counts = counts[keep, , drop = FALSE], samples = samples, logcpm = logcpm)
}

## rlog(blind = FALSE): dispersions of the design, trend dispFit, then rlogData
rlog_design <- function(name, batch_col, with_condition) {
  ds <- load_ds(name)
  cd <- data.frame(row.names = ds$samples$sample,
                   batch = factor(ds$samples[[batch_col]], levels = unique(ds$samples[[batch_col]])),
                   condition = factor(ds$samples$condition, levels = unique(ds$samples$condition)))
  fml <- if (with_condition) ~batch + condition else ~batch
  dds <- DESeqDataSetFromMatrix(ds$counts, colData = cd, design = fml)
  dds <- estimateSizeFactors(dds)
  dds <- estimateDispersions(dds, fitType = "parametric", quiet = TRUE)
  rld <- rlog(dds, blind = FALSE)
  wmat(assay(rld), sprintf("rlog_design_%s.tsv.gz", name))
  wtab(data.frame(gene_id = rownames(dds), dispFit = f17(mcols(dds)$dispFit), rlogIntercept = f17(mcols(rld)$rlogIntercept)),
       sprintf("rlog_design_%s_genes.tsv.gz", name))
  wtab(data.frame(quantity = c(rep("size_factor", ncol(dds)), "betaPriorVar", "design"),
                  name = c(colnames(dds), "rlog", "formula"),
                  value = c(f17(sizeFactors(dds)), f17(attr(rld, "betaPriorVar")),
                            gsub("batch", batch_col, paste(deparse(fml), collapse = "")))),
       sprintf("rlog_design_%s_params.tsv.gz", name))
}
rlog_design("pasilla", "batch", TRUE)
rlog_design("gtex_lung_chr21", "batch_synthetic", FALSE)

## removeBatchEffect with batch2 (and an uncentred covariate), design ~condition
ds <- load_ds("pasilla")
cond <- factor(ds$samples$condition, levels = unique(ds$samples$condition))
dmat <- model.matrix(~cond)
lanes <- as.integer(ds$samples$n_lanes)
wmat(removeBatchEffect(ds$logcpm, batch = ds$samples$batch, batch2 = lanes, design = dmat),
     "limma_batch2_pasilla.tsv.gz")
libsize <- log2(colSums(ds$counts))
wmat(removeBatchEffect(ds$logcpm, batch = ds$samples$batch, batch2 = lanes, covariates = libsize, design = dmat),
     "limma_batch2_covariate_pasilla.tsv.gz")
# airway: batch2 = read length (integer; R sorts its levels numerically). batch, batch2 and
# condition need 1 + 3 + 4 + 1 = 9 columns for 8 samples: lm.fit drops the aliased ones.
ds <- load_ds("airway")
cond <- factor(ds$samples$condition, levels = unique(ds$samples$condition))
avglen <- as.integer(ds$samples$avgLength)
x <- ds$logcpm[1:2000, ]
wmat(removeBatchEffect(x, batch = ds$samples$batch, batch2 = avglen, design = model.matrix(~cond)),
     "limma_batch2_airway_first2000.tsv.gz")
writeLines(capture.output(sessionInfo()), file.path(OUT, "sessionInfo.txt"))
