"""Simulate RNA-seq cohorts with known truth for the benchmark suite.

The model (all on genes × samples):

* baseline abundance ``a_g`` log-normal (many lowly expressed genes, so that filtering
  matters) and gene lengths log-normal around 2 kb;
* two conditions ``A``/``B`` balanced within each batch; a fraction of genes is
  differentially expressed with known log2 fold changes, mostly *up* in ``B`` so that
  DE shifts the composition of ``B`` samples;
* a "gene hog" block: a few genes that take a large share of the reads in a random
  subset of samples (the compositional trap TMM and RLE are designed for);
* per-gene batch effects over ``k`` batches: an additive shift on the log scale
  (``gamma_gb``) and a scale effect, i.e. a batch-specific inflation of the
  negative-binomial dispersion (what ComBat's ``delta`` and ComBat-seq's batch
  dispersions model);
* library sizes varying about 3× between samples;
* counts are negative binomial, drawn as gamma-Poisson, with dispersion
  ``phi_g = 0.1 + 1/mean_g`` (capped at 10) times log-normal scatter.

**The true size factor.** Sample ``j`` sequences ``N_j`` reads from relative
abundances ``a_g · DE_gj · hog_gj · batch_gj``. The expected count of a gene with no
DE and no hog effect is ``N_j / Z_j · a_g · batch_gj`` with
``Z_j = Σ_g a_g · DE_gj · hog_gj · batch_gj``. The factor linking that gene's
expected count to its abundance, ``s_j = N_j / Z_j``, is what a normalization method
should estimate: it is edgeR's *effective library size* (``lib_size · norm_factor``)
and DESeq2's *size factor*, both up to a constant. ``true_size_factors`` holds
``s_j`` scaled to geometric mean 1; rank correlations do not depend on the scale.

Run as a script to write a cohort to TSV with the project's writer::

    .venv/bin/python bench/simulate.py --genes 60000 --samples 1000 --out bench/out/sim
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Samples simulated per block; fixed so that the output does not depend on memory.
BLOCK_SAMPLES = 256


@dataclass
class Cohort:
    """A simulated cohort and its truth.

    Attributes
    ----------
    counts
        Integer counts, genes × samples (``int32``).
    gene_ids, sample_ids
        Row and column names.
    samples
        Sample sheet with columns ``sample``, ``condition`` (A/B) and ``batch`` (b1..bk).
    lengths
        Gene lengths in bases.
    lib_size
        Target sequencing depth ``N_j`` (the realised column sums differ by sampling).
    true_size_factors
        ``s_j = N_j / Z_j`` scaled to geometric mean 1 (see the module docstring).
    de
        Whether each gene is truly differentially expressed between A and B.
    log2_fold_change
        True log2 fold change B vs A (0 for non-DE genes).
    hog
        Whether each gene belongs to the gene-hog block.
    """

    counts: np.ndarray
    gene_ids: list[str]
    sample_ids: list[str]
    samples: pd.DataFrame
    lengths: np.ndarray
    lib_size: np.ndarray
    true_size_factors: np.ndarray
    de: np.ndarray
    log2_fold_change: np.ndarray
    hog: np.ndarray

    def truth_table(self) -> pd.DataFrame:
        """Per-gene truth: ``gene_id, length, de, log2_fold_change, hog``."""
        return pd.DataFrame(
            {
                "gene_id": self.gene_ids,
                "length": self.lengths,
                "de": self.de,
                "log2_fold_change": self.log2_fold_change,
                "hog": self.hog,
            }
        )

    def sample_truth(self) -> pd.DataFrame:
        """Sample sheet plus ``lib_size`` and ``true_size_factor``."""
        out = self.samples.copy()
        out["target_depth"] = self.lib_size
        out["true_size_factor"] = self.true_size_factors
        return out


def simulate_cohort(
    n_genes: int = 20_000,
    n_samples: int = 200,
    *,
    n_batches: int = 3,
    de_fraction: float = 0.1,
    de_up_fraction: float = 0.75,
    n_hog_genes: int = 20,
    hog_sample_fraction: float = 0.25,
    hog_share: float = 0.3,
    depth: float = 20e6,
    depth_range: float = 3.0,
    batch_shift_sd: float = 0.4,
    batch_dispersion_inflation: tuple[float, ...] = (1.0, 1.6, 2.5),
    seed: int = 1,
) -> Cohort:
    """Simulate a negative-binomial cohort with known size factors, DE and batches.

    Parameters
    ----------
    n_genes, n_samples
        Matrix shape (genes × samples).
    n_batches
        Number of batches ``k``; samples are assigned round-robin.
    de_fraction
        Fraction of genes that are DE between the conditions.
    de_up_fraction
        Fraction of DE genes that go up in B (asymmetry makes DE compositional).
    n_hog_genes, hog_sample_fraction, hog_share
        ``n_hog_genes`` genes take ``hog_share`` of the reads in ``hog_sample_fraction``.
    depth, depth_range
        Median sequencing depth and the max/min ratio of depths (log-uniform).
    batch_shift_sd
        SD of the per-gene, per-batch additive shift on the natural-log scale.
    batch_dispersion_inflation
        Per-batch NB dispersion multiplier (recycled for larger ``k``).
    seed
        Seed of the generators; the result is deterministic.

    Returns
    -------
    Cohort
    """
    seq = np.random.SeedSequence(seed)
    design_seed, *block_seeds = seq.spawn(1 + (n_samples + BLOCK_SAMPLES - 1) // BLOCK_SAMPLES)
    rng = np.random.default_rng(design_seed)

    abundance = rng.lognormal(mean=0.0, sigma=2.5, size=n_genes)
    lengths = np.round(rng.lognormal(mean=np.log(2000.0), sigma=0.6, size=n_genes)).clip(100)

    n_de = round(de_fraction * n_genes)
    de_idx = rng.choice(n_genes, size=n_de, replace=False)
    de = np.zeros(n_genes, dtype=bool)
    de[de_idx] = True
    magnitude = rng.uniform(0.7, 2.5, size=n_de)
    sign = np.where(rng.random(n_de) < de_up_fraction, 1.0, -1.0)
    log2_fc = np.zeros(n_genes)
    log2_fc[de_idx] = sign * magnitude

    # Hogs are drawn among well-expressed non-DE genes, as in real data (e.g. albumin).
    not_de = np.flatnonzero(~de & (abundance > np.quantile(abundance, 0.75)))
    hog_idx = rng.choice(not_de, size=min(n_hog_genes, not_de.size), replace=False)
    hog = np.zeros(n_genes, dtype=bool)
    hog[hog_idx] = True

    batch_index = np.arange(n_samples) % n_batches
    condition_b = np.zeros(n_samples, dtype=bool)
    for b in range(n_batches):
        members = np.flatnonzero(batch_index == b)
        condition_b[rng.permutation(members)[: members.size // 2]] = True
    hog_samples = rng.random(n_samples) < hog_sample_fraction
    lib_size = depth * np.exp(rng.uniform(-0.5, 0.5, n_samples) * np.log(depth_range))

    batch_shift = rng.normal(0.0, batch_shift_sd, size=(n_genes, n_batches))
    inflation = np.resize(np.asarray(batch_dispersion_inflation, dtype=float), n_batches)

    # Hog genes get a weight so that they hold `hog_share` of the baseline composition.
    hog_weight = hog_share / (1 - hog_share) * abundance[~hog].sum() / abundance[hog].sum()
    base_mean = depth * abundance / abundance.sum()
    base_mean[hog] *= hog_weight
    phi = np.minimum(0.1 + 1.0 / base_mean, 10.0) * rng.lognormal(0.0, 0.3, n_genes)
    de_mult = np.exp2(log2_fc)

    counts, true_sf = _draw_counts(
        abundance,
        batch_shift,
        batch_index,
        condition_b,
        de_mult,
        hog,
        hog_samples,
        hog_weight,
        lib_size,
        phi,
        inflation,
        block_seeds,
    )
    true_sf /= np.exp(np.mean(np.log(true_sf)))
    gene_ids = [f"G{i:0{len(str(n_genes))}d}" for i in range(1, n_genes + 1)]
    sample_ids = [f"S{j:0{len(str(n_samples))}d}" for j in range(1, n_samples + 1)]
    samples = pd.DataFrame(
        {
            "sample": sample_ids,
            "condition": np.where(condition_b, "B", "A"),
            "batch": [f"b{b + 1}" for b in batch_index],
        }
    )
    return Cohort(
        counts=counts,
        gene_ids=gene_ids,
        sample_ids=sample_ids,
        samples=samples,
        lengths=lengths,
        lib_size=lib_size,
        true_size_factors=true_sf,
        de=de,
        log2_fold_change=log2_fc,
        hog=hog,
    )


def _draw_counts(
    abundance: np.ndarray,
    batch_shift: np.ndarray,
    batch_index: np.ndarray,
    condition_b: np.ndarray,
    de_mult: np.ndarray,
    hog: np.ndarray,
    hog_samples: np.ndarray,
    hog_weight: float,
    lib_size: np.ndarray,
    phi: np.ndarray,
    inflation: np.ndarray,
    block_seeds: list[np.random.SeedSequence],
) -> tuple[np.ndarray, np.ndarray]:
    """The counts, drawn in blocks of samples (one generator each), and true size factors."""
    n_genes, n_samples = abundance.size, batch_index.size
    counts = np.empty((n_genes, n_samples), dtype=np.int32, order="F")
    true_sf = np.empty(n_samples)
    for block, block_seed in enumerate(block_seeds):
        cols = np.arange(block * BLOCK_SAMPLES, min((block + 1) * BLOCK_SAMPLES, n_samples))
        brng = np.random.default_rng(block_seed)
        rel = abundance[:, None] * np.exp(batch_shift[:, batch_index[cols]])
        rel[:, condition_b[cols]] *= de_mult[:, None]
        hog_cols = hog_samples[cols]
        rel[np.ix_(hog, hog_cols)] *= hog_weight
        z = rel.sum(axis=0)
        s = lib_size[cols] / z
        true_sf[cols] = s
        mu = rel * s
        disp = phi[:, None] * inflation[batch_index[cols]]
        # Gamma-Poisson mixture = NB(mean mu, dispersion disp).
        lam = brng.gamma(shape=1.0 / disp, scale=mu * disp)
        counts[:, cols] = brng.poisson(lam).clip(max=np.iinfo(np.int32).max)

    return counts, true_sf


def write_cohort(cohort: Cohort, outdir: str | Path) -> dict[str, Path]:
    """Write ``counts.tsv``, ``samples.tsv``, ``lengths.tsv`` and truth tables.

    Counts go through the project's writer (:func:`cohortnorm.io.tables.write_matrix`).
    """
    from cohortnorm.io.tables import write_matrix, write_table

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "counts": outdir / "counts.tsv",
        "samples": outdir / "samples.tsv",
        "lengths": outdir / "lengths.tsv",
        "gene_truth": outdir / "gene_truth.tsv",
        "sample_truth": outdir / "sample_truth.tsv",
    }
    write_matrix(cohort.counts, cohort.gene_ids, cohort.sample_ids, paths["counts"])
    write_table(cohort.samples, paths["samples"])
    write_table(
        pd.DataFrame({"gene_id": cohort.gene_ids, "length": cohort.lengths.astype(np.int64)}),
        paths["lengths"],
    )
    write_table(cohort.truth_table(), paths["gene_truth"])
    write_table(cohort.sample_truth(), paths["sample_truth"])
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: simulate one cohort and write it as TSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/out/sim"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cohort = simulate_cohort(args.genes, args.samples, n_batches=args.batches, seed=args.seed)
    simulated = time.perf_counter()
    write_cohort(cohort, args.out)
    print(
        f"simulated {args.genes} x {args.samples} in {simulated - start:.1f} s, "
        f"written to {args.out} in {time.perf_counter() - simulated:.1f} s"
    )


if __name__ == "__main__":
    main()
