"""Every method the workflow offers, in one place: formats, normalizers, batch correctors, figures.

This module is the one list of each extension point. The config schema's enums, the
rules (which outputs exist, which rule makes them), the scripts (which function to
call) and the tests all read it, so adding a method is one entry here plus its
function, its test and its fixture (``docs/extending.md`` walks through each case).

Functions are named as ``"module:function"`` and imported only when a job calls them:
Snakemake reads this module while it parses the workflow, and must not pay for
matplotlib or the import code there.

Extension points
----------------
:data:`FORMATS`
    ``counts.format``: the reader of each input format, whether it reads one file or
    one per sample, what kind of counts it gives, and whether it supplies gene lengths.
:data:`NORMALIZERS`
    ``normalization.method`` (edgeR factors) and ``normalization.size_factor_type``
    (DESeq2 size factors): per-sample factors; ``normalization.transforms`` and the
    ``transforms`` section (VST, rlog): matrices.
:data:`BATCH_CORRECTORS`
    ``batch_correction.method``: the function, what it reads (logCPM or counts) and
    the files it writes.
:data:`STAGE_FIGURES`
    The figures of each QC stage: drawing function, report label and caption.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


def load(reference: str) -> Callable[..., Any]:
    """The function named by ``"package.module:function"``, imported now."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Format:
    """One ``counts.format``.

    Attributes
    ----------
    reader
        ``"module:function"`` taking the path (``layout == "one_file"``) or a mapping
        sample → path (``"per_sample"``) first, then the keyword ``options``.
    layout
        ``"one_file"``: one table holds every sample; ``"per_sample"``: one file per
        sample, from a ``{sample}`` pattern.
    kind
        ``"matrix"``: a plain genes × samples table; ``"counter"``: a read counter's
        output (integer counts); ``"quantifier"``: transcript estimates summarised to
        genes (tximport), whose counts are rounded, whose TPM is the quantifier's own
        and which accept ``tx2gene`` and ``counts_from_abundance``.
    supplies_lengths
        Whether the files carry gene lengths TPM can use without a ``lengths`` file.
    options
        Reader keyword → the :func:`cohortnorm.io.importers.import_counts` option
        (config key under ``counts``) it receives.
    """

    reader: str
    layout: Literal["one_file", "per_sample"]
    kind: Literal["matrix", "counter", "quantifier"]
    supplies_lengths: bool
    options: dict[str, str] = field(default_factory=dict)


_QUANTIFIER_OPTIONS = {
    "tx2gene": "tx2gene",
    "counts_from_abundance": "counts_from_abundance",
    "tx_out": "tx_out",
    "ignore_missing_transcripts": "ignore_missing_transcripts",
}

FORMATS: dict[str, Format] = {
    "matrix": Format("cohortnorm.io.importers:import_matrix", "one_file", "matrix", False),
    "featurecounts": Format(
        "cohortnorm.io.importers:import_featurecounts",
        "one_file",
        "counter",
        True,
        {"samples": "samples"},
    ),
    "htseq": Format("cohortnorm.io.importers:import_htseq", "per_sample", "counter", False),
    "star": Format(
        "cohortnorm.io.importers:import_star",
        "per_sample",
        "counter",
        False,
        {"star_strand": "star_strand"},
    ),
    "salmon": Format(
        "cohortnorm.io.importers:import_salmon",
        "per_sample",
        "quantifier",
        True,
        _QUANTIFIER_OPTIONS,
    ),
    "kallisto": Format(
        "cohortnorm.io.importers:import_kallisto",
        "per_sample",
        "quantifier",
        True,
        _QUANTIFIER_OPTIONS,
    ),
    "rsem": Format(
        "cohortnorm.io.importers:import_rsem", "per_sample", "quantifier", True, _QUANTIFIER_OPTIONS
    ),
    "h5ad": Format(
        "cohortnorm.io.importers:import_h5ad", "one_file", "matrix", False, {"layer": "h5ad_layer"}
    ),
}


def formats_of_kind(kind: str) -> list[str]:
    """The format names whose ``kind`` is ``kind`` (e.g. every quantifier)."""
    return [name for name, entry in FORMATS.items() if entry.kind == kind]


# --------------------------------------------------------------------------- normalizers


