"""QC figures drawn from the summaries of :mod:`cohortnorm.qc`.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state,
no display needed) under a fixed style, and saved by :func:`save_figure`, which
writes atomically and without timestamps or version strings, so that two runs give
identical bytes. Nothing here plots one marker per gene: boxes come from quantiles,
densities from histograms and MA plots from 2D histograms.

User text (sample names, group and batch labels, column names, the cohort name) is
drawn as typed: every figure is built under :data:`STYLE`, which turns off
matplotlib's mathtext (``$...$``) and TeX, so ``S$1$`` or ``x^2`` is shown literally
and cannot stop the run with a parse error. Files are saved with a tight bounding box,
so no legend or title is cut at the edge.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from cohortnorm.io.tables import atomic_output
from cohortnorm.qc import MAHistograms, PCAResult, StageQC

#: rcParams of every figure: fixed fonts, sizes and hash salt for reproducible files.
STYLE = {
    "svg.hashsalt": "cohortnorm",
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "path.simplify": True,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "image.cmap": "viridis",
    # Sample names and labels are user text: never parse them as math or TeX.
    "text.parse_math": False,
    "text.usetex": False,
}
#: Metadata that would otherwise embed a version string or a date.
METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
#: Sample names are written on the axes up to this many samples.
MAX_LABELLED_SAMPLES = 60
#: Above this many samples, boxes, densities and library sizes are drawn as bands per
#: group (per-sample quantiles along the samples; quantiles of the density curves).
BAND_SAMPLES = 300
#: Characters of a title line per inch of figure width (DejaVu Sans at 10 pt).
TITLE_CHARS_PER_INCH = 12

_P = ParamSpec("_P")
_R = TypeVar("_R")


def styled(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Build the figure under :data:`STYLE`: matplotlib reads rcParams when each text,
    axis and legend is created, so the whole body must run inside the context."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _wrap(text: str, width_inches: float) -> str:
    """``text`` broken into lines that fit ``width_inches`` (existing breaks kept)."""
    width = max(20, int(width_inches * TITLE_CHARS_PER_INCH))
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) or line
        for line in str(text).split("\n")
    )


def _plain_number(value: float, _position: object = None) -> str:
    return f"{value:g}"


def _suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(_wrap(text, fig.get_figwidth()))


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` deterministically and atomically (temporary file, then rename).

    Parameters
    ----------
    fig
        The figure.
    path
        Target file; the format follows its suffix (png, svg or pdf).
    """
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_output(path) as temporary, matplotlib.rc_context(STYLE):
        fig.savefig(
            temporary,
            format=fmt,
            metadata=METADATA.get(fmt),
            bbox_inches="tight",
            pad_inches=0.1,
        )


def _levels(labels: Sequence[object] | None) -> list[str]:
    return [] if labels is None else sorted({str(x) for x in labels})


def palette(labels: Sequence[object] | None) -> dict[str, tuple[float, ...]]:
    """A colour per level (sorted), from tab10 or tab20."""
    levels = _levels(labels)
    cmap = matplotlib.colormaps["tab10" if len(levels) <= 10 else "tab20"]
    return {level: cmap(i % cmap.N) for i, level in enumerate(levels)}


def _sample_colours(labels: Sequence[object] | None, n: int) -> list[tuple[float, ...]]:
    if labels is None:
        return [matplotlib.colors.to_rgba("tab:blue")] * n
    colours = palette(labels)
    return [colours[str(x)] for x in labels]


def _legend(ax, labels: Sequence[object] | None, title: str, **kwargs) -> None:
    if labels is None:
        return
    handles = [
        Line2D([], [], color=colour, lw=4, label=level) for level, colour in palette(labels).items()
    ]
    ax.legend(handles=handles, title=title, frameon=False, **kwargs)


def _sample_axis(ax, samples: Sequence[str]) -> None:
    n = len(samples)
    if n <= MAX_LABELLED_SAMPLES:
        ax.set_xticks(np.arange(1, n + 1), list(samples), rotation=90)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} samples")


def _width(n: int) -> float:
    return float(np.clip(2.5 + 0.22 * n, 6.0, 16.0))


