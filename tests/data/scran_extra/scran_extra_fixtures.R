# scran 1.26.2 / scuttle 1.8.4 calculateSumFactors outputs beyond the shared reference set.
# Usage (from the repository root): Rscript tests/data/scran_extra/scran_extra_fixtures.R
# Writes tests/data/scran_extra/*.tsv (17 significant digits) and sim_counts.tsv.gz.
# Inputs: tests/data/<dataset>/counts.tsv.gz + samples.tsv + reference/edger_filterByExpr_keep.tsv.gz,
# and a low-input cohort simulated here (seeded): 40 samples x 3000 genes, library sizes
# 1e4..6e4, 70% extra dropout, so min.mean = 0.1 and the default pool sizes 21..36 apply.
suppressMessages({requireNamespace("scran"); requireNamespace("scuttle")})
out <- "tests/data/scran_extra"
f17 <- function(x) sprintf("%.17g", x)
info <- character()
load_filtered <- function(name) {
  d <- file.path("tests/data", name)
  cts <- as.matrix(read.delim(gzfile(file.path(d, "counts.tsv.gz")), row.names = 1, check.names = FALSE))
  keep <- read.delim(gzfile(file.path(d, "reference", "edger_filterByExpr_keep.tsv.gz")), row.names = 1)
  stopifnot(identical(rownames(keep), rownames(cts)))
  s <- read.delim(file.path(d, "samples.tsv"), colClasses = "character", check.names = FALSE)
  stopifnot(identical(s$sample, colnames(cts)))
  list(cts = cts[as.logical(keep$keep), , drop = FALSE], s = s)
}
save_sf <- function(file, sf, samples, call) {
  w <- NULL
  v <- withCallingHandlers(sf, warning = function(e) { w <<- c(w, conditionMessage(e)); invokeRestart("muffleWarning") })
  write.table(data.frame(sample = samples, size_factor = f17(v)), file.path(out, file), sep = "\t", quote = FALSE, row.names = FALSE)
  info <<- c(info, paste(file, call, if (length(w)) paste("WARNING:", paste(w, collapse = " | ")) else "", sep = "\t"))
}
save_err <- function(key, expr, call) {
  msg <- tryCatch({ force(expr); "NO ERROR" }, error = function(e) gsub("\n", " ", conditionMessage(e)))
  info <<- c(info, paste(key, call, paste("ERROR:", msg), sep = "\t"))
}

# clusters from a sheet column (batch), as character labels: factor() sorts them
a <- load_filtered("airway")
save_sf("airway_clusters_batch_sizes2to4.tsv", scran::calculateSumFactors(a$cts, clusters = a$s$batch, sizes = 2:4),
        a$s$sample, "calculateSumFactors(filtered airway, clusters = samples$batch (character), sizes = 2:4)")
g <- load_filtered("gtex_lung_chr21")
save_sf("gtex_clusters_batch_synthetic.tsv", scran::calculateSumFactors(g$cts, clusters = g$s$batch_synthetic),
        g$s$sample, "calculateSumFactors(filtered gtex_lung_chr21, clusters = samples$batch_synthetic) [default sizes; 15 per cluster]")
save_sf("gtex_clusters_batch_synthetic_sizes3to15by2.tsv",
        scran::calculateSumFactors(g$cts, clusters = g$s$batch_synthetic, sizes = seq(3, 15, 2)),
        g$s$sample, "calculateSumFactors(filtered gtex_lung_chr21, clusters = samples$batch_synthetic, sizes = seq(3, 15, 2))")
p <- load_filtered("pasilla")
save_sf("pasilla_defaults_7samples.tsv", scran::calculateSumFactors(p$cts), p$s$sample,
        "calculateSumFactors(filtered pasilla) [7 samples < 21: no pool fits]")
save_sf("pasilla_sizes_3_5_99.tsv", scran::calculateSumFactors(p$cts, sizes = c(5, 3, 99)), p$s$sample,
        "calculateSumFactors(filtered pasilla, sizes = c(5, 3, 99)) [unsorted; 99 dropped silently]")
save_err("pasilla_one_sample_cluster", scran::calculateSumFactors(p$cts, clusters = c(1, 2, 2, 2, 2, 2, 2)),
         "calculateSumFactors(filtered pasilla, clusters = c(1,2,2,2,2,2,2))")
save_err("pasilla_duplicate_sizes", scran::calculateSumFactors(p$cts, sizes = c(3, 3, 4)),
         "calculateSumFactors(filtered pasilla, sizes = c(3,3,4))")
z <- p$cts; z[, 3] <- 0L
save_err("pasilla_zero_sample", scran::calculateSumFactors(z), "calculateSumFactors(filtered pasilla with sample 3 set to 0)")

