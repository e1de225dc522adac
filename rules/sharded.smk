"""Sharded (scatter–gather) mode: the rules of cohorts with sharding.samples_per_shard.

The number of shards is known before the run (the sample sheet's samples), so each
gather's inputs are an expand over the shard indices: Snakemake's own static
scatter–gather, one job per shard and step, runnable on any executor (SLURM included).
Every rule here matches only the outdirs of sharded cohorts, so the in-memory DAG of
other cohorts is unchanged; for a sharded cohort the ruleorder below makes these rules
write the outputs the in-memory rules would (same names). docs/sharding.md describes
the DAG.
"""

SHARD_DIR = ".cohortnorm/shards"
#: Per-shard statistic steps, in DAG order (scripts/sharded_scatter.py).
COUNT_STEPS = ["summary", "reached", "stats", "factors"]
COMBAT_STEPS = ["combat_fit", "combat_residuals", "combat_sums", "combat_squares"]
PCA_STEPS = ["pca_sums", "pca_squares", "pca_gram", "pca_scores"]
SCATTER_STEPS = COUNT_STEPS + COMBAT_STEPS + PCA_STEPS
#: The step each step's shards need gathered first (None: only the shard).
PREVIOUS_STEP = dict(zip(SCATTER_STEPS[1:], SCATTER_STEPS[:-1], strict=True))
PREVIOUS_STEP.update(summary=None, combat_fit=None, pca_sums=None)
#: Matrices written one store per shard, then assembled into their hand-off files.
VALUE_MATRICES = ["filtered_counts", "logcpm", "cpm", "normalized_counts"]
#: Store name → the matrix stem it is assembled into.
SHARDED_STEMS = {name: OUTPUTS[name] for name in VALUE_MATRICES}
SHARDED_STEMS["combat_logcpm"] = BATCH_CORRECTORS["combat"].output


def sharded_outdirs(fmt=None):
    """A regex of the sharded cohorts' outdirs (of counts format `fmt` when given)."""
    outdirs = [
        re.escape(outdir)
        for outdir, settings in COHORTS.items()
        if sharded(settings) and fmt in (None, settings["counts"]["format"])
    ]
    return "|".join(outdirs) or "(?!)"


