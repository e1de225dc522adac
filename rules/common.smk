"""Shared helpers: config and sample-sheet validation, cohorts, output paths, resources.

Every output path carries the wildcard ``{outdir}``, the cohort's output directory, so
one config can hold several cohorts (``cohorts:``) and a change to one cohort's inputs
reruns only that cohort's jobs. A single-cohort config is the one-cohort case.
"""

import atexit
import copy
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")

# Scripts import the numeric core from src/ whichever interpreter or conda env runs them.
# The workflow's own folder, also when it is used as a module of another workflow (where
# workflow.basedir is the importing workflow's folder).
WORKFLOW_DIR = Path(workflow.current_basedir).parent
SRC_DIR = str(WORKFLOW_DIR / "src")
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

from cohortnorm import design, resources
from cohortnorm.errors import InputError

SCHEMAS = WORKFLOW_DIR / "config" / "schemas"
CONFIG_FILES = [Path(f) for f in workflow.configfiles]
CONFIG_NAMES = ", ".join(map(str, CONFIG_FILES)) or "the config"

# The Snakefile names no configfile: the user's config alone decides a run (a default
# config would be merged under it, and its keys would leak into the user's run).
if not config:
    raise WorkflowError(
        "No config given. Run `snakemake --cores 2 --configfile my.yaml` with your own "
        "config (every key is described in config/README.md); `make demo`, or "
        "`--configfile config/config.yaml`, runs the bundled demo."
    )
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


def _explain(error, what):
    """An InputError from the core, restated as a WorkflowError naming the config."""
    return WorkflowError(f"{what}: {error}")


