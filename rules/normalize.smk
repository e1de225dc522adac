rule size_factors:
    input:
        counts=out("filtered_counts"),
        samples=setting("samples"),
        settings=settings_files("normalization"),
    output:
        report(
            out("size_factors"),
            caption="../report/size_factors.rst",
            category="Normalization",
            labels={"cohort": "{outdir}", "table": "size factors"},
        ),
    log:
        log("size_factors"),
    benchmark:
        benchmark_file("size_factors")
    conda:
        "../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=job_mem_mb("size_factors"),
        runtime=job_runtime("size_factors"),
    params:
        normalization=setting("normalization"),
    script:
        "../scripts/size_factors.py"


rule normalized_values:
    input:
        counts=out("filtered_counts"),
        size_factors=out("size_factors"),
        settings=settings_files("normalization"),
    output:
        logcpm=made("logcpm"),
        cpm=made("cpm"),
        normalized_counts=made("normalized_counts"),
    log:
        log("normalized_values"),
    benchmark:
        benchmark_file("normalized_values")
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("normalized_values"),
        runtime=job_runtime("normalized_values"),
    params:
        prior_count=setting("normalization", "prior_count"),
    script:
        "../scripts/normalized_values.py"


rule write_h5ad:
    input:
        unpack(h5ad_inputs),
        settings=settings_files("io"),
    output:
        out("h5ad"),
    log:
        log("write_h5ad"),
    benchmark:
        benchmark_file("write_h5ad")
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("write_h5ad"),
        runtime=job_runtime("write_h5ad"),
    script:
        "../scripts/write_h5ad.py"


# One rule for every transform of the registry (normalizers with output "matrix").
rule transform:
    input:
        counts=out("filtered_counts"),
        size_factors=out("size_factors"),
        samples=setting("samples"),
        settings=settings_files("normalization", "transforms", "batch_correction"),
    output:
        handoff(f"{{outdir}}/{matrix_file('normalization/{transform}')}"),
    log:
        log("transform_{transform}"),
    benchmark:
        benchmark_file("transform_{transform}")
    wildcard_constraints:
        transform=TRANSFORM_NAMES,
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("transform"),
        runtime=job_runtime("transform"),
    params:
        normalization=setting("normalization"),
        transforms=setting("transforms"),
        batch_correction=setting("batch_correction"),
        design=transform_design_columns,
    script:
        "../scripts/transform.py"