def _bxp(ax, summary: pd.DataFrame, colours: list[tuple[float, ...]]) -> None:
    """Boxes, medians and whiskers from quantiles, as three collections (fast for
    thousands of samples; the same glyphs as :meth:`~matplotlib.axes.Axes.bxp`)."""
    n = len(summary)
    x = np.arange(1, n + 1, dtype=float)
    half = 0.5 if n > MAX_LABELLED_SAMPLES else 0.35
    q1, median, q3 = (summary[c].to_numpy(dtype=float) for c in ("q1", "median", "q3"))
    low, high = summary["whislo"].to_numpy(dtype=float), summary["whishi"].to_numpy(dtype=float)
    many = n > MAX_LABELLED_SAMPLES
    boxes = np.stack(
        [
            np.column_stack([x - half, q1]),
            np.column_stack([x + half, q1]),
            np.column_stack([x + half, q3]),
            np.column_stack([x - half, q3]),
        ],
        axis=1,
    )
    ax.add_collection(
        PolyCollection(
            list(boxes),
            facecolors=colours,
            edgecolors="face" if many else "black",
            linewidths=0.0 if many else 0.8,
        )
    )
    whiskers = [((xi, lo), (xi, a)) for xi, lo, a in zip(x, low, q1, strict=True)]
    whiskers += [((xi, b), (xi, hi)) for xi, b, hi in zip(x, q3, high, strict=True)]
    if not many:
        whiskers += [((xi - half / 2, v), (xi + half / 2, v)) for xi, v in zip(x, low, strict=True)]
        whiskers += [
            ((xi - half / 2, v), (xi + half / 2, v)) for xi, v in zip(x, high, strict=True)
        ]
    ax.add_collection(
        LineCollection(
            whiskers, colors="grey" if many else "black", linewidths=0.3 if many else 1.0
        )
    )
    medians = [((xi - half, m), (xi + half, m)) for xi, m in zip(x, median, strict=True)]
    ax.add_collection(
        LineCollection(medians, colors="black", linewidths=0.5 if many else 1.4, zorder=3)
    )
    ax.set_xlim(0.4, n + 0.6)
    span = float(np.nanmax(high) - np.nanmin(low)) if n else 1.0
    ax.set_ylim(float(np.nanmin(low)) - 0.05 * span, float(np.nanmax(high)) + 0.05 * span)


