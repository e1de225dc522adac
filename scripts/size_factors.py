"""edgeR normalization factors and DESeq2 or scran size factors → size_factors.tsv."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cohortnorm import edger, expression
from cohortnorm.errors import InputError
from cohortnorm.io.tables import read_matrix, read_table, write_table
from cohortnorm.registry import NORMALIZERS, load
from cohortnorm.runner import run
from cohortnorm.validation import sheet_column

#: scran notes that change what the factors are (plain library-size ratios) or that scuttle
#: itself gives as a warning (min.mean guessed for UMI data): logged as warnings.
_MEANING_CHANGES = ("no pool is formed", "assuming UMI data")


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
    data = {
        "lib_size": lib_size,
        "sample_names": list(counts.columns),
        "clusters": clusters(smk, settings, list(counts.columns)),
    }
    with ThreadPoolExecutor(max_workers=max(1, min(2, smk.threads))) as pool:
        edger_job = pool.submit(factors, settings["method"], values, settings, data)
        deseq2_job = pool.submit(factors, settings["size_factor_type"], values, settings, data)
    try:
        norm_factor = log_result(edger_job.result(), settings["method"], logger)
        size_factor = log_result(deseq2_job.result(), settings["size_factor_type"], logger)
    except ValueError as error:
        raise InputError(
            f"{smk.input.counts}: {error} (normalization.method={settings['method']}, "
            f"normalization.size_factor_type={settings['size_factor_type']}). For sparse, "
            "low-input data set normalization.size_factor_type: poscounts and "
            "normalization.method: TMMwsp."
        ) from error
    table = expression.size_factor_table(
        list(counts.columns), lib_size, norm_factor, size_factor, settings, smk.input.counts
    )
    logger.info(
        "normalized_counts divide by %s factors (normalization.normalized_counts_factors: %s)",
        table["normalized_counts_factors"].iloc[0],
        settings["normalized_counts_factors"],
    )
    logger.info(
        "%s norm factors in [%.4g, %.4g]; %s size factors in [%.4g, %.4g]",
        settings["method"],
        norm_factor.min(),
        norm_factor.max(),
        settings["size_factor_type"],
        size_factor.min(),
        size_factor.max(),
    )
    write_table(table, smk.output[0], finite=True)


def factors(name, values, settings, data):
    """The per-sample factors of registered normalizer `name` (cohortnorm.registry)."""
    entry = NORMALIZERS[name]
    options = {keyword: lookup(settings, key) for keyword, key in entry.parameters.items()}
    options |= {keyword: data[keyword] for keyword in entry.data}
    selector = {entry.argument: name} if entry.argument else {}
    return load(entry.function)(values, **selector, **options)


def lookup(settings, key):
    """normalization.<key>, where ``a.b`` is key b of the section a (e.g. scran.sizes)."""
    value = settings
    for part in key.split("."):
        value = value[part]
    return value


def clusters(smk, settings, samples):
    """scran's clusters: the sheet column normalization.scran.clusters names, or None."""
    column = settings["scran"]["clusters"]
    if settings["size_factor_type"] != "scran" or not column:
        return None
    sheet = read_table(smk.input.samples, string_columns=["sample", column]).set_index("sample")
    return sheet_column(
        sheet,
        column,
        samples,
        sheet_source=smk.input.samples,
        purpose="normalization.scran.clusters",
    ).to_numpy(dtype=object)


def log_result(result, name, logger):
    """The factors of a normalizer's result; its notes and warnings go to the log."""
    if not hasattr(result, "size_factors"):
        return result
    for note in getattr(result, "notes", []):
        level = logger.warning if any(m in note for m in _MEANING_CHANGES) else logger.info
        level("%s: %s", name, note)
    for warning in getattr(result, "warnings", []):
        logger.warning("%s: %s", name, warning)
    return np.asarray(result.size_factors, dtype=np.float64)


run(main, snakemake)
