# QC: per-stage plots and summaries, then the cohort's metrics, sample flags and verdict.
# Stages: raw (logCPM of the filtered counts, library sizes only), normalized
# (normalization/logcpm.tsv), vst (normalization/vst.tsv, DESeq2's VST, as nf-core/rnaseq
# draws its PCA) and, with batch correction, batch_corrected.


rule qc_stage:
    input:
        unpack(qc_stage_inputs),
        settings=settings_files("qc", "filter", "batch_correction", "normalization"),
    output:
        **qc_plots(),
        samples=out("qc_stage_samples"),
        metrics=out("qc_stage_metrics"),
        variance_explained=out("qc_stage_variance"),
    log:
        log("qc_{stage}"),
    benchmark:
        benchmark_file("qc_{stage}")
    wildcard_constraints:
        stage="|".join(
            ["raw", "normalized", "vst", "batch_corrected", *BATCH_CORRECTORS]
        ),
    conda:
        "../envs/qc.yaml"
    # Most of a stage's work is on one core; with --cores 2 two stages (or a stage and an
    # export) run side by side instead of one after the other.
    threads: 1
    resources:
        mem_mb=job_mem_mb("qc_stage"),
        runtime=job_runtime("qc_stage"),
    params:
        qc=setting("qc"),
        condition=setting("filter", "group"),
        batch_correction=setting("batch_correction"),
        prior_count=setting("normalization", "prior_count"),
        cohort=setting("cohort"),
    script:
        "../scripts/qc_stage.py"


rule qc_summary:
    input:
        unpack(qc_stage_tables),
        raw_counts=out("raw_counts"),
        filtered_counts=out("filtered_counts"),
        filter_report=out("filter_report"),
        size_factors=out("size_factors"),
        samples=setting("samples"),
        settings=settings_files("qc", "filter", "batch_correction", "normalization"),
    output:
        metrics=report(
            out("qc_metrics"),
            caption="../report/qc_metrics.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "metrics table"},
        ),
        verdict_table=report(
            out("qc_verdict"),
            caption="../report/qc_verdict.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "verdict table"},
        ),
        flags=report(
            out("qc_sample_flags"),
            caption="../report/qc_sample_flags.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "sample flags"},
        ),
        library_sizes=report(
            out("qc_library_sizes"),
            caption="../report/qc_library_sizes.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "library sizes"},
        ),
        verdict=report(
            out("qc_batch_vs_condition"),
            caption="../report/qc_batch_vs_condition.rst",
            category="QC",
            subcategory="summary",
            labels={
                "cohort": "{outdir}",
                "stage": "all",
                "figure": "batch vs condition",
            },
        ),
        design=report(
            out("qc_design"),
            caption="../report/qc_design.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "design table"},
        ),
        variance_explained=report(
            out("qc_variance_explained"),
            caption="../report/qc_variance_explained.rst",
            category="QC",
            subcategory="summary",
            labels={
                "cohort": "{outdir}",
                "stage": "all",
                "figure": "variance explained",
            },
        ),
        multiqc_general_stats=out("qc_multiqc_general_stats"),
        multiqc_sample_qc=out("qc_multiqc_sample_qc"),
        multiqc_verdict=out("qc_multiqc_verdict"),
    log:
        log("qc_summary"),
    benchmark:
        benchmark_file("qc_summary")
    conda:
        "../envs/qc.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("qc_summary"),
        runtime=job_runtime("qc_summary"),
    params:
        qc=setting("qc"),
        condition=setting("filter", "group"),
        batch_correction=setting("batch_correction"),
        cohort=setting("cohort"),
    script:
        "../scripts/qc_summary.py"


rule qc_genes_of_interest:
    input:
        unpack(genes_of_interest_inputs),
        settings=settings_files("qc", "filter", "batch_correction", "normalization"),
    output:
        report(
            out("qc_genes_of_interest"),
            caption="../report/qc_genes_of_interest.rst",
            category="QC",
            subcategory="summary",
            labels={
                "cohort": "{outdir}",
                "stage": "all",
                "figure": "genes of interest",
            },
        ),
    log:
        log("qc_genes_of_interest"),
    benchmark:
        benchmark_file("qc_genes_of_interest")
    conda:
        "../envs/qc.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("qc_genes_of_interest"),
        runtime=job_runtime("qc_genes_of_interest"),
    params:
        qc=setting("qc"),
        condition=setting("filter", "group"),
        batch_correction=setting("batch_correction"),
        prior_count=setting("normalization", "prior_count"),
        cohort=setting("cohort"),
        count_stages=lambda wildcards: count_stages(cohort(wildcards)),
    script:
        "../scripts/genes_of_interest.py"


rule gene_symbols:
    input:
        counts=out("raw_counts"),
        annotation=lambda wildcards: annotation_file(cohort(wildcards)),
    output:
        out("gene_symbols"),
    log:
        log("gene_symbols"),
    benchmark:
        benchmark_file("gene_symbols")
    conda:
        "../envs/qc.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("gene_symbols"),
        runtime=job_runtime("gene_symbols"),
    script:
        "../scripts/gene_symbols.py"
