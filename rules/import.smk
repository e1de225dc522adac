rule import_counts:
    input:
        unpack(cohort_inputs),
        settings=settings_files("import"),
    output:
        counts=out_matrix("counts/raw_counts"),
        lengths=out("counts/gene_lengths.tsv"),
        sample_columns=out("counts/sample_columns.tsv"),
        length_report=out("counts/length_report.tsv"),
        abundance=out_matrix("counts/abundance_tpm"),
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
