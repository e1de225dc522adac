# Time the R peers (edgeR, DESeq2, sva) on a benchmark matrix.
#
# Called by bench/run_benchmarks.py as
#   Rscript bench/peers_r.R counts=<tsv> samples=<tsv> out=<tsv> tasks=<a,b,...> \
#       [repeats=1] [logcpm=<tsv>] [nonpar_genes=1000,2000]
# Every task is timed inside R with system.time()["elapsed"], so R's start-up and
# package loading are excluded; reading the TSV is timed separately ("read").
# A task that errors is written with seconds = NA and the error message as its note.
# Output: a TSV with columns task, seconds, n_genes, n_samples, note.

args <- commandArgs(trailingOnly = TRUE)
opt <- list(repeats = "1", tasks = "", logcpm = "", nonpar_genes = "")
for (a in args) {
  kv <- strsplit(a, "=", fixed = TRUE)[[1]]
  opt[[kv[1]]] <- paste(kv[-1], collapse = "=")
}
tasks <- strsplit(opt$tasks, ",", fixed = TRUE)[[1]]
repeats <- as.integer(opt$repeats)

suppressPackageStartupMessages({
  library(data.table)
  library(edgeR)
})

results <- data.frame(task = character(), seconds = numeric(), n_genes = integer(),
                      n_samples = integer(), note = character(), stringsAsFactors = FALSE)
record <- function(task, seconds, x, note = "") {
  results[nrow(results) + 1, ] <<- list(task, seconds, nrow(x), ncol(x), note)
}
# Best of `repeats` elapsed times; the value of the last run is returned invisibly
# through `last_value` so that later tasks can use it without re-running.
last_value <- NULL
timed <- function(task, x, expr_fun, n = repeats) {
  best <- Inf
  ok <- tryCatch({
    for (i in seq_len(n)) {
      t <- system.time(value <- expr_fun())[["elapsed"]]
      best <- min(best, t)
    }
    last_value <<- value
    TRUE
  }, error = function(e) {
    record(task, NA_real_, x, paste("error:", conditionMessage(e)))
    FALSE
  })
  if (ok) record(task, best, x)
  ok
}

read_matrix <- function(path) {
  dt <- fread(path, sep = "\t", header = TRUE, data.table = TRUE, showProgress = FALSE)
  ids <- dt[[1]]
  m <- as.matrix(dt[, -1, with = FALSE])
  rownames(m) <- ids
  m
}

samples <- fread(opt$samples, sep = "\t", header = TRUE, data.table = FALSE)
group <- factor(samples$condition)
batch <- factor(samples$batch)
mod <- model.matrix(~group)

counts <- NULL
need_counts <- any(!grepl("^ComBat_(par|nonpar)", tasks))
if (need_counts) {
  t_read <- system.time(counts <- read_matrix(opt$counts))[["elapsed"]]
  record("read", t_read, counts, "data.table::fread + as.matrix")
  storage.mode(counts) <- "double"
}

keep <- NULL
filtered <- NULL
nf <- NULL
for (task in tasks) {
  if (task == "filterByExpr") {
    if (timed(task, counts, function() filterByExpr(counts, group = group))) {
      keep <- last_value
    }
  } else if (startsWith(task, "calcNormFactors_")) {
    method <- sub("calcNormFactors_", "", task)
    if (is.null(filtered)) filtered <- counts[if (is.null(keep)) TRUE else keep, , drop = FALSE]
    if (timed(task, filtered, function() calcNormFactors(filtered, method = method)) &&
        method == "TMM") {
      nf <- last_value
    }
  } else if (task == "cpm_log") {
    if (is.null(filtered)) filtered <- counts[if (is.null(keep)) TRUE else keep, , drop = FALSE]
    lib <- colSums(filtered) * (if (is.null(nf)) 1 else nf)
    timed(task, filtered, function() cpm(filtered, lib.size = lib, log = TRUE, prior.count = 2))
  } else if (task == "DESeq2_ratio") {
    suppressPackageStartupMessages(library(DESeq2))
    if (is.null(filtered)) filtered <- counts[if (is.null(keep)) TRUE else keep, , drop = FALSE]
    timed(task, filtered, function() estimateSizeFactorsForMatrix(filtered))
  } else if (task == "ComBat_seq") {
    suppressPackageStartupMessages(library(sva))
    if (is.null(filtered)) filtered <- counts[if (is.null(keep)) TRUE else keep, , drop = FALSE]
    timed(task, filtered, function() {
      invisible(capture.output(r <- ComBat_seq(filtered, batch = batch, group = group)))
      r
    }, n = 1)
  } else if (task %in% c("ComBat_par", "ComBat_nonpar")) {
    suppressPackageStartupMessages(library(sva))
    logcpm <- read_matrix(opt$logcpm)
    par <- task == "ComBat_par"
    sizes <- if (par || opt$nonpar_genes == "") nrow(logcpm) else
      as.integer(strsplit(opt$nonpar_genes, ",", fixed = TRUE)[[1]])
    for (g in sizes) {
      sub <- logcpm[seq_len(min(g, nrow(logcpm))), , drop = FALSE]
      timed(task, sub, function() {
        invisible(capture.output(r <- suppressMessages(
          ComBat(sub, batch = batch, mod = mod, par.prior = par))))
        r
      }, n = if (par) repeats else 1)
    }
  } else {
    record(task, NA_real_, matrix(0, 0, 0), "unknown task")
  }
}
fwrite(results, opt$out, sep = "\t")
