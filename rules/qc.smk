# QC: per-stage plots and summaries, then the cohort's metrics, sample flags and verdict.
# Stages: raw (logCPM of the filtered counts, library sizes only), normalized
# (normalization/logcpm.tsv) and, with batch correction, batch_corrected.


rule qc_stage:
    input:
        unpack(qc_stage_inputs),
        settings=settings_files("qc", "filter", "batch_correction", "normalization"),
    output:
        boxplot=qc_plot("boxplot"),
        density=qc_plot("density"),
        pca=qc_plot("pca"),
        rle=qc_plot("rle"),
        correlation=qc_plot("correlation"),
        ma=qc_plot("ma"),
        samples=out("qc/{stage}/samples.tsv"),
        metrics=out("qc/{stage}/metrics.tsv"),
    log:
        log("qc_{stage}"),
    benchmark:
        benchmark_file("qc_{stage}")
    wildcard_constraints:
        stage="raw|normalized|batch_corrected",
    conda:
        "../envs/qc.yaml"
    threads: 2
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
        raw_counts=out_matrix("counts/raw_counts"),
        filtered_counts=out_matrix("counts/filtered_counts"),
        filter_report=out("counts/filter_report.tsv"),
        size_factors=out("normalization/size_factors.tsv"),
        samples=setting("samples"),
        settings=settings_files("qc", "filter", "batch_correction"),
    output:
        metrics=report(
            out("qc/metrics.tsv"),
            caption="../report/qc_metrics.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "metrics table"},
        ),
        verdict_table=report(
            out("qc/verdict.tsv"),
            caption="../report/qc_verdict.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "verdict table"},
        ),
        flags=report(
            out("qc/sample_flags.tsv"),
            caption="../report/qc_sample_flags.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "sample flags"},
        ),
        library_sizes=report(
            out("qc/library_sizes.png"),
            caption="../report/qc_library_sizes.rst",
            category="QC",
            subcategory="summary",
            labels={"cohort": "{outdir}", "stage": "all", "figure": "library sizes"},
        ),
        verdict=report(
            out("qc/batch_vs_condition.png"),
            caption="../report/qc_batch_vs_condition.rst",
            category="QC",
            subcategory="summary",
            labels={
                "cohort": "{outdir}",
                "stage": "all",
                "figure": "batch vs condition",
            },
        ),
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
