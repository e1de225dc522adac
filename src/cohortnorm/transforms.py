"""DESeq2's VST and rlog as the workflow runs them: one call from counts to the matrix.

Each function here is one ``transform_section`` entry of
:data:`cohortnorm.registry.NORMALIZERS` (``transforms.vst``, ``transforms.rlog`` in the
config). They take the filtered genes × samples counts, DESeq2's size factors (``None``:
DESeq2's ``estimateSizeFactors`` ratio factors, computed here to the last bit) and the
design matrix used when ``blind`` is false, and return the transformed matrix.

The numerics are in :mod:`cohortnorm.vst`, :mod:`cohortnorm.deseq2_dispersion` and
:mod:`cohortnorm.rlog`; this module only chooses between them as the config says.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cohortnorm.deseq2_dispersion import estimate_dispersions_fit, estimate_dispersions_gene_est
from cohortnorm.errors import InputError
from cohortnorm.rlog import rlog
from cohortnorm.vst import _prepare, variance_stabilizing_transformation, vst

FloatArray = NDArray[np.float64]


class VstFallbackWarning(UserWarning):
    """VST ran as ``varianceStabilizingTransformation``: too few genes for ``nsub``."""


def _design(blind: bool, design: ArrayLike | None) -> ArrayLike | None:
    if blind:
        return None
    if design is None:
        raise InputError(
            "blind: false needs a design: set batch_correction.covariates (the columns to "
            "keep, e.g. [condition]) and batch_correction.batch, or set blind: true"
        )
    return design


def deseq2_vst(
    counts: ArrayLike,
    *,
    size_factors: ArrayLike | None,
    design: ArrayLike | None,
    blind: bool = True,
    fit_type: str = "parametric",
    nsub: int | None = 1000,
    too_few_genes: str = "full",
) -> FloatArray:
    """``DESeq2::vst`` (``nsub`` genes) or ``varianceStabilizingTransformation`` (``nsub=None``).

    DESeq2's ``vst`` stops when fewer than ``nsub`` genes have a mean normalised count
    above 5, and its message advises ``varianceStabilizingTransformation``. Low-input
    cohorts (a few thousand reads per sample) meet this routinely, so by default
    (``too_few_genes="full"``) that advice is followed: the full transform runs, and a
    warning says so and why. ``too_few_genes="stop"`` stops as DESeq2 does.

    Parameters
    ----------
    counts
        Genes × samples filtered counts (whole numbers).
    size_factors
        DESeq2 size factors, or ``None`` for ``estimateSizeFactors``' ratio factors.
    design
        Samples × coefficients model matrix of the design; used when ``blind`` is false.
    blind
        ``True``: dispersions with design ``~1`` (DESeq2's default).
    fit_type
        ``"parametric"`` or ``"mean"`` (``"local"`` is refused by the core).
    nsub
        Genes the trend is fitted on (``vst``'s default 1000); ``None`` fits it on every
        gene, as ``varianceStabilizingTransformation`` does.
    too_few_genes
        ``"full"``: with too few genes for ``nsub``, run
        ``varianceStabilizingTransformation`` and warn (:class:`VstFallbackWarning`);
        ``"stop"``: raise, as ``DESeq2::vst`` does.

    Returns
    -------
    numpy.ndarray
        Genes × samples VST values (log2 scale).

    Raises
    ------
    InputError
        As :func:`cohortnorm.vst.vst`; the message for too few genes names the config
        key that switches to the full transform.
    """
    chosen = _design(blind, design)
    try:
        if nsub is None:
            return np.asarray(
                variance_stabilizing_transformation(
                    counts, size_factors, chosen, blind=blind, fit_type=fit_type
                )
            )
        return np.asarray(vst(counts, size_factors, chosen, blind, nsub, fit_type))
    except InputError as error:
        if "set fit_type: mean" in str(error):
            raise InputError(
                str(error).replace("set fit_type: mean", "set transforms.vst.fit_type: mean")
            ) from None
        if "nsub" not in str(error):
            raise
        # The core's advice names DESeq2's functions; say which config key does it.
        reason = str(error).split(". Use varianceStabilizingTransformation")[0]
        if too_few_genes == "full":
            warnings.warn(
                VstFallbackWarning(
                    f"{reason}: ran varianceStabilizingTransformation instead (the trend "
                    "fitted on every gene), as DESeq2 advises. Its values differ from "
                    "vst()'s by the trend fit only. Set transforms.vst.too_few_genes: stop "
                    "to stop here instead, as DESeq2's vst() does."
                ),
                stacklevel=2,
            )
            return np.asarray(
                variance_stabilizing_transformation(
                    counts, size_factors, chosen, blind=blind, fit_type=fit_type
                )
            )
        raise InputError(
            f"{reason}. Set transforms.vst.nsub: null to run the full "
            "varianceStabilizingTransformation (the trend fitted on every gene), or a "
            "smaller transforms.vst.nsub"
        ) from None


def deseq2_rlog(
    counts: ArrayLike,
    *,
    size_factors: ArrayLike | None,
    design: ArrayLike | None,
    blind: bool = True,
) -> FloatArray:
    """``DESeq2::rlog(dds, blind, fitType = "parametric")``.

    The dispersions are DESeq2's gene-wise estimates (design ``~1`` when ``blind``, else
    ``design``), their parametric trend, and the trend at each gene's ``baseMean``
    (``dispFit``), which is what ``rlog`` uses.

    Parameters
    ----------
    counts, size_factors, design, blind
        As for :func:`deseq2_vst`.

    Returns
    -------
    numpy.ndarray
        Genes × samples rlog values (log2 scale).

    Raises
    ------
    InputError
        Bad counts, a design without residual degrees of freedom, a failed parametric
        fit (DESeq2 would switch to ``local``, refused here), or an rlog fit DESeq2 would
        hand to its ``optim`` fallback.
    """
    y, sf = _prepare(counts, size_factors)
    genes = estimate_dispersions_gene_est(y, sf, _design(blind, design))
    try:
        trend = estimate_dispersions_fit(genes, "parametric")
    except InputError as error:
        if "set fit_type: mean" not in str(error):
            raise
        # rlog is offered with DESeq2's default parametric trend only.
        reason = str(error).split("; set fit_type: mean")[0]
        raise InputError(
            f"{reason}. rlog here uses the parametric trend only: set transforms.rlog."
            "enabled: false and use the VST with transforms.vst.fit_type: mean"
        ) from None
    dispersions = np.full(y.shape[0], np.nan)
    expressed = ~genes.all_zero
    dispersions[expressed] = trend(genes.base_mean[expressed])
    return np.asarray(rlog(y, sf, dispersions).values)
