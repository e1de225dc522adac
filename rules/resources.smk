"""Cluster requests (memory, runtime) of every rule, keyed by rule name.

Memory and runtime come from the dimensions of the job's largest input matrix and the
per-rule costs measured in bench/ (cohortnorm.resources.RULE_COSTS, documented in
docs/slurm.md). Before a matrix exists (a dry run, or a job whose inputs are not made
yet) the cohort's imported dimensions stand in: genes from the count file, samples from
the sheet, an upper bound for every later matrix.
"""

from cohortnorm import resources

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
        if str(path).endswith((".tsv", ".parquet", ".arrow", ".h5ad", ".gz"))
        and os.path.isfile(path)
        and os.path.abspath(path).startswith(os.path.abspath(wildcards.outdir) + os.sep)
    ]
    shapes = [s for s in map(resources.matrix_shape, matrices) if s]
    if shapes:
        genes, samples = max(shapes, key=lambda s: s[0] * s[1])
    return genes, samples


def _cost(rule_name, wildcards):
    if rule_name == "transform":
        rule_name = f"transform_{wildcards.transform}"
        if (
            rule_name == "transform_vst"
            and cohort(wildcards)["transforms"]["vst"]["nsub"] is None
        ):
            rule_name = "transform_vst_full"
    if rule_name == "size_factors":
        if cohort(wildcards)["normalization"]["size_factor_type"] == "scran":
            rule_name = "size_factors_scran"
    if rule_name == "batch_correction_combat":
        if not cohort(wildcards)["batch_correction"]["combat"]["parametric"]:
            rule_name = "batch_correction_combat_nonparametric"
    return resources.RULE_COSTS[rule_name]


def _shape(rule_name, wildcards, input):
    if rule_name == "import_counts":
        return raw_shape(wildcards.outdir)
    return _job_shape(wildcards, input)


def job_mem_mb(rule_name):
    """A resources function: memory (MB) for `rule_name`, see cohortnorm.resources."""

    def _mem(wildcards, input, attempt):
        genes, samples = _shape(rule_name, wildcards, input)
        return resources.mem_mb(_cost(rule_name, wildcards), genes, samples, attempt)

    return _mem


def job_runtime(rule_name):
    """A resources function: runtime (minutes) for `rule_name`, see cohortnorm.resources."""

    def _runtime(wildcards, input, attempt):
        genes, samples = _shape(rule_name, wildcards, input)
        return resources.runtime_min(
            _cost(rule_name, wildcards), genes, samples, attempt
        )

    return _runtime


# --- the sharded mode: sizes from the shard or block a job holds, not the cohort --------


def shard_shape(rule_name, wildcards):
    """Genes × samples a sharded job holds: a shard (all genes × samples_per_shard), a
    gather (one vector per gene and shard), or a block (genes_per_block × all samples).
    """
    settings = cohort(wildcards)
    genes, samples = raw_shape(wildcards.outdir)
    shard = min(settings["sharding"]["samples_per_shard"], samples)
    shards = -(-samples // max(shard, 1))
    if rule_name in ("sharded_gather", "sharded_gather_combat", "sharded_qc"):
        if (
            rule_name == "sharded_gather"
            and getattr(wildcards, "step", None) == "seq_lib"
        ):
            # ComBat-seq's pooled pass reads one batch whole: bounded by the cohort.
            return genes, samples
        return genes, shards
    if rule_name == "sharded_seq_block":
        return min(settings["sharding"]["genes_per_block"], genes), samples
    if rule_name == "sharded_assemble":
        return min(settings["sharding"]["genes_per_block"], genes), samples
    return genes, shard


def _shard_cost(rule_name, wildcards):
    combat = cohort(wildcards)["batch_correction"]["combat"]
    if rule_name == "sharded_gather_combat" and not combat["parametric"]:
        # The non-parametric prior step is quadratic in the genes (genes² × batches).
        rule_name = "sharded_gather_combat_nonparametric"
    return resources.RULE_COSTS[rule_name]


def shard_mem_mb(rule_name):
    """A resources function: memory (MB) of a sharded rule, from its shard or block."""

    def _mem(wildcards, attempt):
        genes, samples = shard_shape(rule_name, wildcards)
        cost = _shard_cost(rule_name, wildcards)
        return resources.mem_mb(cost, genes, samples, attempt)

    return _mem


def shard_runtime(rule_name):
    """A resources function: runtime (minutes) of a sharded rule, from its shard or block."""

    def _runtime(wildcards, attempt):
        genes, samples = shard_shape(rule_name, wildcards)
        cost = _shard_cost(rule_name, wildcards)
        return resources.runtime_min(cost, genes, samples, attempt)

    return _runtime
