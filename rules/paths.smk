"""Output paths: one table of every output of a cohort, and the rules' input functions.

Every output path carries the wildcard ``{outdir}``, the cohort's output directory, so
one config can hold several cohorts and a change to one cohort's inputs reruns only
that cohort's jobs. The rules, the input functions and the list of final outputs all
take their paths from OUTPUTS (methods' own outputs from cohortnorm.registry), so a
path is written once.
"""

from cohortnorm.registry import (
    BATCH_CORRECTORS,
    BATCH_INPUTS,
    FORMATS,
    STAGE_FIGURES,
    normalizers,
)

# Every genes × samples matrix gets the suffix of io.matrix_format (.tsv or .parquet);
# tables (size factors, reports, parameters, gene lengths) stay TSV.
MATRIX_FORMAT = config["io"]["matrix_format"]

# Rules hand matrices to each other as Arrow IPC files under <outdir>/.cohortnorm/handoff/
# (memory-mapped: a 60,000 × 1,000 logCPM reads in 0.1 s where its TSV parses in 3 s);
# rule export_matrix writes each deliverable (.tsv or .parquet) from its hand-off file,
# beside the rest of the graph. io.keep_handoff: false deletes a hand-off file once every
# job that reads it is done (snakemake temp()), at the cost of recomputing it on a rerun.
HANDOFF_DIR = ".cohortnorm/handoff"
KEEP_HANDOFF = config["io"]["keep_handoff"]

#: Each output of a cohort by name, relative to its outdir. Stems without a suffix are
#: matrices, written in MATRIX_FORMAT.
OUTPUTS = {
    "raw_counts": "counts/raw_counts",
    "abundance_tpm": "counts/abundance_tpm",
    "gene_lengths": "counts/gene_lengths.tsv",
    "sample_columns": "counts/sample_columns.tsv",
    "length_report": "counts/length_report.tsv",
    "filtered_counts": "counts/filtered_counts",
    "filter_report": "counts/filter_report.tsv",
    "size_factors": "normalization/size_factors.tsv",
    "logcpm": "normalization/logcpm",
    "cpm": "normalization/cpm",
    "normalized_counts": "normalization/normalized_counts",
    "h5ad": "normalization/normalized.h5ad",
    "tpm": "tpm/tpm",
    "provenance": "provenance.json",
    "qc_metrics": "qc/metrics.tsv",
    "qc_verdict": "qc/verdict.tsv",
    "qc_sample_flags": "qc/sample_flags.tsv",
    "qc_library_sizes": "qc/library_sizes.png",
    "qc_batch_vs_condition": "qc/batch_vs_condition.png",
    "qc_stage_samples": "qc/{stage}/samples.tsv",
    "qc_stage_metrics": "qc/{stage}/metrics.tsv",
    "qc_stage_variance": "qc/{stage}/variance_explained.tsv",
    "qc_design": "qc/design.tsv",
    "qc_variance_explained": "qc/variance_explained.png",
    "qc_genes_of_interest": "qc/genes_of_interest.png",
    "gene_symbols": "counts/gene_symbols.tsv",
    "qc_multiqc_general_stats": "qc/multiqc/cohortnorm_general_stats_mqc.tsv",
    "qc_multiqc_sample_qc": "qc/multiqc/cohortnorm_sample_qc_mqc.tsv",
    "qc_multiqc_verdict": "qc/multiqc/cohortnorm_verdict_mqc.tsv",
}

#: The MultiQC custom-content files qc_summary writes (cohortnorm.multiqc.FILES).
MULTIQC_OUTPUTS = [
    "qc_multiqc_general_stats",
    "qc_multiqc_sample_qc",
    "qc_multiqc_verdict",
]


def is_matrix(name):
    """Whether output `name` (a key of OUTPUTS) is a genes × samples matrix."""
    return "." not in Path(OUTPUTS[name]).name


def matrix_file(stem):
    """The hand-off file of matrix `stem` (e.g. "counts/raw_counts"), which rules write
    and read."""
    return f"{HANDOFF_DIR}/{stem}.arrow"


def deliverable(stem):
    """The file users get for matrix `stem`, in the configured format (export_matrix)."""
    return f"{stem}.{MATRIX_FORMAT}"


def path(name):
    """The path of output `name` (a key of OUTPUTS) relative to the cohort's outdir: for
    a matrix, its hand-off file."""
    stem = OUTPUTS[name]
    return matrix_file(stem) if is_matrix(name) else stem


def delivered(name):
    """The path users get for output `name`: a matrix's deliverable, else path(name)."""
    return deliverable(OUTPUTS[name]) if is_matrix(name) else path(name)


def out(name):
    """A rule's output or input pattern: output `name` under the cohort's outdir."""
    return f"{{outdir}}/{path(name)}"


