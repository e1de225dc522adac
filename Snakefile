"""cohortnorm: RNA-seq count import, filtering, normalization, batch correction and QC.

Run `snakemake --cores 2 --configfile my.yaml`; see README.md. There is no default config:
your config alone decides a run (`make demo` runs the bundled one, config/config.yaml).
"""

from snakemake.utils import min_version

min_version("8.0")


include: "rules/config.smk"
include: "rules/paths.smk"
include: "rules/resources.smk"
include: "rules/import.smk"
include: "rules/filter.smk"
include: "rules/normalize.smk"
include: "rules/tpm.smk"
include: "rules/batch.smk"
include: "rules/qc.smk"
include: "rules/provenance.smk"
include: "rules/export.smk"
include: "rules/sharded_paths.smk"
include: "rules/sharded.smk"


report: "report/workflow.rst"


# One run at a time per output directory, whatever directory snakemake runs in
# (rules/config.smk: acquire_locks).
onstart:
    acquire_locks()


onsuccess:
    release_locks()


onerror:
    release_locks()


rule all:
    default_target: True
    input:
        final_outputs(),
