"""A transformed matrix (a registered normalizer with output "matrix") → normalization/<name>.

Transforms listed in normalization.transforms take their options from `normalization`;
VST and rlog (the `transforms` section) take theirs from transforms.<name>, and with
`blind: false` the design ~ batch_correction.batch + batch_correction.covariates, built
from the sample sheet in the counts' column order.
"""

import numpy as np
import pandas as pd

from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, read_table, write_matrix
from cohortnorm.model_matrix import design_matrix
from cohortnorm.registry import NORMALIZERS, load
from cohortnorm.runner import run


def transform_design(smk, columns):
    """The samples × coefficients model matrix of `columns`, in the counts' sample order."""
    batch = smk.params.batch_correction["batch"]
    identifiers = ["sample"] + ([batch] if batch else [])
    sheet = read_table(smk.input.samples, string_columns=identifiers).set_index("sample")
    sheet = sheet.loc[columns].reset_index()
    for name in smk.params.design:
        values = sheet[name]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            # Levels in order of first appearance in the sheet (the first is the
            # reference level), as factor(x, levels = unique(x)): DESeq2's fits stop at
            # their tolerance, so the level order moves the last ~1e-5 of the values.
            sheet[name] = pd.Categorical(values, categories=list(dict.fromkeys(values)))
    return design_matrix(sheet, smk.params.design)


def main(smk, logger):
    name = smk.wildcards.transform
    entry = NORMALIZERS[name]
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    factors = read_table(smk.input.size_factors, string_columns=["sample"]).set_index("sample")
    factors = factors.loc[counts.columns]
    data = {
        "size_factors": factors["size_factor"].to_numpy(),
        "lib_size": factors["lib_size"].to_numpy(),
    }
    if entry.selects == "transform_section":
        settings = smk.params.transforms[name]
        where = f"transforms.{name}"
        if smk.params.normalization["size_factor_type"] == "ratio":
            # DESeq2's estimateSizeFactors, recomputed to the last bit (the dispersion
            # line search is sensitive to it); the same factors as size_factors.tsv.
            data["size_factors"] = None
        data["design"] = None
        if not settings["blind"]:
            data["design"] = transform_design(smk, list(counts.columns))
            logger.info("%s: blind: false, design ~ %s", name, " + ".join(smk.params.design))
    else:
        settings = smk.params.normalization
        where = f"normalization.transforms: {name}"
    options = {keyword: settings[key] for keyword, key in entry.parameters.items()}
    options |= {keyword: data[keyword] for keyword in entry.data}
    try:
        values = load(entry.function)(counts.to_numpy(), **options)
    except (ValueError, InputError) as error:
        raise InputError(f"{smk.input.counts}: {error} ({where}).") from error
    write_matrix(values, counts.index, list(counts.columns), smk.output[0], finite=True)
    logger.info("wrote %s (%s): %d genes × %d samples", name, entry.r_function, *values.shape)


run(main, snakemake)