@dataclass(frozen=True)
class Normalizer:
    """One normalization method.

    Attributes
    ----------
    function
        ``"module:function"``; called as ``function(counts, <selector>=name,
        **parameters)`` on the genes × samples float counts.
    selects
        The ``normalization`` config key whose value names this entry: ``method``
        (edgeR ``calcNormFactors``, column ``norm_factor`` of size_factors.tsv),
        ``size_factor_type`` (DESeq2, column ``size_factor``), ``transforms`` (a
        transform without options, listed in ``normalization.transforms``) or
        ``transform_section`` (a transform with options, switched on by
        ``transforms.<name>.enabled``). Both kinds of transform write
        ``normalization/<name>``.
    argument
        The function's keyword that receives the entry's name (``""``: none).
    parameters
        Function keyword → config key, passed on every call: a key of
        ``normalization`` (``a.b`` for the key ``b`` of the section ``a``, e.g.
        ``scran.sizes``), or for a ``transform_section`` entry a key of
        ``transforms.<name>``.
    output
        ``"factor"``: one number per sample (size_factors.tsv); ``"matrix"``: a
        transformed genes × samples matrix (written as ``normalization/<name>``).
    r_function
        The R function reproduced (cited in docs/methods.md).
    data
        Keywords of data the workflow passes besides the counts: ``lib_size`` (the
        filtered counts' column sums, edgeR's ``lib.size``) and, for transforms,
        ``size_factors`` (DESeq2's, column ``size_factor`` of size_factors.tsv),
        ``design`` (the samples × coefficients model matrix of the transforms' design,
        ``~ batch_correction.batch + batch_correction.covariates``, see
        docs/methods.md; ``None`` when the entry's ``blind`` setting is true),
        ``clusters`` (the sample-sheet column ``normalization.<name>.clusters`` names, or
        ``None``) and ``sample_names`` (the counts' column names, for messages). A
        function may return the factors or an object with ``size_factors``, ``notes``
        and ``warnings`` (logged by the workflow).
    """

    function: str
    selects: Literal["method", "size_factor_type", "transforms", "transform_section"]
    argument: str
    parameters: dict[str, str]
    output: Literal["factor", "matrix"]
    r_function: str
    data: tuple[str, ...] = ()


_EDGER_PARAMETERS = {
    "logratio_trim": "logratio_trim",
    "sum_trim": "sum_trim",
    "do_weighting": "do_weighting",
    "a_cutoff": "a_cutoff",
    "p": "p",
}


def _edger(method: str) -> Normalizer:
    return Normalizer(
        "cohortnorm.edger:calc_norm_factors",
        "method",
        "method",
        _EDGER_PARAMETERS,
        "factor",
        f'edgeR::calcNormFactors(method = "{method}")',
        data=("lib_size",),
    )


def _deseq2(type_: str) -> Normalizer:
    return Normalizer(
        "cohortnorm.deseq2:size_factors",
        "size_factor_type",
        "type",
        {},
        "factor",
        f'DESeq2::estimateSizeFactors(type = "{type_}")',
    )


NORMALIZERS: dict[str, Normalizer] = {
    "TMM": _edger("TMM"),
    "TMMwsp": _edger("TMMwsp"),
    "RLE": _edger("RLE"),
    "upperquartile": _edger("upperquartile"),
    "none": _edger("none"),
    "ratio": _deseq2("ratio"),
    "poscounts": _deseq2("poscounts"),
    # scran's deconvolution factors fill the size_factor column (what normalized counts
    # divide by), like DESeq2's; clusters come from a sample-sheet column.
    "scran": Normalizer(
        "cohortnorm.scran:pooled_size_factors",
        "size_factor_type",
        "",
        {"sizes": "scran.sizes"},
        "factor",
        "scran::calculateSumFactors",
        data=("clusters", "sample_names"),
    ),
    "norm_transform": Normalizer(
        "cohortnorm.deseq2:norm_transform",
        "transforms",
        "",
        {},
        "matrix",
        "DESeq2::normTransform(dds, f = log2, pc = 1)",
        data=("size_factors",),
    ),
    "vst": Normalizer(
        "cohortnorm.transforms:deseq2_vst",
        "transform_section",
        "",
        {
            "blind": "blind",
            "fit_type": "fit_type",
            "nsub": "nsub",
            "too_few_genes": "too_few_genes",
        },
        "matrix",
        "DESeq2::vst (nsub genes) or varianceStabilizingTransformation (nsub: null)",
        data=("size_factors", "design"),
    ),
    "rlog": Normalizer(
        "cohortnorm.transforms:deseq2_rlog",
        "transform_section",
        "",
        {"blind": "blind"},
        "matrix",
        'DESeq2::rlog(fitType = "parametric")',
        data=("size_factors", "design"),
    ),
}


