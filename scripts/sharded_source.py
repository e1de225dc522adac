"""Sharded mode, first job: the counts as a chunked store (a TSV converted in one
streaming pass) or an .h5ad read in place, matched to the sample sheet → source.json."""

from cohortnorm.errors import InputError
from cohortnorm.io.chunked import H5adSource, open_store, tsv_to_store
from cohortnorm.io.shardfiles import write_source
from cohortnorm.runner import run
from cohortnorm.validation import reconcile_samples


def main(smk, logger):
    settings = smk.params.counts_config
    counts = smk.input.counts[0]
    if settings["format"] == "h5ad":
        path, layer = counts, settings["h5ad_layer"]
        with H5adSource(path, layer) as source:
            samples, shape = list(source.samples), source.shape
        logger.info("reading %s in place (%d genes × %d samples)", path, *shape)
    else:
        path, layer = smk.output.store, None
        # Whole counts, as the in-memory import requires (an int64 store refuses fractions).
        tsv_to_store(counts, path, dtype="int64")
        with open_store(path) as store:
            samples, shape = list(store.samples), store.shape
        logger.info("converted %s to %s (%d genes × %d samples)", counts, path, *shape)
    keep, _ = reconcile_samples(
        samples,
        list(smk.params.sample_names),
        counts_source=counts,
        sheet_source=smk.input.samples,
        subset=settings["subset_samples"],
    )
    if keep != samples:
        raise InputError(
            f"{counts}: in sharded mode the count columns must be the sample sheet's samples "
            f"in the sheet's order (the shards are column ranges of the file). The file has "
            f"{len(samples)} columns, the sheet {len(keep)} of them, in a different order or "
            "a subset. Reorder or subset the sample sheet to the file's columns, or set "
            "sharding.samples_per_shard: null."
        )
    write_source(smk.output.source, path, layer, samples)


run(main, snakemake)