def handoff(pattern):
    """A rule's output `pattern` of a hand-off matrix: temp() unless io.keep_handoff."""
    return pattern if KEEP_HANDOFF else temp(pattern)


def made(name):
    """A rule's output of `name`: out(name), a hand-off file when a matrix."""
    return handoff(out(name)) if is_matrix(name) else out(name)


def at(wildcards, name):
    """Output `name` of the job's cohort (for input functions)."""
    return f"{wildcards.outdir}/{path(name)}"


def log(name):
    """The log file of one rule, beside the cohort's outputs: <outdir>/logs/<name>.log."""
    return f"{{outdir}}/logs/{name}.log"


def benchmark_file(name):
    """The snakemake benchmark (time, peak RSS) of one rule, beside the cohort's outputs."""
    return f"{{outdir}}/benchmarks/{name}.tsv"


# --- methods: paths from the registry ---------------------------------------------------


def batch_methods(settings):
    """The cohort's batch correctors by name, in config order ([] without correction)."""
    return settings["batch_correction"]["methods"]


def batch_method(settings):
    """The cohort's one batch corrector (a registry entry), or None without batch
    correction or with a list of several."""
    methods = batch_methods(settings)
    return BATCH_CORRECTORS[methods[0]] if len(methods) == 1 else None


def batch_output(settings, method=None):
    """The corrected matrix of `method` (default: the cohort's one method), or None."""
    if method is None:
        entry = batch_method(settings)
        return matrix_file(entry.output) if entry else None
    return matrix_file(BATCH_CORRECTORS[method].output)


def batch_stage(settings, method):
    """The QC stage of batch corrector `method`: batch_corrected when it is the cohort's
    only method (the name since the first release), else the method's own name."""
    return "batch_corrected" if len(batch_methods(settings)) == 1 else method


#: Whether some cohort lists several batch methods: then each method's job logs to
#: logs/batch_correction_<method>.log (in every cohort), else to logs/batch_correction.log.
SEVERAL_BATCH_METHODS = any(
    len(settings["batch_correction"]["methods"]) > 1 for settings in COHORTS.values()
)


def batch_params(method):
    """The table of per-batch estimates of batch corrector `method`."""
    return f"{BATCH_CORRECTORS[method].params}.tsv"


def lengths_available(settings):
    """Whether gene lengths exist for TPM: a lengths file, or a format that supplies them."""
    return (
        bool(settings.get("lengths"))
        or FORMATS[settings["counts"]["format"]].supplies_lengths
    )


def is_quantifier(settings):
    """Whether the cohort's counts come from a quantifier (salmon, kallisto, RSEM...)."""
    return FORMATS[settings["counts"]["format"]].kind == "quantifier"


def transforms(settings):
    """The transformed matrices a cohort asks for: normalization.transforms, then the
    transforms switched on in the `transforms` section (VST, rlog)."""
    listed = list(settings["normalization"].get("transforms", []))
    return listed + [
        name
        for name in normalizers("transform_section")
        if settings["transforms"][name]["enabled"]
    ]


def transform_design_columns(wildcards):
    """The sheet columns of the transforms' design (blind: false): batch + covariates."""
    batch = cohort(wildcards)["batch_correction"]
    return ([batch["batch"]] if batch["batch"] else []) + list(batch["covariates"])


def transform_stem(name):
    """The matrix stem of transform `name`."""
    return f"normalization/{name}"


def transform_output(name):
    """The matrix transform `name` writes (relative to the cohort's outdir)."""
    return matrix_file(transform_stem(name))


def matrix_stems():
    """Every matrix stem the workflow can write: OUTPUTS, the batch correctors' outputs
    and the transforms (what export_matrix turns into deliverables)."""
    stems = [OUTPUTS[name] for name in OUTPUTS if is_matrix(name)]
    stems += [entry.output for entry in BATCH_CORRECTORS.values()]
    stems += [
        transform_stem(name)
        for name in normalizers("transforms") + normalizers("transform_section")
    ]
    return stems


#: A regex for the {transform} wildcard: the registered transforms only.
TRANSFORM_NAMES = (
    "|".join(
        map(re.escape, normalizers("transforms") + normalizers("transform_section"))
    )
    or "(?!)"
)


def cohorts_using(method):
    """A regex matching the output directories of the cohorts that use batch `method`."""
    outdirs = [
        re.escape(outdir)
        for outdir, settings in COHORTS.items()
        if method in batch_methods(settings)
    ]
    return "|".join(outdirs) or "(?!)"


# --- the outputs of a cohort ------------------------------------------------------------