def _group_spans(
    groups: Sequence[object] | None, n: int
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Samples ordered by group level (sorted), keeping column order within a group, and
    each level's ``(level, start, stop)`` span in that order."""
    if groups is None:
        return np.arange(n), [("", 0, n)]
    labels = np.array([str(x) for x in groups], dtype=object)
    levels = _levels(groups)
    codes = np.searchsorted(np.array(levels, dtype=object), labels)
    order = np.argsort(codes, kind="stable")
    stops = np.cumsum(np.bincount(codes, minlength=len(levels)))
    starts = np.concatenate([[0], stops[:-1]])
    return order, [
        (level, int(a), int(b)) for level, a, b in zip(levels, starts, stops, strict=True) if b > a
    ]


def _group_axis(ax, spans: list[tuple[str, int, int]], n: int, group_name: str) -> None:
    """x axis of a banded plot: a tick per group (when few) and lines between groups."""
    for _, start, _ in spans[1:]:
        ax.axvline(start + 0.5, color="black", lw=0.5, zorder=4)
    ax.set_xlim(0.5, n + 0.5)
    if 1 < len(spans) <= 40:
        ax.set_xticks([(a + b) / 2 + 0.5 for _, a, b in spans], [s[0] for s in spans])
        ax.tick_params(axis="x", labelrotation=90 if len(spans) > 8 else 0)
    else:
        ax.set_xticks([])
    grouped = f", grouped by {group_name}" if len(spans) > 1 else ""
    ax.set_xlabel(f"{n} samples{grouped}, in sample-sheet order within each group")


def _banded_boxes(
    ax, summary: pd.DataFrame, groups: Sequence[object] | None, group_name: str
) -> None:
    """Per-sample quantiles as bands along the samples, one colour per group: whiskers
    (light), quartiles (dark) and the median (line). Reads with thousands of samples,
    where one box per sample would be a few pixels or less."""
    n = len(summary)
    order, spans = _group_spans(groups, n)
    colours = palette(groups) if groups is not None else {"": "tab:blue"}
    x = np.arange(1, n + 1, dtype=float)
    table = {c: summary[c].to_numpy(dtype=float)[order] for c in summary.columns}
    for level, start, stop in spans:
        part = slice(start, stop)
        colour = colours[level]
        ax.fill_between(
            x[part],
            table["whislo"][part],
            table["whishi"][part],
            color=colour,
            alpha=0.25,
            lw=0,
            step="mid",
            rasterized=True,
        )
        ax.fill_between(
            x[part],
            table["q1"][part],
            table["q3"][part],
            color=colour,
            alpha=0.85,
            lw=0,
            step="mid",
            rasterized=True,
        )
        ax.step(x[part], table["median"][part], where="mid", color="black", lw=0.4, rasterized=True)
    _group_axis(ax, spans, n, group_name)
    span = float(np.nanmax(table["whishi"]) - np.nanmin(table["whislo"])) if n else 1.0
    ax.set_ylim(
        float(np.nanmin(table["whislo"])) - 0.05 * span,
        float(np.nanmax(table["whishi"])) + 0.05 * span,
    )


@styled
def boxplot_figure(
    summary: pd.DataFrame,
    *,
    groups: Sequence[object] | None = None,
    group_name: str = "condition",
    title: str = "",
    ylabel: str = "log2 CPM",
) -> Figure:
    """Per-sample boxplots from quantiles (``q1, median, q3, whislo, whishi``).

    Boxes are coloured by ``groups``; outliers are not drawn. Above
    :data:`BAND_SAMPLES` samples the boxes become bands along the samples, ordered by
    group (whiskers light, quartiles dark, median as a line).
    """
    fig = _figure(_width(len(summary)), 4.0)
    ax = fig.add_subplot()
    if len(summary) > BAND_SAMPLES:
        _banded_boxes(ax, summary, groups, group_name)
    else:
        _bxp(ax, summary, _sample_colours(groups, len(summary)))
        _sample_axis(ax, [str(s) for s in summary.index])
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, 0.8 * fig.get_figwidth()))
    _legend(ax, groups, group_name, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@styled
def rle_figure(
    summary: pd.DataFrame,
    *,
    groups: Sequence[object] | None = None,
    group_name: str = "batch",
    title: str = "",
) -> Figure:
    """Relative log expression: per-sample boxes of (value - gene median), line at 0."""
    fig = boxplot_figure(
        summary, groups=groups, group_name=group_name, title=title, ylabel="RLE (log2)"
    )
    ax = fig.axes[0]
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--", zorder=0)
    return fig


@styled
def density_figure(
    edges: np.ndarray,
    density: np.ndarray,
    *,
    groups: Sequence[object] | None = None,
    group_name: str = "batch",
    title: str = "",
    xlabel: str = "log2 CPM",
) -> Figure:
    """Per-sample density curves from histograms (samples × bins).

    Up to :data:`BAND_SAMPLES` samples, one curve per sample. Above, one band per group:
    the median curve of the group's samples and the band between their 10 % and 90 %
    quantiles at each point (drawing cost no longer grows with the samples).
    """
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    centres = (edges[:-1] + edges[1:]) / 2
    n = len(density)
    if n > BAND_SAMPLES:
        order, spans = _group_spans(groups, n)
        colours = palette(groups) if groups is not None else {"": "tab:blue"}
        for level, start, stop in spans:
            members = density[order[start:stop]]
            low, median, high = np.quantile(members, [0.1, 0.5, 0.9], axis=0)
            colour = colours[level]
            ax.fill_between(centres, low, high, color=colour, alpha=0.25, lw=0)
            ax.plot(centres, median, color=colour, lw=1.2)
        unit = group_name if groups is not None else "cohort"
        ax.text(
            0.01,
            0.98,
            f"{n} samples: median and 10–90 % band per {unit}",
            transform=ax.transAxes,
            va="top",
            fontsize=7,
        )
    else:
        segments = np.stack([np.broadcast_to(centres, density.shape), density], axis=-1)
        alpha = 0.8 if n <= 50 else 0.3
        lines = LineCollection(
            list(segments),
            colors=_sample_colours(groups, n),
            linewidths=0.8,
            alpha=alpha,
        )
        ax.add_collection(lines)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, float(density.max()) * 1.05 if density.size and density.max() > 0 else 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(_wrap(title, 0.8 * fig.get_figwidth()))
    _legend(ax, groups, group_name, loc="upper right")
    return fig


@styled
def pca_figure(
    result: PCAResult,
    *,
    condition: Sequence[object] | None = None,
    batch: Sequence[object] | None = None,
    condition_name: str = "condition",
    batch_name: str = "batch",
    title: str = "",
) -> Figure:
    """PC1/PC2 and PC1/PC3 scatter: colour = condition, marker = batch.

    Axis labels give each PC's share of the variance of the genes used.
    """
    k = result.scores.shape[1]
    pairs = [(0, 1), (0, 2)][: max(0, k - 1)]
    fig = _figure(4.0 * max(len(pairs), 1) + 1.8, 4.2)
    n = result.scores.shape[0]
    colours = _sample_colours(condition, n)
    batch_levels = _levels(batch)
    markers = (
        ["o"] * n
        if batch is None
        else [MARKERS[batch_levels.index(str(b)) % len(MARKERS)] for b in batch]
    )
    axes = fig.subplots(1, max(len(pairs), 1), squeeze=False)[0]
    for ax, (i, j) in zip(axes, pairs, strict=False):
        for marker in sorted(set(markers)):
            chosen = [s for s in range(n) if markers[s] == marker]
            ax.scatter(
                result.scores[chosen, i],
                result.scores[chosen, j],
                c=[colours[s] for s in chosen],
                marker=marker,
                s=36 if n <= 200 else 12 if n <= BAND_SAMPLES * 10 else 3,
                edgecolors="black" if n <= BAND_SAMPLES else "none",
                linewidths=0.4,
                alpha=1.0 if n <= BAND_SAMPLES * 10 else 0.5,
                rasterized=n > BAND_SAMPLES,
            )
        ax.set_xlabel(f"PC{i + 1} ({result.variance_ratio[i]:.1%})")
        ax.set_ylabel(f"PC{j + 1} ({result.variance_ratio[j]:.1%})")
        ax.axhline(0, color="grey", lw=0.5, zorder=0)
        ax.axvline(0, color="grey", lw=0.5, zorder=0)
    if not pairs:
        axes[0].text(0.5, 0.5, "fewer than 2 principal components", ha="center", va="center")
        axes[0].set_axis_off()
    handles = [
        Line2D([], [], color=colour, marker="o", lw=0, label=level)
        for level, colour in palette(condition).items()
    ]
    if condition is not None:
        handles.insert(0, Line2D([], [], lw=0, label=f"{condition_name}:"))
    if batch is not None:
        handles.append(Line2D([], [], lw=0, label=f"{batch_name}:"))
        handles += [
            Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], lw=0, label=level)
            for i, level in enumerate(batch_levels)
        ]
    if handles:
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    _suptitle(fig, f"{title} — PCA of the {len(result.genes)} most variable genes")
    return fig


