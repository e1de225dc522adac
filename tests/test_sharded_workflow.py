"""End-to-end: the real ``snakemake`` in sharded mode (sharding.samples_per_shard) against
the in-memory run of the same config, on pasilla (7 samples) and airway (8 samples).

Every sharded deliverable must equal the in-memory one: bitwise where docs/sharding.md
says so (filter, TMM/TMMwsp/upper-quartile factors and the logCPM/CPM made from them),
else within 1e-12 relative to the matrix's largest magnitude (DESeq2 and RLE geometric
means, ComBat, the PCA). The in-memory outputs are checked against R in
tests/test_workflow.py; the pasilla logCPM is checked against edgeR here too.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, load_dataset
from test_workflow import base_config, read, run_snakemake

pytestmark = pytest.mark.e2e

#: Deliverables compared between the two modes (relative to the outdir).
MATRICES = [
    "counts/filtered_counts.tsv",
    "normalization/logcpm.tsv",
    "normalization/cpm.tsv",
    "normalization/normalized_counts.tsv",
    "tpm/tpm.tsv",
    "batch/combat_logcpm.tsv",
]
TABLES = ["counts/filter_report.tsv", "normalization/size_factors.tsv", "batch/combat_params.tsv"]
#: Outputs bitwise equal for these normalization methods (docs/sharding.md).
BITWISE_METHODS = ("TMM", "TMMwsp", "upperquartile", "none")

#: (dataset, samples per shard, normalization, ComBat options): each run covers other
#: methods, and both shard sizes cut both cohorts' batches across shards.
CASES = {
    "pasilla-2-TMM": ("pasilla", 2, {"method": "TMM"}, {"parametric": False}),
    "pasilla-3-RLE": ("pasilla", 3, {"method": "RLE", "size_factor_type": "poscounts"}, None),
    # ComBat-seq (gene blocks of 5,000 of airway's genes) instead of ComBat.
    "airway-2-TMMwsp": (
        "airway",
        2,
        {"method": "TMMwsp", "normalized_counts_factors": "method"},
        "combat_seq",
    ),
    "airway-3-upperquartile": (
        "airway",
        3,
        {"method": "upperquartile", "size_factor_type": "poscounts"},
        {"parametric": True, "mean_only": True},
    ),
}


def case_config(workdir: Path, name: str, samples_per_shard: int | None) -> dict:
    dataset, _, normalization, combat = CASES[name]
    config = base_config(
        workdir,
        samples=str(DATA / dataset / "samples.tsv"),
        counts={"format": "matrix", "path": str(DATA / dataset / "counts.tsv.gz")},
        lengths=str(DATA / dataset / "lengths.tsv.gz"),
        normalization=normalization,
        transforms={"vst": {"enabled": False}},
    )
    if combat is None:  # RLE with ComBat is refused in sharded mode (config.smk)
        config["batch_correction"] = {"method": "none", "batch": "batch"}
    elif combat == "combat_seq":
        config["batch_correction"]["method"] = "combat_seq"
    else:
        config["batch_correction"]["combat"] = combat
    if name == "airway-3-upperquartile":  # FPKM written as float32
        config["tpm"] = {"unit": "FPKM", "dtype": "float32"}
    if samples_per_shard is not None:
        config["sharding"] = {"samples_per_shard": samples_per_shard, "genes_per_block": 5000}
    return config


@pytest.fixture(scope="module", params=list(CASES))
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The sharded run (every output) and the in-memory run of the compared outputs."""
    name = request.param
    sharded_dir = tmp_path_factory.mktemp(f"sharded-{name}")
    result = run_snakemake(sharded_dir, case_config(sharded_dir, name, CASES[name][1]))
    assert result.returncode == 0, result.stderr[-4000:]
    memory_dir = tmp_path_factory.mktemp(f"memory-{name}")
    matrices, tables = compared(name)
    targets = [
        str(memory_dir / "results" / f)
        for f in [
            *matrices,
            *tables,
            "counts/gene_lengths.tsv",
            "counts/length_report.tsv",
            "qc/normalized/samples.tsv",
            "qc/metrics.tsv",
        ]
    ]
    result = run_snakemake(memory_dir, case_config(memory_dir, name, None), *targets)
    assert result.returncode == 0, result.stderr[-4000:]
    return name, sharded_dir / "results", memory_dir / "results"


def assert_close(sharded: pd.DataFrame, memory: pd.DataFrame, what: str) -> None:
    """Same labels; numbers within 1e-12 of the largest magnitude of each column."""
    assert list(sharded.index) == list(memory.index), what
    assert list(sharded.columns) == list(memory.columns), what
    for column in memory.columns:
        expected, got = memory[column], sharded[column]
        if not pd.api.types.is_numeric_dtype(expected):
            assert got.tolist() == expected.tolist(), f"{what}: {column}"
            continue
        scale = max(float(np.abs(expected).max()), 1e-300)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale, err_msg=what)


