"""Sharded (scatter–gather) mode: the rules of cohorts with sharding.samples_per_shard.

The number of shards is known before the run (the sample sheet's samples), so each
gather's inputs are an expand over the shard indices: Snakemake's own static
scatter–gather, one job per shard and step, runnable on any executor (SLURM included).
Every rule here matches only the outdirs of sharded cohorts, so the in-memory DAG of
other cohorts is unchanged; for a sharded cohort the ruleorder below makes these rules
write the outputs the in-memory rules would (same names). docs/sharding.md describes
the DAG.
"""


ruleorder: sharded_assemble > filter_counts
ruleorder: sharded_assemble > normalized_values
ruleorder: sharded_assemble > batch_correction_combat
ruleorder: sharded_gather_reached > filter_counts
ruleorder: sharded_gather_factors > size_factors
ruleorder: sharded_gather_combat_squares > batch_correction_combat
ruleorder: sharded_assemble > tpm
ruleorder: sharded_seq_assemble > batch_correction_combat_seq
ruleorder: sharded_lengths > import_counts


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
        step="summary|stats|combat_fit|combat_residuals|combat_sums|pca_sums|pca_squares|pca_gram|seq_nonzero|seq_lib",
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
        outdir=sharded_outdirs(method="combat"),
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
        **{name: f"{{outdir}}/{relative}" for name, relative in SHARDED_QC.items()},
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


rule sharded_lengths:
    input:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        filtered=gathered("reached"),
        lengths=setting("lengths"),
        settings=settings_files("import", "tpm", "sharding"),
    output:
        lengths=out("gene_lengths"),
        report=out("length_report"),
        rows=f"{{outdir}}/{SHARD_DIR}/tpm_lengths.npz",
    log:
        log("sharded/lengths"),
    benchmark:
        benchmark_file("sharded/lengths")
    wildcard_constraints:
        outdir=sharded_outdirs(),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_gather"),
        runtime=shard_runtime("sharded_gather"),
    params:
        missing_lengths=setting("tpm", "missing_lengths"),
        unit=setting("tpm", "unit"),
    script:
        "../scripts/sharded_lengths.py"


rule sharded_tpm:
    input:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        filtered=gathered("reached"),
        lengths=f"{{outdir}}/{SHARD_DIR}/tpm_lengths.npz",
        settings=settings_files("tpm", "sharding"),
    output:
        handoff(f"{{outdir}}/{SHARD_DIR}/tpm/{{shard}}.h5"),
    log:
        f"{{outdir}}/logs/sharded/tpm/{{shard}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/tpm/{{shard}}.tsv"
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
        step="tpm",
        n_samples=lambda wildcards: len(cohort(wildcards)["sample_names"]),
        samples_per_shard=setting("sharding", "samples_per_shard"),
        unit=setting("tpm", "unit"),
        dtype=setting("tpm", "dtype"),
    script:
        "../scripts/sharded_apply.py"


rule sharded_seq_block:
    input:
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        filtered=gathered("reached"),
        gathered=gathered("seq_lib"),
        samples=setting("samples"),
        settings=settings_files("batch_correction", "sharding"),
    output:
        f"{{outdir}}/{SHARD_DIR}/combat_seq/{{block}}.npz",
    log:
        f"{{outdir}}/logs/sharded/combat_seq/{{block}}.log",
    benchmark:
        f"{{outdir}}/benchmarks/sharded/combat_seq/{{block}}.tsv"
    wildcard_constraints:
        outdir=sharded_outdirs(method="combat_seq"),
        block=r"\d+",
    conda:
        "../envs/batch.yaml"
    threads: 2
    resources:
        mem_mb=shard_mem_mb("sharded_seq_block"),
        runtime=shard_runtime("sharded_seq_block"),
    params:
        n_blocks=lambda wildcards: n_gene_blocks(wildcards.outdir),
        sample_names=setting("sample_names"),
        batch_correction=setting("batch_correction"),
    script:
        "../scripts/sharded_seq_block.py"


rule sharded_seq_assemble:
    input:
        blocks=every_block,
        filtered=gathered("reached"),
        source=f"{{outdir}}/{SHARD_DIR}/source.json",
        samples=setting("samples"),
        settings=settings_files("batch_correction", "sharding"),
    output:
        counts=handoff(
            f"{{outdir}}/{matrix_file(BATCH_CORRECTORS['combat_seq'].output)}"
        ),
        params=f"{{outdir}}/{batch_params('combat_seq')}",
    log:
        log("sharded/combat_seq_assemble"),
    benchmark:
        benchmark_file("sharded/combat_seq_assemble")
    wildcard_constraints:
        outdir=sharded_outdirs(method="combat_seq"),
    conda:
        "../envs/batch.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb("sharded_assemble"),
        runtime=shard_runtime("sharded_assemble"),
    params:
        sample_names=setting("sample_names"),
        batch_correction=setting("batch_correction"),
    script:
        "../scripts/sharded_seq_assemble.py"