def _annotation_strip(ax, labels: Sequence[object] | None, order: np.ndarray, name: str) -> None:
    if labels is None:
        ax.set_axis_off()
        return
    colours = palette(labels)
    rgba = np.array([[colours[str(labels[i])] for i in order]])
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([0], [name])


@styled
def correlation_figure(
    correlation: np.ndarray,
    linkage: np.ndarray,
    samples: Sequence[str],
    *,
    condition: Sequence[object] | None = None,
    batch: Sequence[object] | None = None,
    condition_name: str = "condition",
    batch_name: str = "batch",
    title: str = "",
    n_samples: int | None = None,
) -> Figure:
    """Sample-sample correlation heatmap ordered by hierarchical clustering.

    A dendrogram sits on top and colour strips show condition and batch, so the
    clusters can be read against both.

    Parameters
    ----------
    correlation, linkage, samples
        The samples drawn, their correlation and its clustering
        (:func:`cohortnorm.qc.correlation_clustering`).
    condition, batch
        Labels of the samples drawn.
    n_samples
        Samples in the cohort, when only a subset (:func:`cohortnorm.qc.heatmap_samples`)
        is drawn: the title then says how many of them are shown and how they were chosen.
    """
    n = len(samples)
    subset = n_samples is not None and n_samples > n
    size = float(np.clip(3.5 + 0.18 * n, 6.0, 12.0))
    fig = _figure(size + 1.5, size + 1.0)
    grid = fig.add_gridspec(4, 2, height_ratios=[1.2, 0.12, 0.12, 5], width_ratios=[30, 1])
    tree_ax = fig.add_subplot(grid[0, 0])
    order = np.arange(n)
    if len(linkage):
        from scipy.cluster import hierarchy  # only here: a quarter of a second to load

        tree = hierarchy.dendrogram(
            linkage, ax=tree_ax, no_labels=True, color_threshold=0, above_threshold_color="k"
        )
        order = np.asarray(tree["leaves"])
    tree_ax.set_axis_off()
    _annotation_strip(fig.add_subplot(grid[1, 0]), condition, order, condition_name)
    _annotation_strip(fig.add_subplot(grid[2, 0]), batch, order, batch_name)
    ax = fig.add_subplot(grid[3, 0])
    image = ax.imshow(
        correlation[np.ix_(order, order)], aspect="auto", interpolation="nearest", cmap="viridis"
    )
    if n <= MAX_LABELLED_SAMPLES:
        names = [samples[i] for i in order]
        ax.set_xticks(np.arange(n), names, rotation=90)
        ax.set_yticks(np.arange(n), names)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(
            f"{n} of {n_samples} samples (clustered)" if subset else f"{n} samples (clustered)"
        )
    fig.colorbar(image, cax=fig.add_subplot(grid[3, 1]), label="Pearson r")
    handles = []
    for name, labels in ((condition_name, condition), (batch_name, batch)):
        if labels is not None:
            handles.append(Line2D([], [], lw=0, label=f"{name}:"))
            handles += [
                Line2D([], [], color=c, lw=5, label=level) for level, c in palette(labels).items()
            ]
    if handles:
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    if subset:
        strata = " × ".join(
            name
            for name, labels in ((condition_name, condition), (batch_name, batch))
            if labels is not None
        )
        how = f"evenly spread over each {strata} group" if strata else "evenly spread"
        title = f"{title} — {n} of {n_samples} samples shown ({how})"
    _suptitle(fig, title)
    return fig


