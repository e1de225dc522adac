"""Biomarker panel: qc.genes_of_interest at every QC stage → qc/genes_of_interest.png."""

import numpy as np
import pandas as pd

from cohortnorm import edger, plots, qc
from cohortnorm.io.tables import read_matrix, read_table
from cohortnorm.panels import draw_panel, read_annotation, resolve_genes
from cohortnorm.runner import run


def stage_logcpm(smk):
    """Each stage's log-CPM, as the QC stages compute it (qc_stage.py)."""
    prior = smk.params.prior_count
    counts = read_matrix(smk.input.raw)
    values = counts.to_numpy(dtype=np.float64)
    stages = {"raw": edger.cpm(values, values.sum(axis=0), log=True, prior_count=prior)}
    stages["normalized"] = read_matrix(smk.input.normalized).loc[:, counts.columns].to_numpy()
    frames = {
        s: pd.DataFrame(v, index=counts.index, columns=counts.columns) for s, v in stages.items()
    }
    sizes = None
    if "size_factors" in smk.input.keys():
        factors = read_table(smk.input.size_factors, string_columns=["sample"])
        sizes = factors.set_index("sample").loc[counts.columns, "effective_lib_size"].to_numpy()
    for key in smk.input.keys():
        if not key.startswith("stage_"):
            continue
        stage = key.removeprefix("stage_")
        matrix = read_matrix(smk.input[key]).loc[:, counts.columns]
        values = matrix.to_numpy(dtype=np.float64)
        if stage in smk.params.count_stages:
            # Corrected counts: log-CPM with the stored effective library sizes.
            values = edger.cpm(values, sizes, log=True, prior_count=prior)
        frames[stage] = pd.DataFrame(values, index=matrix.index, columns=counts.columns)
    return frames


def main(smk, logger):
    settings = smk.params.qc
    frames = stage_logcpm(smk)
    annotation = read_annotation(smk.input.annotation) if "annotation" in smk.input.keys() else None
    # Gene IDs exist only after the import: an unknown symbol stops here, with the names
    # close to it (cohortnorm.panels.resolve_genes). Names resolve against every imported
    # gene; one removed by the expression filter gets a panel saying so.
    imported = list(read_matrix(smk.input.raw_counts).index)
    resolved = resolve_genes(settings["genes_of_interest"], imported, annotation)
    for row in resolved.itertuples():
        logger.info(
            "gene of interest %s: %s (%s, by %s)",
            row.requested,
            row.gene_id,
            row.gene_name or "no name",
            row.matched_by,
        )
    samples = list(frames["raw"].columns)
    condition_name = smk.params.condition
    batch_name = smk.params.batch_correction["batch"]
    wanted = ["sample", *[c for c in (condition_name, batch_name) if c]]
    sheet = read_table(smk.input.samples, string_columns=wanted).set_index("sample")
    condition = qc.resolve_factor(sheet, condition_name, samples)
    batch = qc.resolve_factor(sheet, batch_name, samples)
    symbols = dict(zip(resolved["gene_id"], resolved["gene_name"], strict=True))
    figure = draw_panel(
        frames,
        list(resolved["gene_id"]),
        condition if condition is not None else ["all"] * len(samples),
        batch,
        {g: s for g, s in symbols.items() if s},
        condition_name=condition_name or "condition",
        batch_name=batch_name or "batch",
        title=f"{smk.params.cohort}: genes of interest per stage (log2 CPM; vst: VST scale)",
    )
    logger.info("panel stages: %s", ", ".join(frames))
    plots.save_figure(figure, smk.output[0])


run(main, snakemake)