def n_shards(settings):
    """How many shards cover the cohort's samples (the sheet's, checked to be the
    count file's columns in the same order by the first job)."""
    k = settings["sharding"]["samples_per_shard"]
    return -(-len(settings["sample_names"]) // k)


def shard_path(name):
    """A per-shard file pattern under the cohort's shard folder ({shard}: 0, 1, ...)."""
    return f"{{outdir}}/{SHARD_DIR}/{name}/{{shard}}"


def gathered(step):
    """The gathered vectors of `step` (a pattern)."""
    return f"{{outdir}}/{SHARD_DIR}/gathered/{step}.npz"


def every_shard(pattern):
    """An input function: `pattern` ({outdir}, {shard}) for every shard of the cohort."""

    def _files(wildcards):
        count = n_shards(cohort(wildcards))
        return [
            pattern.format(outdir=wildcards.outdir, shard=i) for i in range(count)
        ]

    return _files


def scatter_inputs(wildcards):
    """A per-shard step's inputs: the counts (or its shard's logCPM) and the previous
    step's gathered vectors."""
    step = wildcards.step
    folder = f"{wildcards.outdir}/{SHARD_DIR}"
    inputs = {"samples": cohort(wildcards)["samples"]}
    if step in COUNT_STEPS:
        inputs["source"] = f"{folder}/source.json"
    else:
        inputs["values"] = f"{folder}/logcpm/{wildcards.shard}.h5"
    if PREVIOUS_STEP[step]:
        inputs["gathered"] = f"{folder}/gathered/{PREVIOUS_STEP[step]}.npz"
    if step == "factors":
        inputs["filtered"] = f"{folder}/gathered/reached.npz"
    return inputs


def gather_inputs(fixed_step=None):
    """An input function of a gather: every shard's statistics of its step (`fixed_step`,
    else the {step} wildcard), the gathered vectors those were computed from, the counts'
    source and the filter's keep vector."""

    def _inputs(wildcards):
        return _gather_inputs(wildcards, fixed_step or wildcards.step)

    return _inputs


def _gather_inputs(wildcards, step):
    folder = f"{wildcards.outdir}/{SHARD_DIR}"
    inputs = {
        "samples": cohort(wildcards)["samples"],
        "source": f"{folder}/source.json",
        "parts": every_shard(f"{{outdir}}/{SHARD_DIR}/{step}/{{shard}}.npz")(wildcards),
    }
    if PREVIOUS_STEP[step]:
        inputs["gathered"] = f"{folder}/gathered/{PREVIOUS_STEP[step]}.npz"
    if step not in ("summary", "reached"):
        inputs["filtered"] = f"{folder}/gathered/reached.npz"
    return inputs


def sharded_outputs(settings):
    """The deliverables of a sharded cohort (relative to its outdir), docs/sharding.md."""
    files = [delivered(name) for name in VALUE_MATRICES]
    files += [path("filter_report"), path("size_factors")]
    for method in batch_methods(settings):
        files += [as_delivered(batch_output(settings, method)), batch_params(method)]
    files += list(SHARDED_QC.values())
    return files


#: The QC outputs of the sharded mode (the normalized stage's PCA and per-sample numbers).
SHARDED_QC = {
    "samples": "qc/sharded/samples.tsv",
    "variance": "qc/sharded/pca_variance.tsv",
    "figure": "qc/sharded/pca.png",
    "metrics": "qc/sharded/metrics.tsv",
}


ruleorder: sharded_assemble > filter_counts
ruleorder: sharded_assemble > normalized_values
ruleorder: sharded_assemble > batch_correction_combat
ruleorder: sharded_gather_reached > filter_counts
ruleorder: sharded_gather_factors > size_factors
ruleorder: sharded_gather_combat_squares > batch_correction_combat


rule sharded_source_matrix:
    input:
        unpack(count_inputs),
        samples=setting("samples"),
        settings=settings_files("import", "sharding"),
    output:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        store=f"{{outdir}}/{SHARD_DIR}/counts.h5",
    log:
        log("sharded/source"),
    benchmark:
        benchmark_file("sharded/source")
    wildcard_constraints:
        outdir=sharded_outdirs("matrix"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_source"),
        runtime=shard_runtime("sharded_source"),
    params:
        counts_config=setting("counts"),
        sample_names=setting("sample_names"),
    script:
        "../scripts/sharded_source.py"


rule sharded_source_h5ad:
    input:
        unpack(count_inputs),
        samples=setting("samples"),
        settings=settings_files("import", "sharding"),
    output:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
    log:
        log("sharded/source"),
    benchmark:
        benchmark_file("sharded/source")
    wildcard_constraints:
        outdir=sharded_outdirs("h5ad"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_source"),
        runtime=shard_runtime("sharded_source"),
    params:
        counts_config=setting("counts"),
        sample_names=setting("sample_names"),
    script:
        "../scripts/sharded_source.py"


rule sharded_scatter:
    input:
        unpack(scatter_inputs),
        settings=settings_files(
            "filter", "normalization", "batch_correction", "sharding"
        ),
    output:
        f"{{outdir}}/{SHARD_DIR}/{{step}}/{{shard}}.npz",
    log:
        f"{{outdir}}/logs/sharded/{{step}}/{{shard}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/{{step}}/{{shard}}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
        step="|".join(SCATTER_STEPS),
        shard=r"\d+",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_scatter"),
        runtime=shard_runtime("sharded_scatter"),
    params:
        step=lambda wildcards: wildcards.step,
        n_samples=lambda wildcards: len(cohort(wildcards)["sample_names"]),
        samples_per_shard=setting("sharding", "samples_per_shard"),
        sample_names=setting("sample_names"),
        normalization=setting("normalization"),
        batch_correction=setting("batch_correction"),
    script:
        "../scripts/sharded_scatter.py"


def gather_rule_params(fixed_step=None):
    """The params every gather script call reads."""
    return dict(
        step=lambda wildcards: fixed_step or wildcards.step,
        counts=setting("counts", "path"),
        sample_names=setting("sample_names"),
        filter=setting("filter"),
        normalization=setting("normalization"),
        batch_correction=setting("batch_correction"),
        qc=setting("qc"),
    )


# Gathers whose only output is the gathered vectors.
rule sharded_gather:
    input:
        unpack(gather_inputs()),
        settings=settings_files(
            "filter", "normalization", "batch_correction", "sharding"
        ),
    output:
        gathered=gathered("{step}"),
    log:
        f"{{outdir}}/logs/sharded/gather_{{step}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/gather_{{step}}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
        step="summary|stats|combat_fit|combat_residuals|combat_sums|pca_sums|pca_squares|pca_gram",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_gather"),
        runtime=shard_runtime("sharded_gather"),
    params:
        **gather_rule_params(),
    script:
        "../scripts/sharded_gather.py"


rule sharded_gather_reached:
    input:
        unpack(gather_inputs("reached")),
        settings=settings_files("filter", "sharding"),
    output:
        gathered=gathered("reached"),
        report=out("filter_report"),
    log:
        f"{{outdir}}/logs/sharded/gather_reached.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/gather_reached.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_gather"),
        runtime=shard_runtime("sharded_gather"),
    params:
        **gather_rule_params("reached"),
    script:
        "../scripts/sharded_gather.py"


rule sharded_gather_factors:
    input:
        unpack(gather_inputs("factors")),
        settings=settings_files("filter", "normalization", "sharding"),
    output:
        table=out("size_factors"),
    log:
        f"{{outdir}}/logs/sharded/gather_factors.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/gather_factors.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_gather"),
        runtime=shard_runtime("sharded_gather"),
    params:
        **gather_rule_params("factors"),
    script:
        "../scripts/sharded_gather.py"


rule sharded_gather_combat_squares:
    input:
        unpack(gather_inputs("combat_squares")),
        settings=settings_files("batch_correction", "sharding"),
    output:
        gathered=gathered("combat_squares"),
        params=f"{{outdir}}/{batch_params('combat')}",
    log:
        f"{{outdir}}/logs/sharded/gather_combat_squares.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/gather_combat_squares.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
    conda:
        "../envs/batch.yaml"
    threads: 2
    resources:
        mem_mb=shard_mem_mb("sharded_gather_combat"),
        runtime=shard_runtime("sharded_gather_combat"),
    params:
        **gather_rule_params("combat_squares"),
    script:
        "../scripts/sharded_gather.py"


rule sharded_values:
    input:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        filtered=gathered("reached"),
        size_factors=out("size_factors"),
        settings=settings_files("normalization", "sharding"),
    output:
        **{
            name: handoff(f"{{outdir}}/{SHARD_DIR}/{name}/{{shard}}.h5")
            for name in VALUE_MATRICES
        },
    log:
        f"{{outdir}}/logs/sharded/values/{{shard}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/values/{{shard}}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
        shard=r"\d+",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_values"),
        runtime=shard_runtime("sharded_values"),
    params:
        step="values",
        n_samples=lambda wildcards: len(cohort(wildcards)["sample_names"]),
        samples_per_shard=setting("sharding", "samples_per_shard"),
        prior_count=setting("normalization", "prior_count"),
    script:
        "../scripts/sharded_apply.py"


rule sharded_combat:
    input:
        values=f"{{outdir}}/{SHARD_DIR}/logcpm/{{shard}}.h5",
        gathered=gathered("combat_squares"),
        samples=setting("samples"),
        settings=settings_files("batch_correction", "sharding"),
    output:
        handoff(f"{{outdir}}/{SHARD_DIR}/combat_logcpm/{{shard}}.h5"),
    log:
        f"{{outdir}}/logs/sharded/combat/{{shard}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/combat/{{shard}}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
        shard=r"\d+",
    conda:
        "../envs/batch.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_combat"),
        runtime=shard_runtime("sharded_combat"),
    params:
        step="combat",
        n_samples=lambda wildcards: len(cohort(wildcards)["sample_names"]),
        samples_per_shard=setting("sharding", "samples_per_shard"),
        sample_names=setting("sample_names"),
        batch_correction=setting("batch_correction"),
    script:
        "../scripts/sharded_apply.py"


