rule size_factors:
    input:
        counts=out("counts/filtered_counts.tsv"),
    output:
        report(
            out("normalization/size_factors.tsv"),
            caption="../report/size_factors.rst",
            category="Normalization",
            labels={"cohort": "{outdir}", "table": "size factors"},
        ),
    log:
        log("size_factors"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(3),
        runtime=runtime_min(0.05),
    params:
        normalization=setting("normalization"),
    script:
        "../scripts/size_factors.py"


rule normalized_values:
    input:
        counts=out("counts/filtered_counts.tsv"),
        size_factors=out("normalization/size_factors.tsv"),
    output:
        logcpm=out("normalization/logcpm.tsv"),
        cpm=out("normalization/cpm.tsv"),
        normalized_counts=out("normalization/normalized_counts.tsv"),
    log:
        log("normalized_values"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(4),
        runtime=runtime_min(0.1),
    params:
        prior_count=setting("normalization", "prior_count"),
    script:
        "../scripts/normalized_values.py"