def normalizers(selects: str) -> list[str]:
    """The names a ``normalization.<selects>`` config key accepts, in registry order."""
    return [name for name, entry in NORMALIZERS.items() if entry.selects == selects]


# --------------------------------------------------------------------------- batch correction

#: The output each input kind of a batch corrector reads (a name in the workflow's table
#: of outputs, ``OUTPUTS`` in rules/paths.smk).
BATCH_INPUTS: dict[str, str] = {
    "logcpm": "logcpm",
    "counts": "filtered_counts",
}


@dataclass(frozen=True)
class BatchCorrector:
    """One ``batch_correction.method``.

    Attributes
    ----------
    function
        ``"module:function"`` taking a :class:`cohortnorm.batch.BatchInput` (matrix,
        sample sheet, settings, threads) and returning a
        :class:`cohortnorm.batch.BatchCorrection`.
    input
        ``"logcpm"`` (normalization/logcpm) or ``"counts"`` (counts/filtered_counts).
    output
        Stem of the corrected matrix (``.tsv`` or ``.parquet`` is added).
    params
        Stem of its table of per-batch estimates (``.tsv`` is added). ComBat and
        ComBat-seq keep the documented ``batch/combat_params``, so the two cannot run
        in one cohort; any other method writes ``batch/<method>_params``.
    label
        The method's name in messages.
    caption
        The report caption of the parameter table, relative to the workflow's folder.
    r_function
        The R function reproduced.
    """

    function: str
    input: Literal["logcpm", "counts"]
    output: str
    params: str
    label: str
    caption: str
    r_function: str


BATCH_CORRECTORS: dict[str, BatchCorrector] = {
    "combat": BatchCorrector(
        "cohortnorm.batch:correct_combat",
        "logcpm",
        "batch/combat_logcpm",
        "batch/combat_params",
        "ComBat",
        "report/combat_params.rst",
        "sva::ComBat",
    ),
    "combat_seq": BatchCorrector(
        "cohortnorm.batch:correct_combat_seq",
        "counts",
        "batch/combat_seq_counts",
        "batch/combat_params",
        "ComBat-seq",
        "report/combat_params.rst",
        "sva::ComBat_seq",
    ),
    "remove_batch_effect": BatchCorrector(
        "cohortnorm.batch:correct_remove_batch_effect",
        "logcpm",
        "batch/removebatch_logcpm",
        "batch/remove_batch_effect_params",
        "removeBatchEffect",
        "report/remove_batch_effect_params.rst",
        "limma::removeBatchEffect",
    ),
    # Its own parameter table (one row per batch: dispersion, reference), so that it can
    # run beside ComBat or ComBat-seq.
    "combat_ref": BatchCorrector(
        "cohortnorm.batch:correct_combat_ref",
        "counts",
        "batch/combat_ref_counts",
        "batch/combat_ref_params",
        "ComBat-ref",
        "report/combat_ref_params.rst",
        "ComBat_ref (Zhang et al. 2024), written from the paper",
    ),
}


# --------------------------------------------------------------------------- QC figures


@dataclass(frozen=True)
class StageFigure:
    """One figure drawn for every QC stage (``qc/<stage>/<name>.png``).

    Attributes
    ----------
    draw
        ``"module:function"`` called as ``draw(result, labels)`` with the stage's
        :class:`cohortnorm.qc.StageQC` and :class:`cohortnorm.plots.FigureLabels`;
        returns a matplotlib Figure.
    label
        The figure's name in the Snakemake report.
    caption
        Its caption, relative to the workflow's folder.
    """

    draw: str
    label: str
    caption: str


def _figure(name: str, label: str) -> StageFigure:
    return StageFigure(f"cohortnorm.plots:stage_{name}", label, f"report/qc_{name}.rst")


#: In the order the report lists them.
STAGE_FIGURES: dict[str, StageFigure] = {
    "boxplot": _figure("boxplot", "per-sample distribution"),
    "density": _figure("density", "density"),
    "pca": _figure("pca", "PCA"),
    "rle": _figure("rle", "RLE"),
    "correlation": _figure("correlation", "correlation heatmap"),
    "ma": _figure("ma", "MA plots"),
}
