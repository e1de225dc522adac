"""Copy the DESeq2 VST / dispersion references into tests/data, made small.

Usage: python extract_deseq2_vst_fixtures.py <shared reference dir> <tests/data dir>

The sources are the outputs of ``reference_extra.R`` (beside this script; DESeq2 1.38.3,
R 4.2.2). Values are copied as written there (17 significant digits), never recomputed:

* ``extra_deseq2_dispersion_params.tsv``: unchanged (size factors, trend coefficients);
* ``extra_deseq2_dispersions.tsv.gz``: only the columns the tests read;
* ``extra_deseq2_vst_*.tsv.gz``: every gene, except for airway (15,926 genes) and pasilla
  (7,919 genes), where every 8th (airway) or 4th (pasilla)
  gene (rows 1, 9, 17, ... or 1, 5, 9, ...) is kept to keep the repository small. The trend
  coefficients in the params file still cover the whole fit.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

DATASETS = ["marioni", "pasilla", "airway", "gtex_lung_chr21"]
COLUMNS = [
    "baseMean",
    "allZero",
    "blind_dispGeneEst",
    "blind_dispGeneIter",
    "blind_dispFit_parametric",
    "blind_dispFit_mean",
    "nsub1000_in_subset",
    "nsub1000_dispGeneEst",
    "design_dispGeneEst",
    "design_dispGeneIter",
    "design_dispFit",
]
EVERY = {"airway": 8, "pasilla": 4}


def read_text(path: Path) -> str:
    if path.suffix == ".gz":
        # R's gzfile() output can carry trailing bytes that Python's gzip refuses.
        return subprocess.run(["zcat", str(path)], capture_output=True, check=False).stdout.decode()
    return path.read_text()


def find(ref: Path, stem: str) -> Path | None:
    for candidate in sorted(ref.glob(stem + "*")):
        return candidate
    return None


def main(shared: Path, out: Path) -> None:
    for name in DATASETS:
        ref = shared / name / "reference"
        dest = out / name / "reference"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            ref / "extra_deseq2_dispersion_params.tsv", dest / "extra_deseq2_dispersion_params.tsv"
        )
        disp = read_text(find(ref, "extra_deseq2_dispersions.tsv"))
        table = pd.read_csv(io.StringIO(disp), sep="\t", dtype=str)
        with gzip.open(dest / "extra_deseq2_dispersions.tsv.gz", "wt", compresslevel=9) as h:
            table[["gene_id", *COLUMNS]].to_csv(h, sep="\t", index=False)
        for path in sorted(ref.glob("extra_deseq2_vst_*")):
            lines = read_text(path).splitlines(keepends=True)
            step = EVERY.get(name, 1)
            kept = [lines[0], *lines[1::step]]
            target = dest / (path.name if path.suffix == ".gz" else path.name + ".gz")
            with gzip.open(target, "wt", compresslevel=9) as h:
                h.writelines(kept)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
