"""Shared helpers: config and sample-sheet validation, cohorts, output paths, resources.

Every output path carries the wildcard ``{outdir}``, the cohort's output directory, so
one config can hold several cohorts (``cohorts:``) and a change to one cohort's inputs
reruns only that cohort's jobs. A single-cohort config is the one-cohort case.
"""

import copy
import gzip
import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")

# Scripts import the numeric core from src/ whichever interpreter or conda env runs them.
SRC_DIR = str(Path(workflow.basedir) / "src")
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

SCHEMAS = Path(workflow.basedir) / "config" / "schemas"
CONFIG_FILES = [Path(f) for f in workflow.configfiles]
CONFIG_NAMES = ", ".join(map(str, CONFIG_FILES)) or "the config"
COHORT_KEYS = ("samples", "counts", "lengths", "filter", "normalization", "tpm")
COHORT_KEYS += ("batch_correction", "qc")


def _validate_or_explain(data, schema_name, what):
    """Validate with snakemake.utils.validate; restate a failure as one clear line."""
    schema = SCHEMAS / schema_name
    try:
        validate(data, str(schema), set_default=True)
    except WorkflowError:
        import jsonschema
        import yaml

        validator = jsonschema.Draft202012Validator(yaml.safe_load(schema.read_text()))
        records = data.to_dict("records") if isinstance(data, pd.DataFrame) else [data]
        for row_number, record in enumerate(records, start=2):
            best = jsonschema.exceptions.best_match(validator.iter_errors(record))
            if best is not None:
                key = ".".join(str(p) for p in best.absolute_path) or "(top level)"
                where = (
                    f"row {row_number}, column"
                    if isinstance(data, pd.DataFrame)
                    else "key"
                )
                raise WorkflowError(
                    f"{what}: {where} {key}: {best.message}. Fix it and rerun "
                    f"(the allowed keys and values are in config/README.md)."
                ) from None
        raise


def _deep_merge(base, override):
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_path(path):
    """A relative input path: as given if it exists, else relative to the config file."""
    if path is None or os.path.isabs(path) or "://" in path:
        return path
    probe = path.replace("{sample}", "*")
    if list(Path().glob(probe)) or not CONFIG_FILES:
        return path
    for config_file in CONFIG_FILES:
        candidate = config_file.resolve().parent / path
        if list(candidate.parent.glob(Path(probe).name)):
            return str(candidate)
    return path


def _read_sample_sheet(path, cohort):
    if not Path(path).exists():
        raise WorkflowError(
            f"{cohort}: sample sheet {path} (config key `samples`) does not exist."
        )
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    sheet.columns = [c.strip() for c in sheet.columns]
    if "sample" not in sheet.columns:
        raise WorkflowError(
            f"sample sheet {path}: no `sample` column (columns are {list(sheet.columns)}). "
            "Name the column holding the sample names `sample` (tab-separated file)."
        )
    duplicated = sheet["sample"][sheet["sample"].duplicated()].tolist()
    if duplicated:
        raise WorkflowError(
            f"sample sheet {path}: duplicate sample names {duplicated}; each sample needs one row."
        )
    _validate_or_explain(sheet, "samples.schema.yaml", f"sample sheet {path}")
    return sheet.set_index("sample", drop=False)


def _check_sheet_columns(settings, sheet, cohort):
    """Every sample-sheet column the config names must exist."""
    batch = settings["batch_correction"]
    active = batch["method"] != "none"
    named = {
        "filter.group": [settings["filter"].get("group")],
        "batch_correction.batch": [batch["batch"] if active else None],
        "batch_correction.covariates": batch["covariates"] if active else [],
        "batch_correction.combat_seq.group": [batch["combat_seq"].get("group")],
        "batch_correction.combat_seq.covariates": batch["combat_seq"]["covariates"],
    }
    for key, columns in named.items():
        for column in columns:
            if column is not None and column not in sheet.columns:
                raise WorkflowError(
                    f"{cohort}: config key {key} names column {column!r}, which the sample "
                    f"sheet {settings['samples']} does not have (columns: {list(sheet.columns)})."
                )


