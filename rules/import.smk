rule import_counts:
    input:
        unpack(cohort_inputs),
        settings=settings_files("import"),
    output:
        counts=made("raw_counts"),
        lengths=out("gene_lengths"),
        sample_columns=out("sample_columns"),
        length_report=out("length_report"),
        abundance=made("abundance_tpm"),
    log:
        log("import_counts"),
    benchmark:
        benchmark_file("import_counts")
    conda:
        "../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=job_mem_mb("import_counts"),
        runtime=job_runtime("import_counts"),
    params:
        counts_config=setting("counts"),
        sample_names=setting("sample_names"),
    script:
        "../scripts/import_counts.py"
