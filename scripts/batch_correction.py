"""Batch correction with the method batch_correction.method names (cohortnorm.registry).

Reads the method's input matrix (logCPM or filtered counts) and the sample sheet, calls
the registered function (cohortnorm.batch), writes the corrected matrix and the table of
per-batch estimates.
"""

import numpy as np
import pandas as pd

from cohortnorm.batch import BatchInput, combat_seq_model
from cohortnorm.design import check_design, combat_ref_group
from cohortnorm.io.tables import read_matrix, read_table, write_matrix, write_table
from cohortnorm.registry import BATCH_CORRECTORS, load
from cohortnorm.runner import run


def main(smk, logger):
    method = smk.params.method
    # This job runs one method, also when batch_correction.method lists several.
    settings = {**smk.params.batch_correction, "method": method}
    values = read_matrix(smk.input.values, dtype=np.float64)
    # Identifiers stay text; covariates keep their inferred type, so that a numeric
    # column (age, RIN) enters the design as a number and not as a factor.
    group_column = {
        "combat_seq": lambda: combat_seq_model(settings)[0],
        "combat_ref": lambda: combat_ref_group(settings),
    }.get(method, lambda: None)()
    identifiers = [name for name in ("sample", settings["batch"], group_column) if name]
    sheet = read_table(smk.input.samples, string_columns=identifiers)
    sheet = sheet.set_index("sample").loc[values.columns]
    # The design checks the workflow made before the first job (cohortnorm.design), again
    # on the samples of this matrix, with the sheet read as text as it was then.
    text = pd.read_csv(
        smk.input.samples, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    text.columns = [column.strip() for column in text.columns]
    text = text.set_index("sample", drop=False).loc[values.columns].reset_index(drop=True)
    for note in check_design(text, {"batch_correction": settings}, source=smk.input.samples):
        logger.info("%s", note)
    correct = load(BATCH_CORRECTORS[method].function)
    result = correct(BatchInput(values, sheet, settings, smk.threads, smk.input.samples))
    for note in result.notes:
        logger.info("%s", note)
    for warning in result.warnings:
        logger.warning("%s", warning)
    write_matrix(
        result.adjusted, values.index, list(values.columns), smk.output.corrected, finite=True
    )
    write_table(result.params, smk.output.params, finite=True)


run(main, snakemake)
