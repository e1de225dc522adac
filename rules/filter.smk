rule filter_counts:
    input:
        counts=out("raw_counts"),
        samples=setting("samples"),
        settings=settings_files("filter"),
    output:
        counts=made("filtered_counts"),
        report=report(
            out("filter_report"),
            caption="../report/filter_report.rst",
            category="Counts",
            labels={"cohort": "{outdir}", "table": "filter report"},
        ),
    log:
        log("filter_counts"),
    benchmark:
        benchmark_file("filter_counts")
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("filter_counts"),
        runtime=job_runtime("filter_counts"),
    params:
        filter=setting("filter"),
    script:
        "../scripts/filter_counts.py"
