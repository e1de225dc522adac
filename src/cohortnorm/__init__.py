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
qc
    QC metrics.
validation
    Checks on count matrices and sample sheets that raise :class:`InputError`.
io
    Readers and writers for count files (the only module that touches paths).
"""

from cohortnorm.errors import InputError

__all__ = ["InputError"]
__version__ = "0.1.0"