@styled
def ma_figure(ma: MAHistograms, *, title: str = "", columns: int = 4) -> Figure:
    """A grid of MA panels (2D histograms, log colour scale), one per sample shown.

    The panels sit on a fixed grid (no layout engine): with a dozen axes, constrained
    layout measured every tick label several times and took most of the drawing time.
    Shared axes leave labels on the outer panels only, and the tight bounding box of
    :func:`save_figure` takes in what lies outside the grid (axis labels, colour bar,
    title).
    """
    panels = len(ma.samples)
    columns = max(1, min(columns, panels))
    rows = max(1, int(np.ceil(panels / columns)))
    width, height = 2.6 * columns + 0.6, 2.3 * rows + 0.8
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        rows,
        columns,
        left=0.7 / width,
        right=1 - 0.6 / width,
        bottom=0.5 / height,
        top=1 - 0.3 / height,
        wspace=0.06,
        hspace=0.16,
    )
    axes = grid.subplots(sharex=True, sharey=True, squeeze=False)
    extent = (ma.a_edges[0], ma.a_edges[-1], ma.m_edges[0], ma.m_edges[-1])
    peak = max(float(ma.counts.max()), 1.0) if ma.counts.size else 1.0
    norm = matplotlib.colors.LogNorm(vmin=1, vmax=peak)
    for index, ax in enumerate(axes.ravel()):
        if index >= panels:
            ax.set_axis_off()
            continue
        counts = np.ma.masked_equal(ma.counts[index].T, 0)
        image = ax.imshow(
            counts,
            origin="lower",
            extent=extent,
            aspect="auto",
            interpolation="nearest",
            norm=norm,
            cmap="viridis",
        )
        ax.axhline(0, color="red", lw=0.6)
        ax.set_title(ma.samples[index], fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("A (mean log2)")
    for ax in axes[:, 0]:
        ax.set_ylabel("M (log2 ratio)")
    if panels:
        right = 1 - 0.6 / width
        bar_axes = fig.add_axes((right + 0.12 / width, 0.5 / height, 0.12 / width, 0.6))
        bar = fig.colorbar(image, cax=bar_axes, label="genes")
        # Plain numbers: the default log labels are mathtext, which STYLE turns off.
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain_number))
        bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    note = (
        f" (first {panels} of {ma.n_samples} samples; qc.max_ma_panels)"
        if panels < ma.n_samples
        else ""
    )
    # Above the panel titles; the tight bounding box makes room for it.
    fig.suptitle(
        _wrap(f"{title} — each sample against the pseudo-reference (gene mean){note}", width),
        y=1.0,
        va="bottom",
    )
    return fig