def _read_sample_sheet(path, cohort):
    if not Path(path).is_file():
        raise WorkflowError(
            f"{cohort}: sample sheet {path} (config key `samples`) does not exist or is "
            "not a file."
        )
    # Text as typed: "NA" stays "NA" for the missing-value rule; a spreadsheet's BOM goes.
    sheet = pd.read_csv(
        path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    sheet.columns = [c.strip() for c in sheet.columns]
    if "sample" not in sheet.columns:
        raise WorkflowError(
            f"sample sheet {path}: no `sample` column (columns are {list(sheet.columns)}). "
            "Name the column holding the sample names `sample` (tab-separated file)."
        )
    try:
        design.check_sample_names(
            sheet["sample"].tolist(), source=f"sample sheet {path}"
        )
    except InputError as error:
        raise WorkflowError(str(error)) from None
    duplicated = sheet["sample"][sheet["sample"].duplicated()].tolist()
    if duplicated:
        raise WorkflowError(
            f"sample sheet {path}: duplicate sample names {duplicated}; each sample needs one row."
        )
    _validate_or_explain(sheet, "samples.schema.yaml", f"sample sheet {path}")
    return sheet.set_index("sample", drop=False)


def _check_outdir(outdir, what, inputs):
    """Refuse an output directory that would mix the results with something else."""
    text = "" if outdir is None else str(outdir).strip()
    if not text:
        raise WorkflowError(
            f"{what}: `outdir` is empty. Name a folder for this run's outputs, e.g. "
            "`outdir: results/my_cohort` (relative to the directory snakemake runs in)."
        )
    if "{" in text or "}" in text:
        raise WorkflowError(
            f"{what}: outdir {text!r} contains a curly brace, which Snakemake reads as a "
            "wildcard. Choose a folder name without { or }."
        )
    resolved = Path(text).resolve()
    forbidden = {
        Path(Path.cwd().anchor).resolve(): "the root of the file system",
        Path.cwd().resolve(): "the directory snakemake runs in",
        WORKFLOW_DIR.resolve(): "the workflow's own folder",
        Path.home().resolve(): "your home directory",
    }
    for path, role in [(p, f"the folder holding input {p}") for p in inputs]:
        forbidden.setdefault(Path(path).resolve().parent, role)
    if resolved in forbidden:
        raise WorkflowError(
            f"{what}: outdir {text!r} is {forbidden[resolved]}; the outputs would be mixed "
            "with other files there. Use a folder of its own, e.g. `outdir: results/my_cohort`."
        )


def _cohort_inputs_paths(settings):
    paths = [settings["samples"]]
    pattern = settings["counts"]["path"]
    if "{sample}" in pattern:
        paths.append(pattern.split("{sample}")[0] + "x")
    else:
        paths.append(pattern)
    paths += [settings.get("lengths"), settings["counts"].get("tx2gene")]
    return [p for p in paths if p and "://" not in p]


def _check_count_pattern(settings, what):
    pattern = settings["counts"]["path"]
    other = set(re.findall(r"{([^{}]*)}", pattern)) - {"sample"}
    if other or pattern.count("{") != pattern.count("}"):
        raise WorkflowError(
            f"{what}: counts.path {pattern!r} may hold the placeholder {{sample}} and no "
            "other curly braces. Use {sample} where each sample's name goes."
        )


def _cohorts(config):
    """Map each cohort's output directory to its merged, validated settings."""
    if not config.get("outdir"):
        raise WorkflowError(
            f"config ({CONFIG_NAMES}): `outdir` is not set. Every config names its output "
            "folder, e.g. `outdir: results/my_cohort` (relative to the directory snakemake "
            "runs in), so that no run writes over another's results."
        )
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
        _check_count_pattern(settings, what)
        _check_outdir(settings["outdir"], what, _cohort_inputs_paths(settings))
        settings["outdir"] = os.path.normpath(settings["outdir"].strip())
        settings["cohort"] = name or Path(settings["outdir"]).name
        sheet = _read_sample_sheet(settings["samples"], what)
        try:
            notes = design.check_design(
                sheet.reset_index(drop=True),
                settings,
                source=f"sample sheet {settings['samples']}",
            )
        except InputError as error:
            raise _explain(error, what) from None
        for note in notes:
            print(f"{what}: {note}", file=sys.stderr)
        settings["sample_names"] = sheet["sample"].tolist()
        if settings["outdir"] in cohorts:
            raise WorkflowError(
                f"{what}: two cohorts share outdir {settings['outdir']}."
            )
        cohorts[settings["outdir"]] = settings
    return cohorts


COHORTS = _cohorts(config)


# --- settings fingerprints and the output-directory lock --------------------------------
# Snakemake keeps its record of each job's params, and its lock, in .snakemake/ of the
# working directory. Two runs from different directories that share an outdir would not
# see each other's settings: the second could report "Nothing to be done" over outputs
# made with other settings. So each cohort keeps its settings under
# <outdir>/.cohortnorm/settings/<section>.json, rewritten (new mtime) only when they
# change, and the jobs take the sections they depend on as inputs, so changed settings
# rerun the affected jobs from any working directory. <outdir>/.cohortnorm/lock holds off
# a second run on the same outdir while one is running.
SETTINGS_SECTIONS = {
    "import": lambda s: {
        "samples": os.path.abspath(s["samples"]),
        "counts": {
            **s["counts"],
            "path": os.path.abspath(s["counts"]["path"]),
            "tx2gene": s["counts"].get("tx2gene")
            and os.path.abspath(s["counts"]["tx2gene"]),
        },
        "lengths": s.get("lengths") and os.path.abspath(s["lengths"]),
        "sample_names": s["sample_names"],
        "matrix_format": config["io"]["matrix_format"],
    },
    "filter": lambda s: s["filter"],
    "normalization": lambda s: s["normalization"],
    "tpm": lambda s: s["tpm"],
    "batch_correction": lambda s: s["batch_correction"],
    "qc": lambda s: {**s["qc"], "cohort": s["cohort"]},
    "io": lambda s: config["io"],
}


def _state_dir(outdir):
    return Path(outdir) / ".cohortnorm"


def _lock_path(outdir):
    return _state_dir(outdir) / "lock"


def _lock_holder(outdir):
    """The run holding outdir's lock (a dict), or None when free or left by a dead run."""
    path = _lock_path(outdir)
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except (ProcessLookupError, ValueError):
            return None  # that run is gone (killed): its lock is stale
        except PermissionError:
            pass
    return holder


def _refuse_if_locked(outdir):
    holder = _lock_holder(outdir)
    if holder and not (
        holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()
    ):
        raise WorkflowError(
            f"outdir {outdir} is in use by another cohortnorm run (process {holder.get('pid')} "
            f"on {holder.get('host')}, started {holder.get('started')} from "
            f"{holder.get('workdir')}). Two runs writing one output folder would mix their "
            f"results: wait for that run to end. If no run is going (it was killed on another "
            f"machine), delete {_lock_path(outdir)} and rerun."
        )


def write_settings(outdir, settings):
    """Write the cohort's settings sections whose content changed (and only those)."""
    folder = _state_dir(outdir) / "settings"
    folder.mkdir(parents=True, exist_ok=True)
    for section, pick in SETTINGS_SECTIONS.items():
        text = json.dumps(pick(settings), indent=2, sort_keys=True, default=str) + "\n"
        path = folder / f"{section}.json"
        try:
            if path.read_text() == text:
                continue
        except OSError:
            pass
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, path)


