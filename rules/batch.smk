# One rule per batch corrector of the registry (cohortnorm.registry.BATCH_CORRECTORS),
# named batch_correction_<method>: its input, outputs and function come from the entry,
# and a cohort's jobs go to the rule of the method it configures.
for method in BATCH_CORRECTORS:

    rule:
        name:
            f"batch_correction_{method}"
        input:
            values=batch_input(method),
            samples=setting("samples"),
            settings=settings_files("batch_correction"),
        output:
            corrected=handoff(
                f"{{outdir}}/{matrix_file(BATCH_CORRECTORS[method].output)}"
            ),
            params=report(
                f"{{outdir}}/{batch_params(method)}",
                caption=f"../{BATCH_CORRECTORS[method].caption}",
                category="Batch correction",
                labels={"cohort": "{outdir}", "table": f"{method} parameters"},
            ),
        log:
            f"{{outdir}}/logs/batch_correction_{method}.log"
            if SEVERAL_BATCH_METHODS
            else log("batch_correction"),
        benchmark:
            benchmark_file(f"batch_correction_{method}")
        wildcard_constraints:
            outdir=cohorts_using(method),
        conda:
            "../envs/batch.yaml"
        threads: 2
        resources:
            mem_mb=job_mem_mb(f"batch_correction_{method}"),
            runtime=job_runtime(f"batch_correction_{method}"),
        params:
            batch_correction=setting("batch_correction"),
            method=method,
        script:
            "../scripts/batch_correction.py"