def _cohorts(config):
    """Map each cohort's output directory to its merged, validated settings."""
    _validate_or_explain(config, "config.schema.yaml", f"config ({CONFIG_NAMES})")
    base = {key: value for key, value in config.items() if key != "cohorts"}
    if not config.get("cohorts"):
        named = {None: base}
    else:
        named = {
            name: _deep_merge(
                {k: v for k, v in base.items() if k in COHORT_KEYS or k == "outdir"},
                overrides,
            )
            for name, overrides in config["cohorts"].items()
        }
    cohorts = {}
    for name, settings in named.items():
        what = f"config ({CONFIG_NAMES})" + (f", cohort {name}" if name else "")
        if name is not None:
            unknown = sorted(set(config["cohorts"][name]) - set(COHORT_KEYS))
            if unknown:
                raise WorkflowError(
                    f"{what}: key(s) {unknown} cannot be set per cohort; allowed: {COHORT_KEYS}."
                )
            settings["outdir"] = f"{base['outdir'].rstrip('/')}/{name}"
        _validate_or_explain(settings, "config.schema.yaml", what)
        if "samples" not in settings or "counts" not in settings:
            raise WorkflowError(f"{what}: `samples` and `counts` are required.")
        settings["samples"] = resolve_path(settings["samples"])
        settings["counts"]["path"] = resolve_path(settings["counts"]["path"])
        settings["lengths"] = resolve_path(settings.get("lengths"))
        if settings["counts"].get("tx2gene"):
            settings["counts"]["tx2gene"] = resolve_path(settings["counts"]["tx2gene"])
        settings["outdir"] = settings["outdir"].rstrip("/")
        settings["cohort"] = name or Path(settings["outdir"]).name
        sheet = _read_sample_sheet(settings["samples"], what)
        _check_sheet_columns(settings, sheet, what)
        settings["sample_names"] = sheet["sample"].tolist()
        cohorts[settings["outdir"]] = settings
    return cohorts


COHORTS = _cohorts(config)


# --- matrix file format and dense-size resources (issue 5; io.matrix_format) ----------
# Every genes × samples matrix path goes through matrix_file(): `.tsv` by default, the
# same stem with `.parquet` under io.matrix_format: parquet. Tables (size factors,
# reports, parameters, gene lengths) stay TSV.
MATRIX_FORMAT = config["io"]["matrix_format"]


def matrix_file(stem):
    """The file name of matrix `stem` (e.g. "counts/raw_counts") in the configured format."""
    return f"{stem}.{MATRIX_FORMAT}"


def out_matrix(stem):
    """A matrix output path under the cohort's output directory."""
    return out(matrix_file(stem))


def dense_mb(path):
    """MB of one dense float64 copy of a matrix file (from Parquet metadata or TSV lines)."""
    if not os.path.exists(path):
        return 0.0
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        return meta.num_rows * max(meta.num_columns - 1, 1) * 8 / 1e6
    opener = gzip.open if str(path).endswith(".gz") else open
    try:  # a broken input is the import's to explain; size the job from its bytes
        with opener(path, "rb") as handle:
            lines = [handle.readline(1 << 26) for _ in range(21)]
    except Exception:  # truncated/corrupt gzip, a directory, no permission
        return os.path.getsize(path) * 8 / 1e6 if os.path.isfile(path) else 0.0
    body = [line for line in lines[1:] if line]
    if not body:
        return 0.0
    fields = max(lines[0].count(b"\t"), lines[0].count(b","))
    size = os.path.getsize(path) * (6.0 if str(path).endswith(".gz") else 1.0)
    rows = size / (sum(map(len, body)) / len(body))
    return rows * max(fields, 1) * 8 / 1e6


def dense_mem_mb(copies, floor=1000):
    """A resources function: `copies` dense float64 copies of the job's largest matrix
    input, plus 500 MB for the interpreter, at least `floor` MB."""

    def _mem(wildcards, input, attempt):
        largest = max([dense_mb(path) for path in input] or [0.0])
        return int(max(floor, copies * largest + 500) * attempt)

    return _mem


def benchmark_file(name):
    """The snakemake benchmark (time, peak RSS) of one rule, under benchmarks/<outdir>/."""
    return f"benchmarks/{{outdir}}/{name}.tsv"


def h5ad_inputs(wildcards):
    """The matrices gathered into normalization/normalized.h5ad (io.write_h5ad)."""
    settings = cohort(wildcards)
    outdir = wildcards.outdir
    inputs = {
        "samples": settings["samples"],
        "size_factors": f"{outdir}/normalization/size_factors.tsv",
        "counts": f"{outdir}/{matrix_file('counts/filtered_counts')}",
    }
    for name in ("logcpm", "cpm", "normalized_counts"):
        inputs[name] = f"{outdir}/{matrix_file(f'normalization/{name}')}"
    if lengths_available(settings):
        inputs["tpm"] = f"{outdir}/{matrix_file('tpm/tpm')}"
    if batch_output(settings):
        inputs["batch_corrected"] = f"{outdir}/{batch_output(settings)}"
    return inputs