# simulated low-input cohort
set.seed(20261203)
ng <- 3000; nc <- 40
mu <- rgamma(ng, shape = 0.6, rate = 0.6) * 5
lib <- exp(runif(nc, log(1e4), log(6e4)))
prop <- mu / sum(mu)
sim <- matrix(rnbinom(ng * nc, size = 2, mu = outer(prop, lib)), ng, nc)
sim[matrix(runif(ng * nc) < 0.7, ng, nc)] <- 0L
sim <- sim[rowSums(sim) > 0, ]
rownames(sim) <- sprintf("g%04d", seq_len(nrow(sim))); colnames(sim) <- sprintf("s%02d", seq_len(nc))
con <- gzfile(file.path(out, "sim_counts.tsv.gz"), "w")
write.table(data.frame(gene_id = rownames(sim), sim, check.names = FALSE), con, sep = "\t", quote = FALSE, row.names = FALSE)
close(con)
site <- rep(c("siteB", "siteA", "siteC"), length.out = nc)
save_sf("sim_defaults.tsv", scran::calculateSumFactors(sim), colnames(sim), "calculateSumFactors(sim) [defaults: min.mean 0.1, sizes 21..36]")
save_sf("sim_clusters_site.tsv", scran::calculateSumFactors(sim, clusters = site, sizes = seq(3, 13, 2)), colnames(sim),
        "calculateSumFactors(sim, clusters = rep(c('siteB','siteA','siteC'), length.out = 40), sizes = seq(3, 13, 2))")
save_sf("sim_maxclustersize15.tsv", scran::calculateSumFactors(sim, sizes = c(4, 6, 8), max.cluster.size = 15), colnames(sim),
        "calculateSumFactors(sim, sizes = c(4, 6, 8), max.cluster.size = 15) [one cluster split into 0-1, 0-2, 0-3]")
save_sf("sim_minmean_2.tsv", scran::calculateSumFactors(sim, min.mean = 2), colnames(sim), "calculateSumFactors(sim, min.mean = 2)")
save_sf("sim_x7.tsv", scran::calculateSumFactors(sim * 7L), colnames(sim),
        "calculateSumFactors(sim * 7) [median library size between 5e4 and 1e5: UMI warning]")
save_sf("sim_subset_row_odd.tsv", scran::calculateSumFactors(sim, subset.row = seq(1, nrow(sim), 2)), colnames(sim),
        "calculateSumFactors(sim, subset.row = seq(1, nrow(sim), 2)) [odd rows; min.mean still from all genes]")
save_sf("sim_scaling.tsv", scran::calculateSumFactors(sim, scaling = colSums(sim) * rep(c(1, 1.5, 0.8, 1.2), 10)), colnames(sim),
        "calculateSumFactors(sim, scaling = colSums(sim) * rep(c(1, 1.5, 0.8, 1.2), 10))")
save_sf("sim_refclust_siteC.tsv", scran::calculateSumFactors(sim, clusters = site, sizes = seq(3, 13, 2), ref.clust = "siteC"), colnames(sim),
        "calculateSumFactors(sim, clusters = site, sizes = seq(3, 13, 2), ref.clust = 'siteC')")
save_err("sim_minmean_huge", scran::calculateSumFactors(sim, min.mean = 1e9), "calculateSumFactors(sim, min.mean = 1e9)")

# non-positive raw estimates, repaired by cleanSizeFactors (positive = TRUE): small matrices
# where the first sample has reads in five genes only; seeds found by scanning 1..200
for (seed in c(1, 5, 7)) {
  set.seed(seed)
  n <- 12
  x <- matrix(rpois(200 * n, outer(rgamma(200, 0.3, 1/3), runif(n, 0.2, 3))), 200, n)
  x[, 1] <- 0L; x[1:5, 1] <- rpois(5, 40)
  rownames(x) <- sprintf("g%03d", seq_len(nrow(x))); colnames(x) <- sprintf("s%02d", seq_len(n))
  con <- gzfile(file.path(out, sprintf("neg_seed%d_counts.tsv.gz", seed)), "w")
  write.table(data.frame(gene_id = rownames(x), x, check.names = FALSE), con, sep = "\t", quote = FALSE, row.names = FALSE)
  close(con)
  save_sf(sprintf("neg_seed%d.tsv", seed), scran::calculateSumFactors(x, sizes = 2:5, min.mean = 0.1), colnames(x),
          sprintf("calculateSumFactors(neg_seed%d_counts, sizes = 2:5, min.mean = 0.1) [positive = TRUE: cleanSizeFactors]", seed))
  raw <- suppressWarnings(scuttle:::.per_cluster_normalize(x, sizes = 2:5, min.mean = 0.1, positive = FALSE)$final.nf)
  info <<- c(info, paste(sprintf("neg_seed%d_raw", seed), "scuttle:::.per_cluster_normalize(positive = FALSE)$final.nf",
                         paste(f17(raw), collapse = " "), sep = "\t"))
}
writeLines(c(paste("file", "call", "condition", sep = "\t"), info), file.path(out, "INFO.tsv"))
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
