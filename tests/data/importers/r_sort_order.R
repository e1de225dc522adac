# Order in which R 4.2.2 (Debian, ICU collation, LC_COLLATE=C.UTF-8) sorts gene-like IDs:
# tximport's gene order is sort(unique(gene)). Usage: Rscript r_sort_order.R
set.seed(1)
alphabet <- strsplit(" _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefgxyzABCDEFGXYZ", "")[[1]]
random_ids <- replicate(300, paste0(sample(c(alphabet, rep(c("a", "A", "1", "_"), 5)), sample(1:6, 1), replace = TRUE), collapse = ""))
fixed <- c("XLOC_000090:CORT", "XLOC_000090:Cort", "XLOC_1", "XLOC_10", "ENSG00000141956.13",
           "ENSG00000141956", "FBgn0000003", "Gene-1", "gene_1", "GENE.1", "ab", "aB", "Ab", "AB")
ids <- unique(c(fixed, random_ids))
ids <- ids[!grepl("^ |\t| $", ids)]
writeLines(sort(ids), "r_sort_order.txt")