@styled
def library_size_figure(
    table: pd.DataFrame,
    *,
    groups: Sequence[object] | None = None,
    group_name: str = "batch",
    title: str = "",
    divisor: float = 3.0,
) -> Figure:
    """Library sizes (millions): bars of ``lib_size``, dots of ``effective_lib_size``.

    ``table`` is indexed by sample; a dashed line marks median(lib_size) / ``divisor``,
    the low-library flag threshold. Above :data:`BAND_SAMPLES` samples, the bars become
    a filled profile along the samples ordered by group, and the effective sizes a line.
    """
    n = len(table)
    fig = _figure(_width(n), 4.0)
    ax = fig.add_subplot()
    positions = np.arange(1, n + 1)
    lib = table["lib_size"].to_numpy(dtype=float) / 1e6
    effective = (
        table["effective_lib_size"].to_numpy(dtype=float) / 1e6
        if "effective_lib_size" in table
        else None
    )
    banded = n > BAND_SAMPLES
    if banded:
        # One bar per sample would be a sub-pixel rectangle each (and 17,000 patches).
        order, spans = _group_spans(groups, n)
        colours = palette(groups) if groups is not None else {"": "tab:blue"}
        for level, start, stop in spans:
            part = slice(start, stop)
            ax.fill_between(
                positions[part],
                0,
                lib[order][part],
                step="mid",
                color=colours[level],
                lw=0,
                rasterized=True,
            )
        if effective is not None:
            ax.step(
                positions,
                effective[order],
                where="mid",
                color="black",
                lw=0.4,
                rasterized=True,
                label="effective: filtered × norm. factor",
            )
    else:
        ax.bar(positions, lib, color=_sample_colours(groups, n), width=0.8)
        if effective is not None:
            ax.plot(
                positions,
                effective,
                linestyle="none",
                marker="_" if n > MAX_LABELLED_SAMPLES else "D",
                color="black",
                markersize=5,
                label="effective: filtered × norm. factor",
            )
    threshold = float(np.median(lib)) / divisor
    ax.axhline(threshold, color="red", linestyle="--", lw=0.8, label=f"median / {divisor:g}")
    if banded:
        _group_axis(ax, spans, n, group_name)
    else:
        _sample_axis(ax, [str(s) for s in table.index])
        ax.set_xlim(0.4, n + 0.6)
    ax.set_ylabel("reads (millions)")
    ax.set_title(_wrap(title, 0.8 * fig.get_figwidth()))
    handles, _ = ax.get_legend_handles_labels()
    handles.insert(0, Patch(color="lightgrey", label="library size (all genes)"))
    if groups is not None:
        handles.append(Line2D([], [], lw=0, label=f"{group_name}:"))
        handles += [
            Line2D([], [], color=colour, lw=4, label=level)
            for level, colour in palette(groups).items()
        ]
    # A figure legend outside the axes: constrained layout makes room for it.
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    return fig


