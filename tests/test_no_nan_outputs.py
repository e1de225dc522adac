"""Nothing NaN or Inf under a final name: every output of whole runs, scanned cell by cell.

The demo config as shipped, a run with the other methods and Parquet matrices, a Salmon
run, and runs that must fail part-way (an empty sample after filtering, a saturated
ComBat design): in each, every table and matrix under ``outdir`` is read back and
searched for NaN/Inf, as numbers and as the words R and pandas write for them. A failed
run must also leave no table under a final name that the failing step or a later one
makes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import DATA, REPO
from test_workflow import base_config, run_snakemake, salmon_config

pytestmark = pytest.mark.e2e

# Words a writer uses for a missing or non-finite number. An empty cell is allowed only
# where a table documents it (QC metrics without a batch), so it is not scanned for.
NON_FINITE_WORDS = {"nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity", "na", "none"}


def non_finite_cells(path: Path) -> list[str]:
    """Where a table or matrix holds NaN/Inf: ``row/column`` labels (at most 5).

    A column that holds numbers is scanned for the words of NON_FINITE_WORDS and for
    values that parse to ±inf; a column of text only (labels such as ``none``) is not.
    """
    if path.suffix == ".parquet":
        frame = pq.read_table(path).to_pandas()
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    else:
        # MultiQC custom content opens with '#' lines of YAML configuration.
        frame = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            compression="infer",
            comment="#" if path.name.endswith("_mqc.tsv") else None,
        )
    found = []
    for column in frame.columns[1:]:
        values = frame[column]
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values.to_numpy())
        else:
            text = values.astype(str).str.strip()
            numbers = pd.to_numeric(text, errors="coerce")
            if not numbers.notna().any():
                continue
            bad = (text.str.lower().isin(NON_FINITE_WORDS) | np.isinf(numbers)).to_numpy()
        found += [f"{row}/{column}" for row in frame.iloc[:, 0][bad][:5]]
        if len(found) >= 5:
            break
    return found


def scanned_files(outdir: Path) -> list[Path]:
    """Every output table or matrix (logs, benchmarks and run bookkeeping aside)."""
    skip = {"logs", "benchmarks", ".cohortnorm"}
    return sorted(
        path
        for path in outdir.rglob("*")
        if path.is_file()
        and not skip.intersection(path.relative_to(outdir).parts)
        and (path.suffix in {".tsv", ".parquet"} or path.name.endswith(".tsv.gz"))
    )


def assert_all_finite(outdir: Path) -> int:
    files = scanned_files(outdir)
    bad = {str(path.relative_to(outdir)): non_finite_cells(path) for path in files}
    bad = {name: cells for name, cells in bad.items() if cells}
    assert not bad, bad
    return len(files)


def demo_config(workdir: Path) -> Path:
    """config/config.yaml as shipped, its relative inputs resolved, outdir in `workdir`."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["samples"] = str(REPO / config["samples"])
    config["counts"]["path"] = str(REPO / config["counts"]["path"])
    config["lengths"] = str(REPO / config["lengths"])
    config["outdir"] = str(workdir / "results")
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_outputs_are_finite(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, {}, config_path=demo_config(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert assert_all_finite(tmp_path / "results") >= 20


def test_other_methods_and_parquet_outputs_are_finite(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        normalization={
            "method": "RLE",
            "size_factor_type": "poscounts",
            "normalized_counts_factors": "method",
        },
        # Two batch methods side by side, VST (default) and rlog with the design.
        batch_correction={
            "method": ["combat_seq", "remove_batch_effect"],
            "batch": "batch",
            "covariates": ["condition"],
        },
        transforms={"vst": {"blind": False}, "rlog": {"enabled": True, "blind": False}},
        io={"matrix_format": "parquet"},
        tpm={"unit": "FPKM", "source": "batch_corrected"},
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    outdir = tmp_path / "results"
    for name in ("batch/combat_seq_counts", "batch/removebatch_logcpm"):
        assert (outdir / f"{name}.parquet").exists()
    for name in ("vst", "rlog"):
        assert (outdir / "normalization" / f"{name}.parquet").exists()
    assert assert_all_finite(outdir) >= 20


def test_scran_combat_ref_and_design_outputs_are_finite(tmp_path: Path) -> None:
    """scran with clusters, ComBat-ref, the design table, the panel and MultiQC files."""
    config = base_config(
        tmp_path,
        normalization={
            "method": "TMM",
            "size_factor_type": "scran",
            "scran": {"clusters": "condition"},
        },
        batch_correction={"method": "combat_ref", "batch": "batch", "covariates": ["condition"]},
        io={"matrix_format": "parquet"},
        tpm={"source": "batch_corrected"},
        qc={"gpca_permutations": 20, "genes_of_interest": ["FBgn0000008"]},
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    outdir = tmp_path / "results"
    for name in ("batch/combat_ref_counts.parquet", "qc/design.tsv", "qc/genes_of_interest.png"):
        assert (outdir / name).exists(), name
    assert assert_all_finite(outdir) >= 25
    # pasilla: 3 and 4 samples per condition, fewer than scran's smallest pool (21): each
    # cluster gets library-size factors, rescaled between clusters, as scran's R output.
    factors = pd.read_csv(outdir / "normalization" / "size_factors.tsv", sep="\t", index_col=0)
    ref = pd.read_csv(
        DATA / "pasilla" / "reference" / "extra_scran_sumfactors_clusters.tsv.gz",
        sep="\t",
        index_col=0,
        float_precision="round_trip",
    )["size_factor"]
    assert np.max(np.abs(factors["size_factor"] / ref.loc[factors.index] - 1)) <= 1e-9
    log = (outdir / "logs" / "size_factors.log").read_text()
    assert "WARNING" in log and "fewer than the smallest pool size 21" in log


def test_quantifier_outputs_are_finite(tmp_path: Path) -> None:
    config = salmon_config(tmp_path, "lengthScaledTPM")
    # 312 genes: fewer than vst()'s nsub, so the full VST (varianceStabilizingTransformation).
    config["transforms"] = {"vst": {"nsub": None}}
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert assert_all_finite(tmp_path / "results") >= 15


def _sheet_with(tmp_path: Path, samples: list[str]) -> str:
    sheet = pd.read_csv(DATA / "pasilla" / "samples.tsv", sep="\t")
    sheet = sheet.loc[sheet["sample"].isin(samples)]
    path = tmp_path / "samples.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    return str(path)


def test_empty_sample_stops_before_any_nan(tmp_path: Path) -> None:
    # treated1's reads all fall on genes the filter removes: its size factor would be 0/0.
    counts = pd.read_csv(DATA / "pasilla" / "counts.tsv.gz", sep="\t", index_col=0)
    counts["treated1"] = 0
    counts.loc[counts.index[0], "treated1"] = 5  # a read on a gene no other sample has
    counts.iloc[0, counts.columns != "treated1"] = 0
    path = tmp_path / "counts.tsv"
    counts.to_csv(path, sep="\t", index_label="gene_id")
    config = base_config(tmp_path, counts={"format": "matrix", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert "treated1" in result.stdout + result.stderr
    outdir = tmp_path / "results"
    assert not (outdir / "normalization" / "size_factors.tsv").exists()
    assert not (outdir / "normalization" / "logcpm.tsv").exists()
    assert_all_finite(outdir)


def test_saturated_combat_design_stops_before_any_output(tmp_path: Path) -> None:
    config = base_config(
        tmp_path,
        samples=_sheet_with(tmp_path, ["untreated1", "treated2"]),
        counts={
            "format": "matrix",
            "path": str(DATA / "pasilla" / "counts.tsv.gz"),
            "subset_samples": True,
        },
        filter={"method": "filterByExpr", "group": None},
        batch_correction={"method": "combat", "batch": "batch", "covariates": []},
    )
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert "0 residual degrees of freedom" in result.stdout + result.stderr
    outdir = tmp_path / "results"
    if outdir.exists():
        assert not scanned_files(outdir)
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    table = tmp_path / "t.tsv"
    table.write_text("gene_id\ta\tb\tlabel\ng1\t1.5\tNaN\tnone\ng2\tinf\t2\tx\ng3\t3\tNA\ty\n")
    assert non_finite_cells(table) == ["g2/a", "g1/b", "g3/b"]
    frame = pd.DataFrame({"gene_id": ["g1", "g2"], "a": [1.0, np.nan], "label": ["none", "x"]})
    frame.to_parquet(tmp_path / "m.parquet")
    assert non_finite_cells(tmp_path / "m.parquet") == ["g2/a"]
