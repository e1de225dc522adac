"""Shared helpers: config and sample-sheet validation, output paths, resources."""

import os
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")

# Scripts import the numeric core from src/ whichever interpreter or conda env runs them.
SRC_DIR = str(Path(workflow.basedir) / "src")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [SRC_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

CONFIG_FILES = ", ".join(str(f) for f in workflow.configfiles) or "the config"


def _validate_or_explain(data, schema, what):
    """Validate with snakemake.utils.validate; restate a failure as one clear line."""
    try:
        validate(data, schema, set_default=True)
    except WorkflowError as error:
        import jsonschema
        import yaml

        with open(Path(workflow.basedir) / schema) as handle:
            schema_dict = yaml.safe_load(handle)
        records = data.to_dict("records") if isinstance(data, pd.DataFrame) else [data]
        for row_number, record in enumerate(records, start=2):
            best = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema_dict).iter_errors(record)
            )
            if best is not None:
                key = ".".join(str(p) for p in best.absolute_path) or "(top level)"
                where = f"row {row_number}" if isinstance(data, pd.DataFrame) else "key"
                raise WorkflowError(
                    f"{what}: {where} {key}: {best.message}. "
                    f"Fix it and rerun (schema: {schema})."
                ) from None
        raise


_validate_or_explain(config, "../config/schemas/config.schema.yaml", f"config ({CONFIG_FILES})")

OUTDIR = config["outdir"].rstrip("/")
LOGDIR = f"logs/{Path(OUTDIR).name}"


def _read_sample_sheet(path):
    if not Path(path).exists():
        raise WorkflowError(f"sample sheet {path} (config key `samples`) does not exist.")
    sheet = pd.read_csv(path, sep=None, engine="python", dtype=str, comment=None)
    sheet.columns = [c.strip() for c in sheet.columns]
    if "sample" not in sheet.columns:
        raise WorkflowError(
            f"sample sheet {path}: no `sample` column (columns are {list(sheet.columns)}). "
            "Name the column holding the sample names `sample`."
        )
    duplicated = sheet["sample"][sheet["sample"].duplicated()].tolist()
    if duplicated:
        raise WorkflowError(
            f"sample sheet {path}: duplicate sample names {duplicated}; each sample needs one row."
        )
    _validate_or_explain(
        sheet.fillna(""), "../config/schemas/samples.schema.yaml", f"sample sheet {path}"
    )
    return sheet.set_index("sample", drop=False)


SAMPLES = _read_sample_sheet(config["samples"])


def _check_sheet_columns():
    """Every sample-sheet column the config names must exist."""
    named = {
        "filter.group": [config["filter"].get("group")],
        "batch_correction.batch": [
            config["batch_correction"]["batch"]
            if config["batch_correction"]["method"] != "none"
            else None
        ],
        "batch_correction.covariates": config["batch_correction"]["covariates"]
        if config["batch_correction"]["method"] != "none"
        else [],
        "batch_correction.combat_seq.group": [
            config["batch_correction"]["combat_seq"].get("group")
        ],
        "batch_correction.combat_seq.covariates": config["batch_correction"]["combat_seq"][
            "covariates"
        ],
    }
    for key, columns in named.items():
        for column in columns:
            if column is not None and column not in SAMPLES.columns:
                raise WorkflowError(
                    f"config key {key} names column {column!r}, which the sample sheet "
                    f"{config['samples']} does not have (columns: {list(SAMPLES.columns)})."
                )


_check_sheet_columns()


def out(path):
    """A path under the cohort's output directory."""
    return f"{OUTDIR}/{path}"


def log(name):
    """The log file of one rule."""
    return f"{LOGDIR}/{name}.log"


def count_inputs(wildcards=None):
    """The count file(s): one path, or one per sample (sheet order) when it holds {sample}."""
    pattern = config["counts"]["path"]
    if "{sample}" in pattern:
        return {"counts": [pattern.format(sample=s) for s in SAMPLES["sample"]]}
    return {"counts": [pattern]}


def optional_inputs():
    """Lengths and tx2gene files, when configured, as named inputs."""
    extra = {}
    if config.get("lengths"):
        extra["lengths"] = config["lengths"]
    if config["counts"].get("tx2gene"):
        extra["tx2gene"] = config["counts"]["tx2gene"]
    return extra


def input_mb(input, factor=1.0, gz_factor=6.0):
    """Size of a job's inputs in MB, counting gzipped files as their likely unpacked size."""
    total = 0.0
    for path in input:
        if os.path.exists(path):
            size = os.path.getsize(path) / 1e6
            total += size * (gz_factor if str(path).endswith(".gz") else 1.0)
    return total * factor


def mem_mb(factor, floor=1000):
    """A resources function: `factor` × (input text size) MB, at least `floor` MB.

    A TSV number takes ~8-18 bytes of text and 8 bytes as float64, so `factor` is
    about the number of dense copies a step keeps alive at once.
    """

    def _mem(wildcards, input, attempt):
        return int(max(floor, input_mb(input, factor)) * attempt)

    return _mem


def runtime_min(factor, floor=10):
    """A resources function: minutes for the job, scaled by input size."""

    def _runtime(wildcards, input, attempt):
        return int(max(floor, input_mb(input, factor)) * attempt)

    return _runtime


BATCH_METHOD = config["batch_correction"]["method"]
BATCH_OUTPUT = {
    "combat": out("batch/combat_logcpm.tsv"),
    "combat_seq": out("batch/combat_seq_counts.tsv"),
}.get(BATCH_METHOD)


def final_outputs():
    """Every file the workflow produces for this config."""
    files = [
        out("counts/raw_counts.tsv"),
        out("counts/filtered_counts.tsv"),
        out("counts/filter_report.tsv"),
        out("normalization/size_factors.tsv"),
        out("normalization/logcpm.tsv"),
        out("normalization/cpm.tsv"),
        out("normalization/normalized_counts.tsv"),
        out("provenance.json"),
    ]
    if lengths_available():
        files.append(out("tpm/tpm.tsv"))
    if BATCH_OUTPUT:
        files += [BATCH_OUTPUT, out("batch/combat_params.tsv")]
    return files


def lengths_available():
    """Whether gene lengths exist for TPM: a lengths file, featureCounts or a quantifier."""
    return bool(config.get("lengths")) or config["counts"]["format"] in {
        "featurecounts",
        "salmon",
        "kallisto",
        "rsem",
    }
