rule tpm:
    input:
        counts=tpm_counts_input,
        lengths=out("gene_lengths"),
        abundance=out("abundance_tpm"),
        settings=settings_files("tpm"),
    output:
        made("tpm"),
    log:
        log("tpm"),
    benchmark:
        benchmark_file("tpm")
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("tpm"),
        runtime=job_runtime("tpm"),
    params:
        unit=setting("tpm", "unit"),
        missing_lengths=setting("tpm", "missing_lengths"),
        dtype=setting("tpm", "dtype"),
        counts_format=setting("counts", "format"),
        lengths_file=setting("lengths"),
    script:
        "../scripts/tpm.py"
