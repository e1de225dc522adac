rule import_counts:
    input:
        unpack(lambda wildcards: {**count_inputs(), **optional_inputs()}),
        samples=config["samples"],
    output:
        counts=out("counts/raw_counts.tsv"),
        lengths=out("counts/gene_lengths.tsv"),
    params:
        counts_config=config["counts"],
        sample_names=SAMPLES["sample"].tolist(),
    log:
        log("import_counts"),
    threads: 2
    resources:
        mem_mb=mem_mb(4),
        runtime=runtime_min(0.05),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/import_counts.py"
