"""How far PyDESeq2's VST and ours are from DESeq2's, on the real reference datasets.

For each dataset in ``tests/data`` with DESeq2 VST references (DESeq2 1.38.3, made by
``tests/data/scripts/reference_extra.R`` on the filterByExpr-filtered counts), computes the
blind VST with ``fitType`` parametric and mean, with PyDESeq2 (``DeseqDataSet.vst``,
``use_design=False``) and with :mod:`cohortnorm.vst`, and prints the largest absolute
difference from DESeq2 over every value of the reference file (airway and pasilla hold
every 8th / 4th gene)::

    .venv/bin/python bench/vst_vs_pydeseq2.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import COUNT_DATASETS, load_dataset  # noqa: E402

from cohortnorm.vst import variance_stabilizing_transformation  # noqa: E402


def _pydeseq2_vst(counts: pd.DataFrame, fit_type: str) -> pd.DataFrame:
    from pydeseq2.dds import DeseqDataSet

    metadata = pd.DataFrame({"one": ["a"] * counts.shape[1]}, index=counts.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(
            counts=counts.T.astype(int), metadata=metadata, design="~1", quiet=True, n_cpus=1
        )
        dds.vst(use_design=False, fit_type=fit_type)
    return pd.DataFrame(dds.layers["vst_counts"].T, index=counts.index, columns=counts.columns)


def main() -> None:
    try:
        import pydeseq2

        version = pydeseq2.__version__
    except ImportError:
        version = None
    print("| dataset | VST | PyDESeq2 max abs diff | cohortnorm max abs diff |")
    print("|---|---|---|---|")
    for name in COUNT_DATASETS:
        dataset = load_dataset(name)
        keep = dataset.reference("edger_filterByExpr_keep")["keep"].to_numpy()
        counts = dataset.counts.loc[keep]
        for fit_type in ("parametric", "mean"):
            stem = f"extra_deseq2_vst_blind_{fit_type}"
            if not dataset.has_reference(stem):
                continue
            ref = dataset.reference(stem)
            ours = variance_stabilizing_transformation(counts, fit_type=fit_type)
            ours_err = float(np.max(np.abs(ours.loc[ref.index].to_numpy() - ref.to_numpy())))
            if version is None:
                theirs = "not installed"
            else:
                pv = _pydeseq2_vst(counts, fit_type)
                theirs = f"{np.max(np.abs(pv.loc[ref.index].to_numpy() - ref.to_numpy())):.2g}"
            print(f"| {name} | blind, {fit_type} | {theirs} | {ours_err:.2g} |")
    if version:
        print(f"\nPyDESeq2 {version}; DESeq2 1.38.3 references.")


if __name__ == "__main__":
    main()