def assemble_inputs(wildcards):
    """Every shard's store of the matrix `stem` names."""
    name = Path(wildcards.stem).name
    return every_shard(f"{{outdir}}/{SHARD_DIR}/{name}/{{shard}}.h5")(wildcards)


rule sharded_assemble:
    input:
        shards=assemble_inputs,
        settings=settings_files("sharding"),
    output:
        handoff(f"{{outdir}}/{HANDOFF_DIR}/{{stem}}.arrow"),
    log:
        "{outdir}/logs/sharded/assemble/{stem}.log",
    benchmark:
        "{outdir}/benchmarks/sharded/assemble/{stem}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(),
        stem="|".join(re.escape(stem) for stem in SHARDED_STEMS.values()),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_assemble"),
        runtime=shard_runtime("sharded_assemble"),
    params:
        genes_per_block=setting("sharding", "genes_per_block"),
    script:
        "../scripts/sharded_assemble.py"


rule sharded_qc:
    input:
        summary=every_shard(f"{{outdir}}/{SHARD_DIR}/summary/{{shard}}.npz"),
        scores=every_shard(f"{{outdir}}/{SHARD_DIR}/pca_scores/{{shard}}.npz"),
        axes=gathered("pca_gram"),
        size_factors=out("size_factors"),
        samples=setting("samples"),
        settings=settings_files("qc", "sharding"),
    output:
        **{
            name: f"{{outdir}}/{relative}"
            for name, relative in SHARDED_QC.items()
        },
    log:
        log("sharded/qc"),
    benchmark:
        benchmark_file("sharded/qc")
    wildcard_constraints:
        outdir=sharded_outdirs(),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_qc"),
        runtime=shard_runtime("sharded_qc"),
    params:
        sample_names=setting("sample_names"),
        condition=setting("filter", "group"),
        batch=setting("batch_correction", "batch"),
        cohort=setting("cohort"),
    script:
        "../scripts/sharded_qc.py"
