rule size_factors:
    input:
        counts=out("counts/filtered_counts.tsv"),
    output:
        report(
            out("normalization/size_factors.tsv"),
            caption="../report/size_factors.rst",
            category="Normalization",
        ),
    params:
        normalization=config["normalization"],
    log:
        log("size_factors"),
    threads: 1
    resources:
        mem_mb=mem_mb(3),
        runtime=runtime_min(0.05),
    conda:
        "../envs/core.yaml"
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
    params:
        prior_count=config["normalization"]["prior_count"],
    log:
        log("normalized_values"),
    threads: 1
    resources:
        mem_mb=mem_mb(4),
        runtime=runtime_min(0.1),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/normalized_values.py"