# --- end of matrix file format --------------------------------------------------------


wildcard_constraints:
    outdir="|".join(re.escape(outdir) for outdir in COHORTS),


def cohort(wildcards):
    """The settings of the cohort a job belongs to."""
    return COHORTS[wildcards.outdir]


def setting(*keys):
    """A params function returning cohort(wildcards)[keys[0]][keys[1]]..."""

    def _get(wildcards):
        value = cohort(wildcards)
        for key in keys:
            value = value[key]
        return value

    return _get


def out(path):
    """An output path under the cohort's output directory."""
    return f"{{outdir}}/{path}"


def log(name):
    """The log file of one rule, under logs/<outdir>/."""
    return f"logs/{{outdir}}/{name}.log"


def count_inputs(wildcards):
    """The count file(s): one path, or one per sample (sheet order) when it holds {sample}."""
    settings = cohort(wildcards)
    pattern = settings["counts"]["path"]
    if "{sample}" in pattern:
        return {"counts": [pattern.format(sample=s) for s in settings["sample_names"]]}
    return {"counts": [pattern]}


def cohort_inputs(wildcards):
    """Counts, sample sheet and, when configured, lengths and tx2gene, as named inputs."""
    settings = cohort(wildcards)
    inputs = {**count_inputs(wildcards), "samples": settings["samples"]}
    if settings.get("lengths"):
        inputs["lengths"] = settings["lengths"]
    if settings["counts"].get("tx2gene"):
        inputs["tx2gene"] = settings["counts"]["tx2gene"]
    return inputs


def input_mb(input, factor=1.0, gz_factor=6.0):
    """Size of a job's inputs in MB, counting gzipped files as their likely unpacked size."""
    total = 0.0
    for path in input:
        if os.path.exists(path):
            size = os.path.getsize(path) / 1e6
            total += size * (gz_factor if str(path).endswith(".gz") else 1.0)
    return total * factor


def runtime_min(factor, floor=10):
    """A resources function: minutes for the job, scaled by input size."""

    def _runtime(wildcards, input, attempt):
        return int(max(floor, input_mb(input, factor)) * attempt)

    return _runtime


def batch_output(settings):
    """The batch-corrected matrix of a cohort, or None without batch correction."""
    stem = {
        "combat": "batch/combat_logcpm",
        "combat_seq": "batch/combat_seq_counts",
    }.get(settings["batch_correction"]["method"])
    return matrix_file(stem) if stem else None


def lengths_available(settings):
    """Whether gene lengths exist for TPM: a lengths file, featureCounts or a quantifier."""
    return bool(settings.get("lengths")) or settings["counts"]["format"] in {
        "featurecounts",
        "salmon",
        "kallisto",
        "rsem",
    }


def cohort_outputs(settings):
    """Every table the core steps produce for one cohort (relative to its outdir)."""
    files = [
        matrix_file("counts/raw_counts"),
        "counts/sample_columns.tsv",
        matrix_file("counts/filtered_counts"),
        "counts/filter_report.tsv",
        "normalization/size_factors.tsv",
        matrix_file("normalization/logcpm"),
        matrix_file("normalization/cpm"),
        matrix_file("normalization/normalized_counts"),
    ]
    if lengths_available(settings):
        files.append(matrix_file("tpm/tpm"))
    files.append("counts/length_report.tsv")
    if settings["counts"]["format"] in {"salmon", "kallisto", "rsem"}:
        files.append(matrix_file("counts/abundance_tpm"))
    if batch_output(settings):
        files += [batch_output(settings), "batch/combat_params.tsv"]
    if config["io"]["write_h5ad"]:
        files.append("normalization/normalized.h5ad")
    return files


def final_outputs():
    """Every file the workflow produces, over all cohorts."""
    files = []
    for outdir, settings in COHORTS.items():
        files += [f"{outdir}/{name}" for name in cohort_outputs(settings)]
        files += [f"{outdir}/{name}" for name in qc_outputs(settings)]
        files.append(f"{outdir}/provenance.json")
    return files


