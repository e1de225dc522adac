def batch_input(wildcards):
    if BATCH_METHOD == "combat_seq":
        return out("counts/filtered_counts.tsv")
    return out("normalization/logcpm.tsv")


if BATCH_OUTPUT:

    rule batch_correction:
        input:
            values=batch_input,
            samples=config["samples"],
        output:
            corrected=BATCH_OUTPUT,
            params=report(
                out("batch/combat_params.tsv"),
                caption="../report/combat_params.rst",
                category="Batch correction",
            ),
        params:
            batch_correction=config["batch_correction"],
        log:
            log("batch_correction"),
        threads: 2
        resources:
            mem_mb=mem_mb(5),
            runtime=runtime_min(0.5),
        conda:
            "../envs/batch.yaml"
        script:
            "../scripts/batch_correction.py"