@styled
def verdict_figure(metrics: pd.DataFrame, *, title: str = "") -> Figure:
    """Batch vs condition, per stage: R² of the top PCs and silhouette widths.

    ``metrics`` has one row per stage with ``stage, batch_r2, condition_r2,
    batch_silhouette, condition_silhouette``; missing values are drawn as empty bars.
    """
    fig = _figure(9.0, 3.8)
    axes = fig.subplots(1, 2)
    stages = metrics["stage"].astype(str).tolist()
    x = np.arange(len(stages))
    colours = {"batch": "tab:red", "condition": "tab:blue"}
    for ax, (suffix, label) in zip(
        axes,
        [("r2", "PC variance explained (weighted R²)"), ("silhouette", "silhouette width")],
        strict=True,
    ):
        for offset, factor in ((-0.2, "batch"), (0.2, "condition")):
            values = metrics[f"{factor}_{suffix}"].to_numpy(dtype=float)
            ax.bar(
                x + offset, np.nan_to_num(values), width=0.4, color=colours[factor], label=factor
            )
        ax.set_xticks(x, stages)
        ax.set_ylabel(label)
        ax.axhline(0, color="black", lw=0.6)
    axes[0].set_ylim(0, 1)
    axes[1].set_ylim(-1, 1)
    axes[0].legend(frameon=False, loc="upper right")
    _suptitle(fig, title)
    return fig


@dataclass(frozen=True)
class FigureLabels:
    """The words a stage figure writes: the sheet's column names and the title."""

    condition_name: str = "condition"
    batch_name: str = "batch"
    title: str = ""


# The per-stage figures, one function each taking (StageQC, FigureLabels); the registry
# (cohortnorm.registry.STAGE_FIGURES) lists them, with their report labels and captions.


def stage_boxplot(result: StageQC, labels: FigureLabels) -> Figure:
    """Per-sample logCPM distributions, grouped by batch."""
    return boxplot_figure(
        result.distribution, groups=result.batch, group_name=labels.batch_name, title=labels.title
    )


def stage_density(result: StageQC, labels: FigureLabels) -> Figure:
    """Per-sample logCPM densities, coloured by batch."""
    return density_figure(
        result.density_edges,
        result.density,
        groups=result.batch,
        group_name=labels.batch_name,
        title=labels.title,
    )


def stage_pca(result: StageQC, labels: FigureLabels) -> Figure:
    """PCA of the most variable genes, marked by condition and batch."""
    return pca_figure(
        result.pca,
        condition=result.condition,
        batch=result.batch,
        title=labels.title,
        condition_name=labels.condition_name,
        batch_name=labels.batch_name,
    )


def stage_rle(result: StageQC, labels: FigureLabels) -> Figure:
    """Relative log expression per sample, grouped by batch."""
    return rle_figure(
        result.rle, groups=result.batch, group_name=labels.batch_name, title=labels.title
    )


def stage_correlation(result: StageQC, labels: FigureLabels) -> Figure:
    """Sample correlation heatmap (the shown subset for many samples), with both factors."""
    shown = (
        np.arange(len(result.samples))
        if result.correlation_samples is None
        else result.correlation_samples
    )
    return correlation_figure(
        result.correlation,
        result.linkage,
        [result.samples[i] for i in shown],
        condition=None if result.condition is None else result.condition[shown],
        batch=None if result.batch is None else result.batch[shown],
        title=labels.title,
        n_samples=len(result.samples),
        condition_name=labels.condition_name,
        batch_name=labels.batch_name,
    )


def stage_ma(result: StageQC, labels: FigureLabels) -> Figure:
    """MA plots of the first samples against the pseudo-reference."""
    return ma_figure(result.ma, title=labels.title)


def stage_figures(
    result: StageQC,
    *,
    condition_name: str = "condition",
    batch_name: str = "batch",
    title: str = "",
) -> dict[str, Figure]:
    """Every registered figure of one QC stage (registry.STAGE_FIGURES), keyed by name.

    Boxes, densities and RLE are grouped by batch; the PCA and the correlation heatmap
    show both the condition and the batch of each sample.
    """
    from cohortnorm.registry import STAGE_FIGURES, load

    labels = FigureLabels(condition_name, batch_name, title)
    return {name: load(entry.draw)(result, labels) for name, entry in STAGE_FIGURES.items()}
