"""Config loading and validation: cohorts, sample sheets, settings fingerprints, locks.

One config can hold several cohorts (``cohorts:``); each cohort's settings are merged,
validated against config/schemas/ and checked against its sample sheet here, before
the first job. Output paths are in rules/paths.smk, cluster requests in
rules/resources.smk.
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
from snakemake.utils import validate

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

from cohortnorm import design
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
COHORT_KEYS += ("transforms", "batch_correction", "qc", "sharding")


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


def annotation_file(settings):
    """The gene-name annotation: qc.annotation, else lengths when it is a GTF, else None."""
    given = settings["qc"].get("annotation")
    if given:
        return given
    lengths = settings.get("lengths") or ""
    return lengths if re.search(r"\.(gtf|gff3?)(\.gz)?$", lengths) else None


def _check_annotation(settings, what):
    """qc.annotation exists; genes of interest given as symbols need an annotation."""
    qc = settings["qc"]
    if qc.get("annotation"):
        qc["annotation"] = resolve_path(qc["annotation"])
        if not os.path.isfile(qc["annotation"]):
            raise WorkflowError(
                f"{what}: qc.annotation {qc['annotation']!r} does not exist. Give the path "
                "of a GTF with gene_name attributes or of a gene_id/gene_name table, "
                "relative to the directory snakemake runs in or to the config file."
            )
    if config["io"]["gene_name_column"] and not annotation_file(settings):
        raise WorkflowError(
            f"{what}: io.gene_name_column is true, which takes the gene names from an "
            "annotation, but this cohort has none. Set qc.annotation to a GTF with "
            "gene_name attributes or a gene_id/gene_name table (or give lengths as a "
            "GTF), or set io.gene_name_column: false."
        )


def _check_count_pattern(settings, what):
    pattern = settings["counts"]["path"]
    other = set(re.findall(r"{([^{}]*)}", pattern)) - {"sample"}
    if other or pattern.count("{") != pattern.count("}"):
        raise WorkflowError(
            f"{what}: counts.path {pattern!r} may hold the placeholder {{sample}} and no "
            "other curly braces. Use {sample} where each sample's name goes."
        )


def _batch_methods(settings, what):
    """batch_correction.method as a list (none: []), stored as batch_correction.methods."""
    method = settings["batch_correction"]["method"]
    methods = (
        [] if method == "none" else [method] if isinstance(method, str) else method
    )
    if {"combat", "combat_seq"} <= set(methods):
        raise WorkflowError(
            f"{what}: batch_correction.method lists both combat and combat_seq, which write "
            "the same parameter table batch/combat_params.tsv. Run them in two cohorts "
            "(or two configs), or list one of them."
        )
    settings["batch_correction"]["methods"] = list(methods)
    return list(methods)


def _check_transforms(settings, sheet, what):
    """VST/rlog options no job could run: fit_type local, a blind: false without design."""
    options = settings["transforms"]
    if options["vst"]["enabled"] and options["vst"]["fit_type"] == "local":
        raise WorkflowError(
            f"{what}: transforms.vst.fit_type is local, which needs DESeq2's locfit "
            "regression; it is not implemented here. Use fit_type: parametric (DESeq2's "
            "default) or fit_type: mean."
        )
    unblind = [
        n for n in ("vst", "rlog") if options[n]["enabled"] and not options[n]["blind"]
    ]
    if not unblind:
        return
    batch = settings["batch_correction"]
    columns = ([batch["batch"]] if batch["batch"] else []) + list(batch["covariates"])
    keys = ", ".join(f"transforms.{n}.blind" for n in unblind)
    if not columns:
        raise WorkflowError(
            f"{what}: {keys} is false, which estimates the dispersions with the design "
            "~ batch_correction.batch + batch_correction.covariates, but both are empty. "
            "Set batch_correction.covariates (e.g. [condition]) or blind: true."
        )
    missing = [c for c in columns if c not in sheet.columns]
    if missing:
        raise WorkflowError(
            f"{what}: {keys} is false, which uses the design ~ {' + '.join(columns)}, but "
            f"the sample sheet {settings['samples']} has no column {', '.join(missing)} "
            f"(its columns: {', '.join(sheet.columns)}). Fix batch_correction.batch / "
            "batch_correction.covariates, or set blind: true."
        )


def sharded(settings):
    """Whether a cohort runs in the sharded mode (sharding.samples_per_shard is set)."""
    return settings.get("sharding", {}).get("samples_per_shard") is not None


def _sharding_refusals(settings):
    """The settings the sharded core cannot run, each with what to set instead."""
    counts, norm = settings["counts"], settings["normalization"]
    batch = settings["batch_correction"]
    refusals = []
    if counts["format"] not in ("matrix", "h5ad") or "{sample}" in counts["path"]:
        refusals.append(
            f"counts.format is {counts['format']}"
            + (" with one file per sample" if "{sample}" in counts["path"] else "")
            + ": the sharded mode reads one genes × samples matrix (format: matrix, a "
            "TSV/CSV) or one AnnData file (format: h5ad); merge the counts into one "
            "matrix first"
        )
    if settings["filter"]["method"] == "cpm":
        refusals.append("set filter.method: filterByExpr or none")
    if norm["size_factor_type"] == "scran":
        refusals.append("set normalization.size_factor_type: ratio or poscounts")
    if norm.get("transforms"):
        refusals.append("set normalization.transforms: []")
    for name in ("vst", "rlog"):
        if settings["transforms"][name]["enabled"]:
            refusals.append(f"set transforms.{name}.enabled: false")
    for method in batch["methods"]:
        if method not in ("combat", "combat_seq"):
            refusals.append(
                f"batch_correction.method lists {method}: use combat (parametric or "
                "non-parametric), combat_seq or none"
            )
    if "combat_seq" in batch["methods"] and batch["combat_seq"]["shrink"]:
        refusals.append("set batch_correction.combat_seq.shrink: false")
    if norm["method"] == "RLE" and "combat" in batch["methods"]:
        # RLE's geometric means are added shard by shard (equal to 1e-12, not bitwise);
        # ComBat's test for genes constant within a batch is exact equality, and logCPM
        # of zero counts can be equal to the last bit: the sets of adjusted genes differ.
        refusals.append(
            "normalization.method RLE with ComBat: use TMM, TMMwsp, upperquartile or "
            "none (bitwise equal to the in-memory factors), or run RLE in memory"
        )
    if settings["tpm"]["source"] == "batch_corrected":
        refusals.append("set tpm.source: filtered")
    if config["io"]["write_h5ad"]:
        refusals.append("set io.write_h5ad: false")
    if settings["qc"]["genes_of_interest"]:
        refusals.append("set qc.genes_of_interest: []")
    return refusals


def _check_sharding(settings, what):
    """Refuse, before any job, a sharded cohort asking for what the sharded core lacks."""
    if not sharded(settings):
        return
    refusals = _sharding_refusals(settings)
    if refusals:
        raise WorkflowError(
            f"{what}: sharding.samples_per_shard is set (sharded mode), which does not "
            "support every method yet (docs/sharding.md). In sharded mode: "
            + "; ".join(refusals)
            + ". Or set sharding.samples_per_shard: null to run in memory."
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
        _check_annotation(settings, what)
        _check_count_pattern(settings, what)
        _check_outdir(settings["outdir"], what, _cohort_inputs_paths(settings))
        settings["outdir"] = os.path.normpath(settings["outdir"].strip())
        settings["cohort"] = name or Path(settings["outdir"]).name
        sheet = _read_sample_sheet(settings["samples"], what)
        methods = _batch_methods(settings, what)
        notes = []
        # The sheet checks of each listed method, as if it were the only one.
        for method in methods or ["none"]:
            one = {**settings, "batch_correction": {**settings["batch_correction"]}}
            one["batch_correction"]["method"] = method
            try:
                notes += design.check_design(
                    sheet.reset_index(drop=True),
                    one,
                    source=f"sample sheet {settings['samples']}",
                )
            except InputError as error:
                raise _explain(error, what) from None
        notes = list(dict.fromkeys(notes))
        for note in notes:
            print(f"{what}: {note}", file=sys.stderr)
        _check_transforms(settings, sheet, what)
        _check_sharding(settings, what)
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
    "transforms": lambda s: s["transforms"],
    "batch_correction": lambda s: s["batch_correction"],
    "qc": lambda s: {**s["qc"], "cohort": s["cohort"]},
    "sharding": lambda s: s.get("sharding", {}),
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