def compared(name: str) -> tuple[list[str], list[str]]:
    """The matrices and tables both runs of case `name` write."""
    if CASES[name][3] is None:
        return MATRICES[:-1], TABLES[:-1]
    if CASES[name][3] == "combat_seq":
        return [*MATRICES[:-1], "batch/combat_seq_counts.tsv"], TABLES
    return MATRICES, TABLES


def test_outputs_equal_the_in_memory_run(runs) -> None:
    name, sharded, memory = runs
    matrices, tables = compared(name)
    bitwise = CASES[name][2]["method"] in BITWISE_METHODS
    # Per-gene or per-sample steps: byte for byte whatever the normalization.
    for relative in [
        "counts/filtered_counts.tsv",
        "counts/filter_report.tsv",
        "tpm/tpm.tsv",
        "counts/gene_lengths.tsv",
        "counts/length_report.tsv",
        *(["batch/combat_seq_counts.tsv"] if CASES[name][3] == "combat_seq" else []),
    ]:
        assert (sharded / relative).read_bytes() == (memory / relative).read_bytes(), relative
    if bitwise:  # the edgeR factors and what is made from them alone
        for relative in ["normalization/logcpm.tsv", "normalization/cpm.tsv"]:
            assert (sharded / relative).read_bytes() == (memory / relative).read_bytes()
        factors = read(sharded / "normalization/size_factors.tsv")
        expected = read(memory / "normalization/size_factors.tsv")
        for column in ("lib_size", "norm_factor", "effective_lib_size"):
            assert factors[column].tolist() == expected[column].tolist(), column
    for relative in [*matrices, *tables]:
        table = read if relative != "batch/combat_params.tsv" else read_params
        assert_close(table(sharded / relative), table(memory / relative), relative)


def read_params(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", float_precision="round_trip", dtype={"batch": str})


def test_qc_equals_the_in_memory_normalized_stage(runs) -> None:
    _, sharded, memory = runs
    samples = read(sharded / "qc/sharded/samples.tsv")
    stage = read(memory / "qc/normalized/samples.tsv")
    columns = [c for c in stage.columns if c.startswith("PC")] + ["pca_distance"]
    assert_close(samples[columns], stage[columns], "PCA scores")
    assert samples["logcpm_median"].tolist() == stage["median"].tolist()
    assert samples["logcpm_iqr"].tolist() == stage["iqr"].tolist()
    metrics = pd.read_csv(sharded / "qc/sharded/metrics.tsv", sep="\t")
    expected = pd.read_csv(memory / "qc/metrics.tsv", sep="\t").set_index("stage")
    row = expected.loc["normalized"]
    for column in ("n_genes", "top_genes_used", "verdict"):
        assert metrics.loc[0, column] == row[column], column
    for column in ("batch_r2", "condition_r2", "pc1_variance_fraction", "median_iqr"):
        assert metrics.loc[0, column] == pytest.approx(row[column], rel=1e-12), column
    assert (sharded / "qc/sharded/pca.png").stat().st_size > 0


def test_sharded_logcpm_matches_edger(runs) -> None:
    name, sharded, _ = runs
    if name != "pasilla-2-TMM":
        pytest.skip("the edgeR reference is TMM on pasilla")
    logcpm = read(sharded / "normalization/logcpm.tsv")
    reference = load_dataset("pasilla").reference("edger_logcpm_filtered_TMM")
    np.testing.assert_allclose(logcpm, reference, atol=1e-9)


# --- refusals and bad input -------------------------------------------------------------


def sharded_config(workdir: Path, **overrides) -> dict:
    config = base_config(workdir, transforms={"vst": {"enabled": False}}, **overrides)
    config["sharding"] = {"samples_per_shard": 3}
    return config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"transforms": {"vst": {"enabled": True}}}, "set transforms.vst.enabled: false"),
        (
            {"batch_correction": {"method": "remove_batch_effect", "batch": "batch"}},
            "batch_correction.method lists remove_batch_effect: use combat",
        ),
        ({"normalization": {"size_factor_type": "scran"}}, "size_factor_type: ratio or"),
        ({"normalization": {"method": "RLE"}}, "normalization.method RLE with ComBat"),
    ],
)
def test_unsupported_method_is_refused_before_any_job(
    tmp_path: Path, override: dict, message: str
) -> None:
    config = sharded_config(tmp_path)
    config.update(override)
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert "sharding.samples_per_shard is set" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "results" / "logs").exists()  # no job ran


def small_counts(tmp_path: Path) -> pd.DataFrame:
    counts = pd.read_csv(DATA / "pasilla" / "counts.tsv.gz", sep="\t", index_col=0)
    return counts.iloc[:2000]