def cohort_outputs(settings):
    """Every table the core steps produce for one cohort (relative to its outdir)."""
    names = ["raw_counts", "sample_columns", "filtered_counts", "filter_report"]
    names += ["size_factors", "logcpm", "cpm", "normalized_counts"]
    names += ["tpm"] if lengths_available(settings) else []
    names += ["length_report"]
    names += ["abundance_tpm"] if is_quantifier(settings) else []
    files = [delivered(name) for name in names]
    files += [deliverable(transform_stem(name)) for name in transforms(settings)]
    for method in batch_methods(settings):
        files += [deliverable(BATCH_CORRECTORS[method].output), batch_params(method)]
    if config["io"]["write_h5ad"]:
        files.append(path("h5ad"))
    return files


def vst_stage(settings):
    """Whether the cohort has the QC stage vst (VST enabled and transforms.vst.qc)."""
    vst = settings["transforms"]["vst"]
    return vst["enabled"] and vst["qc"]


def qc_stages(settings):
    """The QC stages of a cohort: raw, normalized, with VST vst, with batch correction
    batch_corrected."""
    return (
        ["raw", "normalized"]
        + (["vst"] if vst_stage(settings) else [])
        + [batch_stage(settings, method) for method in batch_methods(settings)]
    )


def qc_outputs(settings):
    """Every QC output of one cohort (relative to its outdir)."""
    files = [path(name) for name in ("qc_metrics", "qc_sample_flags")]
    files += [path(name) for name in ("qc_library_sizes", "qc_batch_vs_condition")]
    files += [
        path(name) for name in ("qc_design", "qc_variance_explained", *MULTIQC_OUTPUTS)
    ]
    files += (
        [path("qc_genes_of_interest")] if settings["qc"]["genes_of_interest"] else []
    )
    files += [path("gene_symbols")] if settings["qc"]["annotation"] else []
    for stage in qc_stages(settings):
        files += [f"qc/{stage}/{figure}.png" for figure in STAGE_FIGURES]
        files += [
            path(name).format(stage=stage)
            for name in ("qc_stage_samples", "qc_stage_metrics", "qc_stage_variance")
        ]
    return files


def final_outputs():
    """Every file the workflow produces, over all cohorts."""
    files = []
    for outdir, settings in COHORTS.items():
        if sharded(settings):  # rules/sharded.smk
            files += [f"{outdir}/{name}" for name in sharded_outputs(settings)]
            continue
        files += [f"{outdir}/{name}" for name in cohort_outputs(settings)]
        files += [f"{outdir}/{name}" for name in qc_outputs(settings)]
        files.append(f"{outdir}/{path('provenance')}")
    return files


# --- input functions --------------------------------------------------------------------


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


def h5ad_inputs(wildcards):
    """The matrices gathered into normalization/normalized.h5ad (io.write_h5ad)."""
    settings = cohort(wildcards)
    inputs = {"samples": settings["samples"]}
    for name, output in [
        ("size_factors", "size_factors"),
        ("counts", "filtered_counts"),
    ]:
        inputs[name] = at(wildcards, output)
    for name in ("logcpm", "cpm", "normalized_counts"):
        inputs[name] = at(wildcards, name)
    if lengths_available(settings):
        inputs["tpm"] = at(wildcards, "tpm")
    if batch_output(settings):
        inputs["batch_corrected"] = f"{wildcards.outdir}/{batch_output(settings)}"
    elif batch_methods(settings):
        # A list of methods: one layer per method, named after it.
        for method in batch_methods(settings):
            inputs[method] = f"{wildcards.outdir}/{batch_output(settings, method)}"
    return inputs


def tpm_counts_input(wildcards):
    settings = cohort(wildcards)
    if settings["tpm"]["source"] == "batch_corrected":
        methods = batch_methods(settings)
        counts_listed = [m for m in methods if BATCH_CORRECTORS[m].input == "counts"]
        if len(methods) > 1:
            if len(counts_listed) != 1:
                raise WorkflowError(
                    f"{settings['cohort']}: tpm.source is batch_corrected, which needs "
                    f"exactly one method of batch_correction.method ({', '.join(methods)}) "
                    f"to give counts; {len(counts_listed)} do. Set tpm.source to filtered."
                )
            return f"{wildcards.outdir}/{batch_output(settings, counts_listed[0])}"
        method = batch_method(settings)
        if method is None or method.input != "counts":
            counts_methods = [
                n for n, m in BATCH_CORRECTORS.items() if m.input == "counts"
            ]
            raise WorkflowError(
                f"{settings['cohort']}: tpm.source is batch_corrected, which needs counts: set "
                f"batch_correction.method to {' or '.join(counts_methods)} or tpm.source to "
                "filtered."
            )
        if is_quantifier(settings):
            # For quantifier input TPM is the quantifier's own abundance; recomputing it
            # from adjusted, rounded counts would be a different and inexact quantity.
            raise WorkflowError(
                f"{settings['cohort']}: tpm.source is batch_corrected, but for "
                f"{settings['counts']['format']} input tpm/tpm is the quantifier's own TPM "
                f"(tximport abundance), which {method.label} does not adjust. Set tpm.source "
                f"to filtered, and use {method.output} for batch-adjusted values."
            )
        return f"{wildcards.outdir}/{batch_output(settings)}"
    return at(wildcards, "filtered_counts")