def settings_files(*sections):
    """An input function: the settings files of `sections` for the job's cohort."""

    def _files(wildcards):
        folder = _state_dir(wildcards.outdir) / "settings"
        return [str(folder / f"{section}.json") for section in sections]

    return _files


_HELD_LOCKS = []


def release_locks(*_):
    while _HELD_LOCKS:
        path = _HELD_LOCKS.pop()
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def acquire_locks():
    """Lock every cohort's outdir for this run, or stop naming the run that holds one."""
    for outdir, settings in COHORTS.items():
        path = _lock_path(outdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "workdir": os.getcwd(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "config": CONFIG_NAMES,
        }
        for _ in range(2):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if _lock_holder(outdir) is not None:
                    release_locks()
                    _refuse_if_locked(outdir)
                print(
                    f"{outdir}: removing the lock left by a run that ended.",
                    file=sys.stderr,
                )
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(record))
            _HELD_LOCKS.append(path)
            break
        # Another run may have rewritten the settings between our parse and now.
        write_settings(outdir, settings)


if workflow.is_main_process:
    for _outdir, _settings in COHORTS.items():
        _refuse_if_locked(_outdir)
        write_settings(_outdir, _settings)
    atexit.register(release_locks)


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


# --- cluster requests --------------------------------------------------------------
# Memory and runtime come from the dimensions of the job's largest input matrix and the
# per-rule costs measured in bench/ (cohortnorm.resources, documented in docs/slurm.md).
# Before a matrix exists (a dry run, or a job whose inputs are not made yet) the cohort's
# imported dimensions stand in: genes from the count file, samples from the sheet, an
# upper bound for every later matrix.
_RAW_SHAPES = {}


def raw_shape(outdir):
    """Genes × samples of a cohort's count matrix, estimated from its input file(s)."""
    if outdir not in _RAW_SHAPES:
        settings = COHORTS[outdir]
        pattern = settings["counts"]["path"]
        n_samples = len(settings["sample_names"])
        if "{sample}" in pattern:
            first = pattern.format(sample=settings["sample_names"][0])
            shape = resources.matrix_shape(first)
            genes = shape[0] if shape else 0
        else:
            shape = resources.matrix_shape(pattern)
            genes = shape[0] if shape else 0
            if shape and settings["counts"]["format"] == "h5ad":
                n_samples = max(n_samples, shape[1])
        _RAW_SHAPES[outdir] = (genes, n_samples)
    return _RAW_SHAPES[outdir]


def _job_shape(wildcards, input):
    """The largest existing matrix input of a job, else the cohort's raw dimensions."""
    genes, samples = raw_shape(wildcards.outdir)
    matrices = [
        path
        for path in input
        if str(path).endswith((".tsv", ".parquet", ".h5ad", ".gz"))
        and "/.cohortnorm/" not in str(path)
        and os.path.isfile(path)
        and os.path.abspath(path).startswith(os.path.abspath(wildcards.outdir) + os.sep)
    ]
    shapes = [s for s in map(resources.matrix_shape, matrices) if s]
    if shapes:
        genes, samples = max(shapes, key=lambda s: s[0] * s[1])
    return genes, samples


def _cost(rule_name, wildcards):
    if rule_name == "batch_correction_combat":
        if not cohort(wildcards)["batch_correction"]["combat"]["parametric"]:
            rule_name = "batch_correction_combat_nonparametric"
    return resources.RULE_COSTS[rule_name]


def job_mem_mb(rule_name):
    """A resources function: memory (MB) for `rule_name`, see cohortnorm.resources."""

    def _mem(wildcards, input, attempt):
        if rule_name == "import_counts":
            genes, samples = raw_shape(wildcards.outdir)
        else:
            genes, samples = _job_shape(wildcards, input)
        return resources.mem_mb(_cost(rule_name, wildcards), genes, samples, attempt)

    return _mem


def job_runtime(rule_name):
    """A resources function: runtime (minutes) for `rule_name`, see cohortnorm.resources."""

    def _runtime(wildcards, input, attempt):
        if rule_name == "import_counts":
            genes, samples = raw_shape(wildcards.outdir)
        else:
            genes, samples = _job_shape(wildcards, input)
        return resources.runtime_min(
            _cost(rule_name, wildcards), genes, samples, attempt
        )

    return _runtime


def benchmark_file(name):
    """The snakemake benchmark (time, peak RSS) of one rule, beside the cohort's outputs."""
    return f"{{outdir}}/benchmarks/{name}.tsv"


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
    """The log file of one rule, beside the cohort's outputs: <outdir>/logs/<name>.log."""
    return f"{{outdir}}/logs/{name}.log"


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
