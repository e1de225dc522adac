# tximport 1.26.1 summarizeToGene on a small case where gene g2 has zero abundance in
# every sample (length = mean of its transcripts' mean lengths) and g1 in one sample
# (geometric mean of the other samples). Usage: Rscript tximport_all_zero.R
suppressMessages(library(tximport))
tx <- c("t1", "t2", "t3", "t4", "t5")
m <- function(v) matrix(v, nrow = 5, dimnames = list(tx, c("s1", "s2", "s3")))
txi <- list(
  counts = m(c(10, 5, 0, 0, 7,   0, 0, 0, 0, 3,   4.5, 1, 0, 0, 9)),
  abundance = m(c(100, 30, 0, 0, 50,   0, 0, 0, 0, 20,   40, 12.5, 0, 0, 70)),
  length = m(c(1000, 500.5, 300, 350, 800,   990, 510, 310, 333.25, 810,   1001, 499, 305, 340, 799)))
t2g <- data.frame(tx = tx, gene = c("g1", "g1", "g2", "g2", "g3"))
f17 <- function(x) sprintf("%.17g", x)
for (cfa in c("no", "lengthScaledTPM")) {
  g <- suppressMessages(tximport::summarizeToGene(txi, t2g, countsFromAbundance = cfa))
  for (k in c("counts", "abundance", "length")) {
    out <- data.frame(gene_id = rownames(g[[k]]), matrix(f17(g[[k]]), nrow = nrow(g[[k]])))
    names(out) <- c("gene_id", colnames(g[[k]]))
    write.table(out, sprintf("tximport_all_zero_%s_cfa-%s.tsv", k, cfa), sep = "\t", quote = FALSE, row.names = FALSE)
  }
}
