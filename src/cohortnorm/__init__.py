"""cohortnorm: RNA-seq normalization numerics reproducing edgeR, DESeq2 and sva.

Modules
-------
edger
    ``calcNormFactors`` (TMM, TMMwsp, RLE, upperquartile), ``filterByExpr``, ``cpm``.
deseq2
    DESeq2 median-of-ratios size factors (``ratio``, ``poscounts``).
expression
    TPM and FPKM from counts and gene lengths.
tximport
    Transcript-to-gene summarisation the way tximport does it.
combat, combat_seq
    sva ``ComBat`` and ``ComBat_seq``.
model_matrix
    R's factor order and ``model.matrix``, and sva's design checks, for every batch method.
batch
    The batch correctors as the workflow calls them (one signature, one parameter table).
edger_glm
    edgeR's NB GLM and dispersion estimation, as ComBat-seq uses them.
qc, plots
    QC metrics and figures.
design, validation
    Checks on sample sheets and count matrices that raise :class:`InputError`.
registry
    Every format, normalizer, batch corrector and QC figure the workflow offers.
io
    Readers and writers for count files (with ``plots.save_figure`` and ``runner``, the
    only modules that touch paths).
runner
    The glue every workflow script runs through (logging, clean errors, threads).
"""

from cohortnorm.errors import InputError

__all__ = ["InputError"]
__version__ = "0.1.0"
