"""cohortnorm: RNA-seq count import, filtering, normalization, batch correction and QC.

Run `snakemake --cores 2 --configfile config/config.yaml`; see README.md.
"""


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/import.smk"
include: "rules/filter.smk"
include: "rules/normalize.smk"
include: "rules/tpm.smk"
include: "rules/batch.smk"
include: "rules/qc.smk"
include: "rules/provenance.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