def provenance_inputs(wildcards):
    settings = cohort(wildcards)
    outputs = [f"{wildcards.outdir}/{name}" for name in cohort_outputs(settings)]
    return {**cohort_inputs(wildcards), "outputs": outputs}


def batch_input(method):
    """The matrix batch corrector `method` reads (logCPM or filtered counts)."""
    return out(BATCH_INPUTS[BATCH_CORRECTORS[method].input])


def qc_stage_inputs(wildcards):
    """The matrix one QC stage reads (plus size factors for batch-corrected counts)."""
    settings = cohort(wildcards)
    inputs = {"samples": settings["samples"]}
    if wildcards.stage == "raw":
        inputs["values"] = at(wildcards, "filtered_counts")
    elif wildcards.stage == "normalized":
        inputs["values"] = at(wildcards, "logcpm")
    elif wildcards.stage == "vst":
        inputs["values"] = f"{wildcards.outdir}/{transform_output('vst')}"
    else:
        stages = {batch_stage(settings, m): m for m in batch_methods(settings)}
        if wildcards.stage not in stages:
            raise WorkflowError(
                f"{settings['cohort']}: QC stage {wildcards.stage} is not a stage of this "
                f"cohort (its stages: {', '.join(qc_stages(settings))})."
            )
        method = BATCH_CORRECTORS[stages[wildcards.stage]]
        inputs["values"] = (
            f"{wildcards.outdir}/{batch_output(settings, stages[wildcards.stage])}"
        )
        if method.input == "counts":
            inputs["size_factors"] = at(wildcards, "size_factors")
    return inputs


def qc_stage_tables(wildcards):
    """The per-stage metrics rows and the normalized stage's per-sample table."""
    stages = qc_stages(cohort(wildcards))
    metrics = path("qc_stage_metrics")
    variance = path("qc_stage_variance")
    return {
        "stage_metrics": [
            f"{wildcards.outdir}/{metrics.format(stage=s)}" for s in stages
        ],
        "stage_variance": [
            f"{wildcards.outdir}/{variance.format(stage=s)}" for s in stages
        ],
        "stage_samples": at(wildcards, "qc_stage_samples").format(stage="normalized"),
    }


def qc_plot(name):
    """A per-stage QC figure registered in the report (label and caption: the registry)."""
    figure = STAGE_FIGURES[name]
    return report(
        f"{{outdir}}/qc/{{stage}}/{name}.png",
        caption=f"../{figure.caption}",
        category="QC",
        subcategory="{stage}",
        labels={"cohort": "{outdir}", "stage": "{stage}", "figure": figure.label},
    )


def qc_plots():
    """Every registered per-stage figure as named outputs of the QC stage rule."""
    return {name: qc_plot(name) for name in STAGE_FIGURES}


def count_stages(settings):
    """The QC stages whose matrix holds counts (batch correctors with counts output)."""
    return [
        batch_stage(settings, m)
        for m in batch_methods(settings)
        if BATCH_CORRECTORS[m].input == "counts"
    ]


def genes_of_interest_inputs(wildcards):
    """Every stage's matrix, the sample sheet and the gene-name annotation (if any)."""
    settings = cohort(wildcards)
    inputs = {
        "samples": settings["samples"],
        "raw_counts": at(wildcards, "raw_counts"),
        "raw": at(wildcards, "filtered_counts"),
        "normalized": at(wildcards, "logcpm"),
    }
    # One panel column per QC stage after these: vst, then each batch correction, keyed
    # stage_<name>; batch-corrected counts are drawn as log-CPM with the size factors.
    if vst_stage(settings):
        inputs["stage_vst"] = f"{wildcards.outdir}/{transform_output('vst')}"
    for method in batch_methods(settings):
        stage = batch_stage(settings, method)
        inputs[f"stage_{stage}"] = (
            f"{wildcards.outdir}/{batch_output(settings, method)}"
        )
        if BATCH_CORRECTORS[method].input == "counts":
            inputs["size_factors"] = at(wildcards, "size_factors")
    if annotation_file(settings):
        inputs["annotation"] = annotation_file(settings)
    return inputs


def export_inputs(wildcards):
    """The hand-off matrix, and with io.gene_name_column the cohort's gene names."""
    inputs = {"matrix": f"{wildcards.outdir}/{HANDOFF_DIR}/{wildcards.stem}.arrow"}
    if config["io"]["gene_name_column"]:
        inputs["gene_symbols"] = at(wildcards, "gene_symbols")
    return inputs
