rule filter_counts:
    input:
        counts=out("counts/raw_counts.tsv"),
        samples=setting("samples"),
    output:
        counts=out("counts/filtered_counts.tsv"),
        report=report(
            out("counts/filter_report.tsv"),
            caption="../report/filter_report.rst",
            category="Counts",
            labels={"cohort": "{outdir}", "table": "filter report"},
        ),
    log:
        log("filter_counts"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(3),
        runtime=runtime_min(0.05),
    params:
        filter=setting("filter"),
    script:
        "../scripts/filter_counts.py"
