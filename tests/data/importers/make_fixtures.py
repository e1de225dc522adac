"""Build the importer fixtures in this folder from the real data in tests/data.

Run from the repository root: ``.venv/bin/python tests/data/importers/make_fixtures.py``.
Every number comes from a real dataset; only the layout (and, for STAR, the strand
split) is made here. See README.md in this folder.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
DATA = HERE.parent
SALMON = DATA / "salmon_isoformswitch"
SALMON_SAMPLES = ["hESC_0", "hESC_1", "iPS_0", "iPS_1", "Fibroblasts_0", "Fibroblasts_1"]
KALLISTO_SAMPLES = ["hESC_0", "iPS_0", "Fibroblasts_0"]
RSEM_SAMPLES = ["hESC_0", "Fibroblasts_0"]


def write(path: Path, text: str, *, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def fmt(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def featurecounts() -> None:
    """GTEx chr21: real counts of 4 samples and 60 genes, real GENCODE v26 exons."""
    counts = pd.read_csv(DATA / "gtex_lung_chr21/counts.tsv.gz", sep="\t", index_col=0)
    counts = counts.iloc[:60, :4]
    gtf = pd.read_csv(
        DATA / "gtex_lung_chr21/gencode.v26.annotation.chr21.gtf.gz",
        sep="\t",
        header=None,
        comment="#",
        names=["chr", "src", "feature", "start", "end", "score", "strand", "frame", "attr"],
    )
    gtf = gtf[gtf["feature"] == "exon"]
    gtf["gene_id"] = gtf["attr"].str.extract(r'gene_id "([^"]+)"')[0]
    lengths = pd.read_csv(DATA / "gtex_lung_chr21/lengths.tsv.gz", sep="\t", index_col=0)
    bams = [f"/scratch/gtex/star/{sample}_Aligned.sortedByCoord.out.bam" for sample in counts]
    command = (
        '# Program:featureCounts v2.0.3; Command:"featureCounts" "-T" "8" "-s" "2" "-a" '
        '"gencode.v26.annotation.gtf" "-o" "counts.txt" ' + " ".join(f'"{b}"' for b in bams)
    )
    lines = [command, "\t".join(["Geneid", "Chr", "Start", "End", "Strand", "Length", *bams])]
    for gene, row in counts.iterrows():
        exons = gtf[gtf["gene_id"] == gene]
        lines.append(
            "\t".join(
                [
                    gene,
                    ";".join(exons["chr"]),
                    ";".join(map(str, exons["start"])),
                    ";".join(map(str, exons["end"])),
                    ";".join(exons["strand"]),
                    str(int(lengths.loc[gene, "length"])),
                    *map(str, row.to_numpy()),
                ]
            )
        )
    write(HERE / "featurecounts/counts.txt.gz", "\n".join(lines) + "\n")
    short = sorted(lines[2:], key=len)[:4]
    short[1] = short[1].rsplit("\t", 1)[0] + "\t-3"
    write(HERE / "broken/featurecounts_negative.txt", "\n".join(lines[:2] + short) + "\n")


def htseq() -> None:
    """Pasilla: DEXSeq exon-bin files (subset) and htseq-count-style gene files."""
    genes = pd.read_csv(DATA / "pasilla/counts.tsv.gz", sep="\t", index_col=0).iloc[:150]
    for sample in ["untreated1", "untreated3", "treated2"]:
        raw = pd.read_csv(
            DATA / f"pasilla/raw_exon_counts/{sample}fb.txt.gz",
            sep="\t",
            header=None,
            names=["id", "count"],
            dtype={"id": str},
        )
        subset = pd.concat([raw.iloc[:150], raw.iloc[-4:]])
        text = "".join(f"{i}\t{c}\n" for i, c in subset.itertuples(index=False))
        suffix = ".txt.gz" if sample == "treated2" else ".txt"
        write(HERE / f"dexseq/{sample}fb{suffix}", text, crlf=sample == "untreated3")
        summary = dict(raw.iloc[-4:].itertuples(index=False))
        htseq_summary = {
            "__no_feature": summary["_empty"],
            "__ambiguous": summary["_ambiguous"],
            "__too_low_aQual": summary["_lowaqual"],
            "__not_aligned": summary["_notaligned"],
            "__alignment_not_unique": 0,
        }
        body = "".join(f"{g}\t{c}\n" for g, c in genes[sample].items())
        body += "".join(f"{k}\t{v}\n" for k, v in htseq_summary.items())
        write(HERE / f"htseq/{sample}.counts.txt", body)
    # Broken: a count of 2.5 and a gene missing in the second file.
    text = (HERE / "htseq/untreated1.counts.txt").read_text().splitlines()
    text[3] = text[3].split("\t")[0] + "\t2.5"
    write(HERE / "broken/htseq_fractional.txt", "\n".join(text) + "\n")
    text = (HERE / "htseq/untreated1.counts.txt").read_text().splitlines()
    write(HERE / "broken/htseq_missing_gene.txt", "\n".join(text[:5] + text[6:]) + "\n")
    text = (HERE / "htseq/untreated1.counts.txt").read_text().splitlines()
    text[4] = text[4].split("\t")[0] + "\t"
    write(HERE / "broken/htseq_empty_cell.txt", "\n".join(text) + "\n")


def star() -> None:
    """Pasilla gene counts in STAR ReadsPerGene.out.tab layout (strand split made up)."""
    genes = pd.read_csv(DATA / "pasilla/counts.tsv.gz", sep="\t", index_col=0).iloc[:150]
    for sample in ["untreated3", "treated2"]:
        raw = pd.read_csv(
            DATA / f"pasilla/raw_exon_counts/{sample}fb.txt.gz",
            sep="\t",
            header=None,
            names=["id", "count"],
        )
        summary = dict(raw.iloc[-4:].itertuples(index=False))
        reverse = genes[sample].to_numpy()
        forward = reverse // 40
        unstranded = reverse + forward
        lines = [
            f"N_unmapped\t{summary['_notaligned']}\t{summary['_notaligned']}\t"
            f"{summary['_notaligned']}",
            f"N_multimapping\t{summary['_lowaqual']}\t{summary['_lowaqual']}\t"
            f"{summary['_lowaqual']}",
            f"N_noFeature\t{summary['_empty']}\t{summary['_empty'] * 20}\t{summary['_empty']}",
            f"N_ambiguous\t{summary['_ambiguous']}\t{summary['_ambiguous'] // 10}\t"
            f"{summary['_ambiguous'] // 10}",
        ]
        lines += [
            f"{g}\t{u}\t{f}\t{r}"
            for g, u, f, r in zip(genes.index, unstranded, forward, reverse, strict=True)
        ]
        write(HERE / f"star/{sample}.ReadsPerGene.out.tab", "\n".join(lines) + "\n")
    text = (HERE / "star/untreated3.ReadsPerGene.out.tab").read_text().splitlines()
    write(
        HERE / "broken/star_three_columns.tab",
        "\n".join(line.rsplit("\t", 1)[0] for line in text) + "\n",
    )


def quantifiers() -> None:
    """Salmon quant.sf numbers rewritten as kallisto abundance.tsv and RSEM results."""
    tx2gene = pd.read_csv(SALMON / "tx2gene.tsv", sep="\t", index_col=0)["gene_id"]
    for sample in KALLISTO_SAMPLES:
        quant = pd.read_csv(
            SALMON / f"raw/{sample}/quant.sf.gz", sep="\t", float_precision="round_trip"
        )
        lines = ["target_id\tlength\teff_length\test_counts\ttpm"] + [
            f"{r.Name}\t{r.Length}\t{fmt(r.EffectiveLength)}\t{fmt(r.NumReads)}\t{fmt(r.TPM)}"
            for r in quant.itertuples()
        ]
        write(HERE / f"kallisto/{sample}/abundance.tsv.gz", "\n".join(lines) + "\n")
        if sample not in RSEM_SAMPLES:
            continue
        fpkm = quant["NumReads"] / quant["EffectiveLength"] / quant["NumReads"].sum() * 1e9
        fpkm = fpkm.fillna(0)
        gene_tpm = quant.groupby(tx2gene.loc[quant["Name"]].to_numpy())["TPM"].transform("sum")
        iso_pct = np.where(gene_tpm > 0, 100 * quant["TPM"] / gene_tpm, 0)
        lines = [
            "transcript_id\tgene_id\tlength\teffective_length\texpected_count\tTPM\tFPKM\tIsoPct"
        ] + [
            f"{r.Name}\t{tx2gene[r.Name]}\t{r.Length}\t{fmt(r.EffectiveLength)}\t"
            f"{fmt(r.NumReads)}\t{fmt(r.TPM)}\t{fpkm[i]:.2f}\t{iso_pct[i]:.2f}"
            for i, r in enumerate(quant.itertuples())
        ]
        write(HERE / f"rsem/{sample}.isoforms.results.gz", "\n".join(lines) + "\n")
    ref = {
        kind: pd.read_csv(
            SALMON / f"reference/tximport_gene_{kind}_cfa-no.tsv.gz",
            sep="\t",
            index_col=0,
            float_precision="round_trip",
        )
        for kind in ("counts", "abundance", "length")
    }
    members = tx2gene.groupby(tx2gene).apply(lambda s: ",".join(s.index))
    for sample in RSEM_SAMPLES:
        lines = [
            "gene_id\ttranscript_id(s)\tlength\teffective_length\texpected_count\tTPM\tFPKM"
        ] + [
            f"{gene}\t{members[gene]}\t{fmt(ref['length'].loc[gene, sample])}\t"
            f"{fmt(ref['length'].loc[gene, sample])}\t{fmt(ref['counts'].loc[gene, sample])}\t"
            f"{fmt(ref['abundance'].loc[gene, sample])}\t0.00"
            for gene in ref["counts"].index
        ]
        write(HERE / f"rsem/{sample}.genes.results.gz", "\n".join(lines) + "\n")


def broken_matrices() -> None:
    """Small matrices (first 6 pasilla genes) each with one defect."""
    counts = pd.read_csv(DATA / "pasilla/counts.tsv.gz", sep="\t").iloc[:6, :4]
    good = counts.to_csv(sep="\t", index=False)
    write(HERE / "matrix/pasilla_head.tsv", good)
    write(HERE / "matrix/pasilla_head_crlf.csv", counts.to_csv(index=False), crlf=True)
    write(HERE / "matrix/pasilla_head.tsv.gz", good)

    def variant(name: str, edit: re.Pattern[str] | None = None, **cells: str) -> None:
        lines = good.splitlines()
        for key, value in cells.items():
            row, column = map(int, key[1:].split("_"))
            fields = lines[row].split("\t")
            fields[column] = value
            lines[row] = "\t".join(fields)
        write(HERE / f"broken/{name}", "\n".join(lines) + "\n")

    variant("matrix_negative.tsv", c3_2="-4")
    variant("matrix_fractional.tsv", c2_3="7.5")
    variant("matrix_empty_cell.tsv", c4_1="")
    variant("matrix_na_cell.tsv", c4_1="NA")
    variant("matrix_text_cell.tsv", c5_2="twelve")
    variant("matrix_duplicate_gene.tsv", c3_0=counts.iloc[0, 0])
    variant("matrix_duplicate_sample.tsv", c0_2=counts.columns[1])
    variant("matrix_zero_sample.tsv", **{f"c{i}_3": "0" for i in range(1, 7)})
    moved = counts[[*counts.columns[1:], counts.columns[0]]]
    write(HERE / "broken/matrix_gene_id_last.tsv", moved.to_csv(sep="\t", index=False))
    write(
        HERE / "broken/matrix_no_gene_column.tsv",
        counts.iloc[:, 1:].to_csv(sep="\t", index=False),
    )
    write(
        HERE / "broken/matrix_r_rownames.tsv",
        counts.set_index("gene_id").to_csv(sep="\t").replace("gene_id\t", "", 1),
    )
    lines = good.splitlines()
    lines[2] += "\t5"
    write(HERE / "broken/matrix_ragged.tsv", "\n".join(lines) + "\n")


if __name__ == "__main__":
    featurecounts()
    htseq()
    star()
    quantifiers()
    broken_matrices()
