"""Paths, input functions and output lists of the sharded (scatter–gather) mode.

Its rules are in rules/sharded.smk; docs/sharding.md describes the DAG. Shard counts
come from the sample sheet (ceil(samples / sharding.samples_per_shard)), so every
gather's inputs are known before the run.
"""

SHARD_DIR = ".cohortnorm/shards"
#: Per-shard statistic steps, in DAG order (scripts/sharded_scatter.py).
COUNT_STEPS = ["summary", "reached", "stats", "factors"]
COMBAT_STEPS = ["combat_fit", "combat_residuals", "combat_sums", "combat_squares"]
PCA_STEPS = ["pca_sums", "pca_squares", "pca_gram", "pca_scores"]
SEQ_STEPS = ["seq_nonzero", "seq_lib"]
SCATTER_STEPS = COUNT_STEPS + COMBAT_STEPS + PCA_STEPS + SEQ_STEPS
#: The step each step's shards need gathered first (None: only the shard).
PREVIOUS_STEP = dict(zip(SCATTER_STEPS[1:], SCATTER_STEPS[:-1], strict=True))
PREVIOUS_STEP.update(
    summary=None, combat_fit=None, pca_sums=None, seq_nonzero="reached"
)
#: Matrices written one store per shard, then assembled into their hand-off files.
VALUE_MATRICES = ["filtered_counts", "logcpm", "cpm", "normalized_counts"]
#: Store name → the matrix stem it is assembled into.
SHARDED_STEMS = {name: OUTPUTS[name] for name in VALUE_MATRICES}
SHARDED_STEMS["combat_logcpm"] = BATCH_CORRECTORS["combat"].output
SHARDED_STEMS["tpm"] = OUTPUTS["tpm"]


def sharded_outdirs(fmt=None, method=None):
    """A regex of the sharded cohorts' outdirs (of counts format `fmt`, using batch
    corrector `method`, when given)."""
    outdirs = [
        re.escape(outdir)
        for outdir, settings in COHORTS.items()
        if sharded(settings)
        and fmt in (None, settings["counts"]["format"])
        and (method is None or method in batch_methods(settings))
    ]
    return "|".join(outdirs) or "(?!)"


def n_gene_blocks(outdir):
    """How many ComBat-seq gene blocks a cohort has: its estimated gene count (from the
    count file's size or metadata, rules/resources.smk) over sharding.genes_per_block.
    Each job cuts the real gene count into this many equal ranges, so an estimate off by
    some genes changes the blocks' size, never which genes are covered."""
    genes = raw_shape(outdir)[0]
    if not genes:
        raise WorkflowError(
            f"{outdir}: the number of genes of {COHORTS[outdir]['counts']['path']} could "
            "not be read before the run, which ComBat-seq's gene blocks need in sharded mode."
        )
    return -(-genes // COHORTS[outdir]["sharding"]["genes_per_block"])


def every_block(wildcards):
    """The ComBat-seq result of every gene block of the cohort."""
    count = n_gene_blocks(wildcards.outdir)
    return [f"{wildcards.outdir}/{SHARD_DIR}/combat_seq/{b}.npz" for b in range(count)]


def n_shards(settings):
    """How many shards cover the cohort's samples (the sheet's, checked to be the
    count file's columns in the same order by the first job)."""
    k = settings["sharding"]["samples_per_shard"]
    return -(-len(settings["sample_names"]) // k)


def gathered(step):
    """The gathered vectors of `step` (a pattern)."""
    return f"{{outdir}}/{SHARD_DIR}/gathered/{step}.npz"


def every_shard(pattern):
    """An input function: `pattern` ({outdir}, {shard}) for every shard of the cohort."""

    def _files(wildcards):
        count = n_shards(cohort(wildcards))
        return [pattern.format(outdir=wildcards.outdir, shard=i) for i in range(count)]

    return _files


def scatter_inputs(wildcards):
    """A per-shard step's inputs: the counts (or its shard's logCPM) and the previous
    step's gathered vectors."""
    step = wildcards.step
    folder = f"{wildcards.outdir}/{SHARD_DIR}"
    inputs = {"samples": cohort(wildcards)["samples"]}
    if step in COUNT_STEPS + SEQ_STEPS:
        inputs["source"] = f"{folder}/source.json"
    else:
        inputs["values"] = f"{folder}/logcpm/{wildcards.shard}.h5"
    if PREVIOUS_STEP[step]:
        inputs["gathered"] = f"{folder}/gathered/{PREVIOUS_STEP[step]}.npz"
    if step in ("factors", "seq_lib"):
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
    if settings.get("lengths"):
        files += [delivered("tpm"), path("gene_lengths"), path("length_report")]
    for method in batch_methods(settings):
        files += [deliverable(BATCH_CORRECTORS[method].output), batch_params(method)]
    files += list(SHARDED_QC.values())
    return files


#: The QC outputs of the sharded mode (the normalized stage's PCA and per-sample numbers).
SHARDED_QC = {
    "samples": "qc/sharded/samples.tsv",
    "variance": "qc/sharded/pca_variance.tsv",
    "figure": "qc/sharded/pca.png",
    "metrics": "qc/sharded/metrics.tsv",
}


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


def assemble_inputs(wildcards):
    """Every shard's store of the matrix `stem` names."""
    name = Path(wildcards.stem).name
    return every_shard(f"{{outdir}}/{SHARD_DIR}/{name}/{{shard}}.h5")(wildcards)