def tpm_counts_input(wildcards):
    settings = cohort(wildcards)
    if settings["tpm"]["source"] == "batch_corrected":
        if settings["batch_correction"]["method"] != "combat_seq":
            raise WorkflowError(
                f"{settings['cohort']}: tpm.source is batch_corrected, which needs counts: set "
                "batch_correction.method to combat_seq or tpm.source to filtered."
            )
        if settings["counts"]["format"] in {"salmon", "kallisto", "rsem"}:
            # For quantifier input TPM is the quantifier's own abundance; recomputing it
            # from adjusted, rounded counts would be a different and inexact quantity.
            raise WorkflowError(
                f"{settings['cohort']}: tpm.source is batch_corrected, but for "
                f"{settings['counts']['format']} input tpm/tpm is the quantifier's own TPM "
                "(tximport abundance), which ComBat-seq does not adjust. Set tpm.source to "
                "filtered, and use batch/combat_seq_counts for batch-adjusted values."
            )
        return f"{wildcards.outdir}/{batch_output(settings)}"
    return f"{wildcards.outdir}/{matrix_file('counts/filtered_counts')}"


def provenance_inputs(wildcards):
    settings = cohort(wildcards)
    outputs = [f"{wildcards.outdir}/{name}" for name in cohort_outputs(settings)]
    return {**cohort_inputs(wildcards), "outputs": outputs}


def cohorts_using(method):
    """A regex matching the output directories of the cohorts that use `method`."""
    outdirs = [
        re.escape(outdir)
        for outdir, settings in COHORTS.items()
        if settings["batch_correction"]["method"] == method
    ]
    return "|".join(outdirs) or "(?!)"


# --- QC helper functions -------------------------------------------------------------
QC_PLOTS = {
    "boxplot": "per-sample distribution",
    "density": "density",
    "pca": "PCA",
    "rle": "RLE",
    "correlation": "correlation heatmap",
    "ma": "MA plots",
}


def qc_stages(settings):
    """The QC stages of a cohort: raw, normalized and, with batch correction, batch_corrected."""
    return ["raw", "normalized"] + (
        ["batch_corrected"] if batch_output(settings) else []
    )


def qc_outputs(settings):
    """Every QC output of one cohort (relative to its outdir)."""
    files = [
        "qc/metrics.tsv",
        "qc/sample_flags.tsv",
        "qc/library_sizes.png",
        "qc/batch_vs_condition.png",
    ]
    for stage in qc_stages(settings):
        files += [f"qc/{stage}/{plot}.png" for plot in QC_PLOTS]
        files += [f"qc/{stage}/samples.tsv", f"qc/{stage}/metrics.tsv"]
    return files


def qc_stage_inputs(wildcards):
    """The matrix one QC stage reads (plus size factors for ComBat-seq counts)."""
    settings = cohort(wildcards)
    outdir = wildcards.outdir
    inputs = {"samples": settings["samples"]}
    if wildcards.stage == "raw":
        inputs["values"] = f"{outdir}/{matrix_file('counts/filtered_counts')}"
    elif wildcards.stage == "normalized":
        inputs["values"] = f"{outdir}/{matrix_file('normalization/logcpm')}"
    else:
        if not batch_output(settings):
            raise WorkflowError(
                f"{settings['cohort']}: QC stage batch_corrected needs batch correction "
                "(batch_correction.method is none)."
            )
        inputs["values"] = f"{outdir}/{batch_output(settings)}"
        if settings["batch_correction"]["method"] == "combat_seq":
            inputs["size_factors"] = f"{outdir}/normalization/size_factors.tsv"
    return inputs


def qc_stage_tables(wildcards):
    """The per-stage metrics rows and the normalized stage's per-sample table."""
    stages = qc_stages(cohort(wildcards))
    return {
        "stage_metrics": [f"{wildcards.outdir}/qc/{s}/metrics.tsv" for s in stages],
        "stage_samples": f"{wildcards.outdir}/qc/normalized/samples.tsv",
    }


def qc_plot(name):
    """A per-stage QC figure registered in the report."""
    return report(
        out(f"qc/{{stage}}/{name}.png"),
        caption=f"../report/qc_{name}.rst",
        category="QC",
        subcategory="{stage}",
        labels={"cohort": "{outdir}", "stage": "{stage}", "figure": QC_PLOTS[name]},
    )

# --- end of QC helper functions -------------------------------------------------------
