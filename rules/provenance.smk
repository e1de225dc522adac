rule provenance:
    input:
        unpack(provenance_inputs),
        settings=settings_files(*SETTINGS_SECTIONS),
    output:
        out("provenance"),
    log:
        log("provenance"),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        config=lambda wildcards: {
            k: v for k, v in cohort(wildcards).items() if k != "sample_names"
        },
    script:
        "../scripts/provenance.py"
