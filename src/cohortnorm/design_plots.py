"""The design-diagnostics figure: per-gene variance explained by batch and by condition.

BatchQC draws, before and after correction, the distribution over genes of the R² of
batch and of condition; a correction that works moves the batch boxes down and leaves
the condition boxes where they were. Built with the fixed style of :mod:`cohortnorm.plots`
(literal text, reproducible files).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cohortnorm import plots
from cohortnorm.errors import InputError


@plots.styled
def variance_explained_figure(
    table: pd.DataFrame,
    gpca: pd.DataFrame | None = None,
    *,
    title: str = "",
) -> Figure:
    """Boxes of the per-gene R² of each factor at each stage.

    Parameters
    ----------
    table
        :func:`cohortnorm.diagnostics.variance_explained_table` (``stage, factor, gene_id,
        r2``); stages and factors are drawn in the order they first appear.
    gpca
        :func:`cohortnorm.diagnostics.gpca_table`; when given, each stage's label carries
        its δ and permutation p-value.
    title
        Figure title (literal text).

    Returns
    -------
    matplotlib.figure.Figure
        One axes; boxes are quartiles with whiskers to the 5th and 95th percentiles,
        genes beyond them not drawn (there may be tens of thousands).
    """
    if table.empty:
        raise InputError("no per-gene R² to draw (no stage, or every gene constant)")
    stages = list(dict.fromkeys(table["stage"].astype(str)))
    factors = list(dict.fromkeys(table["factor"].astype(str)))
    colours = plots.palette(factors)
    labels = stages
    if gpca is not None and not gpca.empty:
        by_stage = gpca.set_index(gpca["stage"].astype(str))

        def label(stage: str) -> str:
            if stage not in by_stage.index:
                return stage
            row = by_stage.loc[stage]
            # A p-value of 0 only says no permutation reached δ: p < 1 / permutations.
            p = (
                f"p < {1 / row['n_permutations']:.2g}"
                if row["gpca_p_value"] == 0 and row["n_permutations"] > 0
                else f"p {row['gpca_p_value']:.3g}"
            )
            return f"{stage}\ngPCA δ {row['gpca_delta']:.2f} ({p})"

        labels = [label(stage) for stage in stages]
    fig = plots._figure(max(4.0, 1.6 * len(stages) + 1.5), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(factors)
    for j, factor in enumerate(factors):
        data, positions = [], []
        for i, stage in enumerate(stages):
            chosen = (table["stage"].astype(str) == stage) & (table["factor"].astype(str) == factor)
            values = table.loc[chosen, "r2"].to_numpy(dtype=np.float64)
            if values.size:
                data.append(values)
                positions.append(i - 0.4 + width * (j + 0.5))
        if not data:
            continue
        boxes = ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            whis=(5, 95),
            showfliers=False,
            patch_artist=True,
            medianprops={"color": "black", "gid": f"median {factor}"},
        )
        for box in boxes["boxes"]:
            box.set_facecolor(colours[factor])
    ax.set_xticks(np.arange(len(stages)), labels)
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("per-gene R² (one-way model)")
    fig.legend(
        handles=[Patch(facecolor=colours[f], edgecolor="black", label=f) for f in factors],
        title="variance explained by",
        frameon=False,
        loc="outside right upper",
    )
    plots._suptitle(
        fig,
        title or "Variance of each gene explained by batch and by condition, per stage",
    )
    return fig
