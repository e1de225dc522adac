# One rule per method, so both can write the documented batch/combat_params.tsv.
for method, source in [
    ("combat", "normalization/logcpm"),
    ("combat_seq", "counts/filtered_counts"),
]:

    rule:
        name:
            f"batch_correction_{method}"
        input:
            values=out_matrix(source),
            samples=setting("samples"),
            settings=settings_files("batch_correction"),
        output:
            corrected=out(batch_output({"batch_correction": {"method": method}})),
            params=report(
                out("batch/combat_params.tsv"),
                caption="../report/combat_params.rst",
                category="Batch correction",
                labels={"cohort": "{outdir}", "table": f"{method} parameters"},
            ),
        log:
            log("batch_correction"),
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
        script:
            "../scripts/batch_correction.py"
