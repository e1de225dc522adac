def tpm_counts_input(wildcards):
    if config["tpm"]["source"] == "batch_corrected":
        if BATCH_METHOD != "combat_seq":
            raise WorkflowError(
                "config tpm.source is batch_corrected, which needs counts: set "
                "batch_correction.method to combat_seq or tpm.source to filtered."
            )
        return BATCH_OUTPUT
    return out("counts/filtered_counts.tsv")


rule tpm:
    input:
        counts=tpm_counts_input,
        lengths=out("counts/gene_lengths.tsv"),
    output:
        out("tpm/tpm.tsv"),
    params:
        unit=config["tpm"]["unit"],
        missing_lengths=config["tpm"]["missing_lengths"],
    log:
        log("tpm"),
    threads: 1
    resources:
        mem_mb=mem_mb(3),
        runtime=runtime_min(0.05),
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/tpm.py"