def test_all_zero_sample_is_named(tmp_path: Path) -> None:
    counts = small_counts(tmp_path)
    counts["treated2"] = 0
    path = tmp_path / "counts.tsv"
    counts.to_csv(path, sep="\t")
    config = sharded_config(tmp_path, counts={"format": "matrix", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert "treated2" in result.stderr and "have 0 for every gene" in result.stderr


def test_non_numeric_cell_is_named(tmp_path: Path) -> None:
    counts = small_counts(tmp_path).astype(object)
    counts.iloc[1500, 2] = "12,5"
    path = tmp_path / "counts.tsv.gz"
    with gzip.open(path, "wt") as handle:
        counts.to_csv(handle, sep="\t")
    config = sharded_config(tmp_path, counts={"format": "matrix", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    assert counts.index[1500] in result.stderr and "untreated3" in result.stderr
    assert "12,5" in result.stderr


def test_h5ad_all_zero_sample_names_its_shard(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    counts = small_counts(tmp_path)
    counts["treated1"] = 0
    path = tmp_path / "counts.h5ad"
    anndata.AnnData(
        X=counts.T.to_numpy(dtype=np.float64),
        obs=pd.DataFrame(index=list(counts.columns)),
        var=pd.DataFrame(index=list(counts.index)),
    ).write_h5ad(path)
    config = sharded_config(tmp_path, counts={"format": "h5ad", "path": str(path)})
    result = run_snakemake(tmp_path, config)
    assert result.returncode != 0
    # treated1 is the 5th sample: shard 1 of shards of 3 (samples 4 to 6).
    assert "shard 1 (samples 4 to 6)" in result.stderr
    assert "treated1" in result.stderr


def test_sharding_off_leaves_the_dag_unchanged(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    plain = run_snakemake(tmp_path, config, "-n", "--quiet", "rules")
    config["sharding"] = {"samples_per_shard": None}
    off = run_snakemake(tmp_path, config, "-n", "--quiet", "rules")
    assert plain.returncode == 0 and off.returncode == 0, plain.stderr + off.stderr

    def job_counts(text: str) -> list[str]:  # the "job  count" table of the dry run
        return [line for line in text.splitlines() if re.fullmatch(r"\w+\s+\d+", line)]

    assert job_counts(plain.stdout), plain.stdout
    assert job_counts(plain.stdout) == job_counts(off.stdout)
    assert "sharded" not in plain.stdout + off.stdout


def test_resources_come_from_the_shard(tmp_path: Path) -> None:
    """A per-shard job asks for the memory of all genes × samples_per_shard, a gather for
    one vector per gene and shard (cohortnorm.resources), not for the cohort."""
    from cohortnorm import resources

    config = sharded_config(tmp_path)
    config["sharding"] = {"samples_per_shard": 2}
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    genes = resources.matrix_shape(DATA / "pasilla" / "counts.tsv.gz")[0]
    blocks = re.split(r"\n\[[^\]]+\]\n", result.stdout)
    scatter = next(b for b in blocks if "rule sharded_scatter:" in b)
    cost = resources.RULE_COSTS["sharded_scatter"]
    assert f"mem_mb={resources.mem_mb(cost, genes, 2)}," in scatter
    assert f"runtime={resources.runtime_min(cost, genes, 2)}," in scatter


def test_h5ad_read_in_place_equals_in_memory(tmp_path: Path) -> None:
    """An .h5ad cohort in sharded mode (read in place, no conversion) gives the in-memory
    run's filtered counts and logCPM byte for byte, its TMM factors bitwise and its DESeq2
    size factors within 1e-12."""
    anndata = pytest.importorskip("anndata")
    counts = pd.read_csv(DATA / "pasilla" / "counts.tsv.gz", sep="\t", index_col=0)
    path = tmp_path / "pasilla.h5ad"
    anndata.AnnData(
        X=counts.T.to_numpy(dtype=np.float64),
        obs=pd.DataFrame(index=list(counts.columns)),
        var=pd.DataFrame(index=list(counts.index)),
    ).write_h5ad(path)
    wanted = ["counts/filtered_counts.tsv", "normalization/size_factors.tsv"]
    wanted += ["normalization/logcpm.tsv"]
    outputs = {}
    for mode, shards in (("memory", None), ("sharded", 3)):
        workdir = tmp_path / mode
        workdir.mkdir()
        config = base_config(
            workdir,
            counts={"format": "h5ad", "path": str(path)},
            transforms={"vst": {"enabled": False}},
            batch_correction={"method": "none", "batch": "batch"},
        )
        if shards:
            config["sharding"] = {"samples_per_shard": shards}
        targets = [str(workdir / "results" / name) for name in wanted]
        result = run_snakemake(workdir, config, *targets)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[mode] = workdir / "results"
    assert not (outputs["sharded"] / ".cohortnorm/shards/counts.h5").exists()  # in place
    for name in ("counts/filtered_counts.tsv", "normalization/logcpm.tsv"):
        assert (outputs["sharded"] / name).read_bytes() == (outputs["memory"] / name).read_bytes()
    factors = read(outputs["sharded"] / "normalization/size_factors.tsv")
    expected = read(outputs["memory"] / "normalization/size_factors.tsv")
    assert factors["norm_factor"].tolist() == expected["norm_factor"].tolist()
    assert_close(factors, expected, "size factors")
