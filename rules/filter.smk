rule filter_counts:
    input:
        counts=out("counts/raw_counts.tsv"),
        samples=config["samples"],
    output:
        counts=out("counts/filtered_counts.tsv"),
        report=report(
            out("counts/filter_report.tsv"),
            caption="../report/filter_report.rst",
            category="Counts",
        ),
    params:
        filter=config["filter"],
    log:
        log("filter_counts"),
    threads: 1
    resources:
        mem_mb=mem_mb(3),
        runtime=runtime_min(0.05),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/filter_counts.py"
