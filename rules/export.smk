# Deliverables: each matrix a rule hands on (an Arrow IPC file under .cohortnorm/handoff)
# is written in io.matrix_format by its own job, beside the rest of the graph, so no rule
# waits for text formatting and no rule parses text written by another.


rule export_matrix:
    input:
        unpack(export_inputs),
    output:
        f"{{outdir}}/{{stem}}.{MATRIX_FORMAT}",
    log:
        "{outdir}/logs/export/{stem}.log",
    benchmark:
        "{outdir}/benchmarks/export/{stem}.tsv"
    wildcard_constraints:
        stem="|".join(re.escape(stem) for stem in matrix_stems()),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("export_matrix"),
        runtime=job_runtime("export_matrix"),
    script:
        "../scripts/export_matrix.py"
