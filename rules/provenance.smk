rule provenance:
    input:
        unpack(lambda wildcards: {**count_inputs(), **optional_inputs()}),
        samples=config["samples"],
        outputs=[f for f in final_outputs() if not f.endswith("provenance.json")],
    output:
        out("provenance.json"),
    params:
        config=config,
    log:
        log("provenance"),
    threads: 1
    resources:
        mem_mb=500,
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/provenance.py"
