"""edgeR normalization factors and DESeq2 size factors → normalization/size_factors.tsv."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from cohortnorm import edger, expression
from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, write_table
from cohortnorm.registry import NORMALIZERS, load
from cohortnorm.runner import run


def main(smk, logger):
    settings = smk.params.normalization
    counts = read_matrix(smk.input.counts, dtype=np.float64)
    values = counts.to_numpy()
    # keep.lib.sizes=FALSE: library sizes are the filtered column sums, as in the reference.
    lib_size = values.sum(axis=0)
    try:
        edger.require_reads(
            lib_size,
            list(counts.columns),
            fix=(
                "every count of these samples is 0 in "
                f"{smk.input.counts} (after the expression filter). Remove them from the "
                "sample sheet, or relax the filter (filter.min_count, "
                "filter.min_total_count, or filter.method: none)."
            ),
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    # edgeR's factors and DESeq2's are independent: one thread each (numpy releases the
    # GIL), so that a large cohort uses both of the rule's threads.
    with ThreadPoolExecutor(max_workers=max(1, min(2, smk.threads))) as pool:
        edger_job = pool.submit(factors, settings["method"], values, settings, lib_size)
        deseq2_job = pool.submit(factors, settings["size_factor_type"], values, settings, lib_size)
    try:
        norm_factor = edger_job.result()
        size_factor = deseq2_job.result()
    except ValueError as error:
        raise InputError(
            f"{smk.input.counts}: {error} (normalization.method={settings['method']}, "
            f"normalization.size_factor_type={settings['size_factor_type']}). For sparse, "
            "low-input data set normalization.size_factor_type: poscounts and "
            "normalization.method: TMMwsp."
        ) from error
    table = pd.DataFrame(
        {
            "sample": counts.columns,
            "lib_size": lib_size,
            "norm_factor": norm_factor,
            "effective_lib_size": lib_size * norm_factor,
            "size_factor": size_factor,
        }
    )
    # What normalized_counts divides by, and whose factors those are, stated in the table.
    source = settings["normalized_counts_factors"]
    try:
        table["normalized_counts_factor"] = expression.normalized_counts_factors(
            size_factor, table["effective_lib_size"].to_numpy(), source
        )
    except ValueError as error:
        raise InputError(
            f"{smk.input.counts}: {error}, so normalized counts cannot use the "
            f"{settings['method']} factors. Remove the samples without reads, or set "
            "normalization.normalized_counts_factors: deseq2."
        ) from error
    if source == "deseq2":
        table["normalized_counts_factors"] = f"DESeq2 {settings['size_factor_type']}"
    else:  # method none: plain library sizes
        table["normalized_counts_factors"] = settings["method"].replace("none", "library sizes")
    logger.info(
        "normalized_counts divide by %s factors (normalization.normalized_counts_factors: %s)",
        table["normalized_counts_factors"].iloc[0],
        source,
    )
    logger.info(
        "%s norm factors in [%.4g, %.4g]; DESeq2 %s size factors in [%.4g, %.4g]",
        settings["method"],
        norm_factor.min(),
        norm_factor.max(),
        settings["size_factor_type"],
        size_factor.min(),
        size_factor.max(),
    )
    write_table(table, smk.output[0], finite=True)


def factors(name, values, settings, lib_size):
    """The per-sample factors of registered normalizer `name` (cohortnorm.registry)."""
    entry = NORMALIZERS[name]
    options = {keyword: settings[key] for keyword, key in entry.parameters.items()}
    data = {"lib_size": lib_size}
    options |= {keyword: data[keyword] for keyword in entry.data}
    return load(entry.function)(values, **{entry.argument: name}, **options)


run(main, snakemake)
