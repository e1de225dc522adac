# ComBat-ref as published, written independently in R from the method description with
# edgeR 3.40.2 (no code of the authors' scripts is used), to check cohortnorm.combat_ref
# where the authors' script cannot be the reference: a single condition, where this
# project's design has an intercept (the script's has none and gives meaningless counts).
# Usage (repository root): Rscript tests/data/combat_ref_extra/combat_ref_fixtures.R [shared_reference_dir]
# With the shared reference directory given, it first checks that this implementation
# reproduces the authors' *_intbatch outputs on pasilla, marioni and airway (printed only).
# Writes tests/data/combat_ref_extra/gtex_intercept{,_genewise}{.tsv.gz,_params.tsv.gz}, INFO.tsv.
suppressMessages(library(edgeR))
out <- "tests/data/combat_ref_extra"
f17 <- function(x) sprintf("%.17g", x)

combat_ref_published <- function(counts, batch, group = NULL, genewise = FALSE) {
  batch <- as.factor(batch); lv <- levels(batch); k <- nlevels(batch)
  ind <- lapply(lv, function(b) which(batch == b))
  keep <- Reduce(`&`, lapply(ind, function(i) rowSums(counts[, i, drop = FALSE] != 0) > 0))
  y <- counts[keep, , drop = FALSE]
  full <- !is.null(group) && nlevels(group) > 1
  mod <- if (full) model.matrix(~ 0 + group) else matrix(1, ncol(y), 1)
  nmod <- if (full) ncol(mod) else 0
  dd <- lapply(seq_len(k), function(b) {
    mb <- mod[ind[[b]], , drop = FALSE]
    if (length(ind[[b]]) <= nmod || qr(mb)$rank < ncol(mod)) NULL else mb
  })
  disp <- sapply(seq_len(k), function(b) estimateGLMCommonDisp(y[, ind[[b]]], design = dd[[b]], subset = nrow(y)))
  ref <- which.min(disp)
  phi <- sapply(seq_len(k), function(b)
    if (genewise && !is.null(dd[[b]])) estimateGLMTagwiseDisp(y[, ind[[b]]], design = dd[[b]], dispersion = disp[b], prior.df = 0)
    else rep(disp[b], nrow(y)))
  ord <- seq_len(k); ord[c(1, ref)] <- ord[c(ref, 1)]
  others <- ord[-1]
  bcols <- sapply(others, function(b) as.numeric(batch == lv[b]))
  design <- cbind(bcols, mod)               # null model: batch indicators and an intercept
  fit <- glmFit(y, design, dispersion = phi[, as.integer(batch)], offset = log(colSums(y)), prior.count = 1e-4)
  mu <- fit$fitted.values
  gam <- fit$coefficients[, seq_along(others), drop = FALSE]
  refmax <- apply(mu[, ind[[ref]], drop = FALSE], 1, max)
  adj <- y
  for (j in seq_along(others)) {
    b <- others[j]; i <- ind[[b]]
    mo <- pmax(mu[, i, drop = FALSE], 1e-4)
    mn <- mo * exp(-gam[, j])
    cap <- gam[, j] < -0.2
    mn[cap, ] <- pmin(mn[cap, , drop = FALSE], refmax[cap])
    p <- pnbinom(y[, i], size = 1 / phi[, b], mu = mo)
    q <- qnbinom(p, size = 1 / phi[, ref], mu = mn)
    stay <- abs(p - 1) < 1e-6
    q[stay] <- y[, i][stay]
    adj[, i] <- q
  }
  res <- counts; res[keep, ] <- adj
  colnames(gam) <- paste0("gamma_hat_", lv[others])
  colnames(phi) <- paste0("phi_", lv)
  list(counts = res, disp = setNames(disp, lv), ref = lv[ref], params = data.frame(gene_id = rownames(y), gam, phi, check.names = FALSE))
}

load_filtered <- function(name) {
  d <- file.path("tests/data", name)
  cts <- as.matrix(read.delim(gzfile(file.path(d, "counts.tsv.gz")), row.names = 1, check.names = FALSE))
  storage.mode(cts) <- "integer"
  keep <- read.delim(gzfile(file.path(d, "reference", "edger_filterByExpr_keep.tsv.gz")), row.names = 1)
  s <- read.delim(file.path(d, "samples.tsv"), colClasses = "character", check.names = FALSE)
  stopifnot(identical(s$sample, colnames(cts)), identical(rownames(keep), rownames(cts)))
  list(cts = cts[as.logical(keep$keep), , drop = FALSE], s = s,
       cond = factor(s$condition, levels = unique(s$condition)),
       batch = if ("batch" %in% names(s)) s$batch else s$batch_synthetic)
}

args <- commandArgs(TRUE)
info <- c("file\tcall")
if (length(args)) for (name in c("pasilla", "marioni", "airway")) for (gw in c(FALSE, TRUE)) {
  d <- load_filtered(name)
  r <- combat_ref_published(d$cts, d$batch, d$cond, gw)
  f <- file.path(args[1], name, "reference", sprintf("extra_combat_ref%s_intbatch.tsv", if (gw) "_genewise" else ""))
  if (!file.exists(f)) f <- paste0(f, ".gz")
  a <- as.matrix(read.delim(if (grepl("gz$", f)) gzfile(f) else f, row.names = 1, check.names = FALSE))
  dif <- r$counts - a[rownames(r$counts), colnames(r$counts)]
  line <- sprintf("%s genewise=%s: identical to the authors' ComBat_ref(batch = as.integer(as.factor(batch))) output: %.6f of cells, max |diff| %d, reference %s",
                  name, gw, mean(dif == 0), max(abs(dif)), r$ref)
  cat(line, "\n"); info <- c(info, paste0("cross-check\t", line))
}

g <- load_filtered("gtex_lung_chr21")
for (gw in c(FALSE, TRUE)) {
  r <- combat_ref_published(g$cts, g$batch, g$cond, gw)
  stem <- paste0("gtex_intercept", if (gw) "_genewise" else "")
  con <- gzfile(file.path(out, paste0(stem, ".tsv.gz")), "w")
  write.table(data.frame(gene_id = rownames(r$counts), r$counts, check.names = FALSE), con, sep = "\t", quote = FALSE, row.names = FALSE)
  close(con)
  p <- r$params; for (j in 2:ncol(p)) p[[j]] <- f17(p[[j]])
  con <- gzfile(file.path(out, paste0(stem, "_params.tsv.gz")), "w")
  write.table(p, con, sep = "\t", quote = FALSE, row.names = FALSE)
  close(con)
  info <- c(info, sprintf("%s.tsv.gz\tcombat_ref_published(filtered gtex_lung_chr21, batch_synthetic, single condition, genewise=%s): design = batch indicators + intercept; dispersions %s; reference %s",
                          stem, gw, paste(names(r$disp), f17(r$disp), sep = "=", collapse = " "), r$ref))
}
writeLines(info, file.path(out, "INFO.tsv"))
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
