"""Biomarker panels: the user's genes of interest through every stage of the workflow.

:func:`resolve_genes` turns what the user wrote (gene IDs, versioned or not, or gene
symbols such as TARDBP, MAPT, NEFL) into the gene IDs of the count table, through an
annotation (gene ID → gene name) read from a GTF by :func:`gene_names_from_gtf` or given
as a table. :func:`draw_panel` draws one figure: a row per gene, a column per stage (raw,
normalized, each correction), the values by condition, with the batch as the marker.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cohortnorm.errors import InputError
from cohortnorm.io.gtf import _leading_comment_lines, _read_gtf
from cohortnorm.io.tables import check_input_file, explain_read_errors
from cohortnorm.lengths import ensembl_stem

if TYPE_CHECKING:  # matplotlib loads when a panel is drawn, not for gene_symbols
    from matplotlib.figure import Figure

RESOLVED_COLUMNS = ["requested", "gene_id", "gene_name", "matched_by"]
#: Close matches suggested for a name that is not found.
SUGGESTIONS = 3


def gene_names_from_gtf(path: str | Path, attribute: str = "gene_name") -> pd.Series:
    """Gene ID → gene name from the attributes of a GTF (or GFF3) file.

    Reads ``gene_id`` and ``attribute`` (``gene_name`` in Ensembl and GENCODE GTFs) from
    the ``gene`` rows, or from every row when the file has no ``gene`` rows (GTFs that
    list only transcripts and exons). Genes without the attribute are left out.

    Parameters
    ----------
    path
        GTF/GFF file, optionally gzipped.
    attribute
        Attribute holding the symbol.

    Returns
    -------
    pandas.Series
        Names indexed by ``gene_id``, in order of first appearance.

    Raises
    ------
    InputError
        An unreadable file, or no row with both attributes.
    """
    path = check_input_file(path, "annotation file (gene names)")

    def skip_comment(row: pacsv.InvalidRow) -> str:
        return "skip" if row.text is not None and row.text.startswith("#") else "error"

    try:
        with explain_read_errors(path):
            table = _read_gtf(path, _leading_comment_lines(path), skip_comment)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(
            f"{path}: not a GTF/GFF file (9 tab-separated columns, integer start and end): {error}"
        ) from None
    genes = table.filter(pc.equal(table["feature"], "gene"))
    if genes.num_rows:
        table = genes

    def extract(name: str) -> np.ndarray:
        pattern = rf'(?:^|;)\s*{name}(?:\s+"|\s+|=)(?P<v>[^";]+)'
        found = pc.extract_regex(table["attribute"], pattern).combine_chunks()
        values = found.field("v").to_numpy(zero_copy_only=False)
        return np.where(found.is_null().to_numpy(zero_copy_only=False), None, values)

    ids, names = extract("gene_id"), extract(attribute)
    keep = np.array([i is not None and n is not None for i, n in zip(ids, names, strict=True)])
    if not keep.any():
        raise InputError(
            f"{path}: no row has both a gene_id and a {attribute} attribute. Give an annotation "
            "with gene names (Ensembl or GENCODE GTF), or a two-column gene_id/gene_name table."
        )
    series = pd.Series(names[keep], index=pd.Index(ids[keep], name="gene_id"), name="gene_name")
    return series[~series.index.duplicated(keep="first")].astype(str)


def _stem(identifier: str) -> str:
    return ensembl_stem(identifier) or identifier


def _close(name: str, vocabulary: Sequence[str]) -> list[str]:
    by_upper: dict[str, str] = {}
    for word in vocabulary:
        by_upper.setdefault(word.upper(), word)
    hits = difflib.get_close_matches(name.upper(), list(by_upper), n=SUGGESTIONS, cutoff=0.6)
    return [by_upper[h] for h in hits]


def _annotation_for_table(
    table_ids: Sequence[str], annotation: pd.Series | None, stems: dict[str, list[str]]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Table gene ID → name, and name → table gene IDs, matching Ensembl versions.

    An annotation ID names the table gene with the same ID, else the single table gene
    with the same unversioned Ensembl stem (none when several share it).
    """
    in_table = set(table_ids)
    names: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    if annotation is None:
        return names, by_name
    for gene, name in zip(annotation.index.astype(str), annotation.astype(str), strict=True):
        candidates = [gene] if gene in in_table else stems.get(_stem(gene), [])
        if len(candidates) == 1 and candidates[0] not in names:
            names[candidates[0]] = name
            by_name.setdefault(name, []).append(candidates[0])
    return names, by_name


def gene_symbols(gene_ids: Sequence[str], annotation: pd.Series) -> pd.Series:
    """The annotation's name of every gene of the table (the optional ``gene_name`` column).

    Parameters
    ----------
    gene_ids
        Row names of the table.
    annotation
        Gene ID → gene name; Ensembl versions may differ from the table's.

    Returns
    -------
    pandas.Series
        Names in table order, indexed by the table's gene IDs; an empty string for a gene
        the annotation does not name (never NaN).
    """
    table_ids = [str(g) for g in gene_ids]
    stems: dict[str, list[str]] = {}
    for gene in table_ids:
        stems.setdefault(_stem(gene), []).append(gene)
    names, _ = _annotation_for_table(table_ids, annotation, stems)
    return pd.Series(
        [names.get(g, "") for g in table_ids],
        index=pd.Index(table_ids, name="gene_id"),
        name="gene_name",
        dtype=object,
    )


def resolve_genes(
    requested: Sequence[str],
    gene_ids: Sequence[str],
    annotation: pd.Series | None = None,
) -> pd.DataFrame:
    """Map gene IDs or symbols to the gene IDs of the count table.

    Each requested name is tried, in this order: as a gene ID of the table; as an Ensembl
    ID whose unversioned stem is that of exactly one table ID (``ENSG00000120948.17``
    finds ``ENSG00000120948`` and the reverse); as a gene name of ``annotation``, exactly,
    then ignoring case when that is unambiguous. A name held by several genes of the table
    is ambiguous; a name held by several annotation genes of which only one is in the
    table is that one.

    Parameters
    ----------
    requested
        What the user wrote (config ``qc.genes_of_interest``).
    gene_ids
        Row names of the count table.
    annotation
        Gene ID → gene name (:func:`gene_names_from_gtf`, or a table read by the caller);
        its IDs may carry other Ensembl versions than the table's.

    Returns
    -------
    pandas.DataFrame
        One row per requested name, columns :data:`RESOLVED_COLUMNS`; ``gene_name`` is the
        annotation's name of the gene (empty without annotation), ``matched_by`` one of
        ``gene_id``, ``ensembl_stem``, ``gene_name``, ``gene_name_ignoring_case``.

    Raises
    ------
    InputError
        Listing every name not found (with close symbols or IDs, e.g. ``TDP43`` → the
        user may mean ``TARDBP``'s protein: the message says names are gene symbols) and
        every ambiguous one (with the IDs it could be).
    """
    table_ids = [str(g) for g in gene_ids]
    in_table = set(table_ids)
    stems: dict[str, list[str]] = {}
    for gene in table_ids:
        stems.setdefault(_stem(gene), []).append(gene)
    names, by_name = _annotation_for_table(table_ids, annotation, stems)
    by_upper: dict[str, list[str]] = {}
    for name, targets in by_name.items():
        by_upper.setdefault(name.upper(), []).extend(targets)

    rows, unknown, ambiguous = [], [], []
    for raw in requested:
        name = str(raw).strip()
        hits: list[str] = []
        how = ""
        if name in in_table:
            hits, how = [name], "gene_id"
        elif ensembl_stem(name) and ensembl_stem(name) in stems:
            hits, how = stems[ensembl_stem(name)], "ensembl_stem"
        elif name in by_name:
            hits, how = sorted(set(by_name[name])), "gene_name"
        elif name.upper() in by_upper:
            hits, how = sorted(set(by_upper[name.upper()])), "gene_name_ignoring_case"
        if not hits:
            unknown.append(name)
        elif len(hits) > 1:
            ambiguous.append(f"{name} (could be {', '.join(hits)})")
        else:
            rows.append(
                {
                    "requested": name,
                    "gene_id": hits[0],
                    "gene_name": names.get(hits[0], ""),
                    "matched_by": how,
                }
            )
    if unknown or ambiguous:
        problems = []
        vocabulary = [*by_name, *table_ids]
        for name in unknown:
            close = _close(name, vocabulary)
            hint = f" (close: {', '.join(close)})" if close else ""
            problems.append(f"{name} is not a gene ID of the count table nor a known symbol{hint}")
        problems += [f"{text} is ambiguous" for text in ambiguous]
        seen = f"The count table has {len(table_ids)} genes (e.g. {', '.join(table_ids[:3])})" + (
            f" and the annotation names {len(by_name)} of them"
            if annotation is not None
            else "; no annotation (GTF or gene_id/gene_name table) was given, so only "
            "gene IDs can be used"
        )
        raise InputError(
            "qc.genes_of_interest: "
            + "; ".join(problems)
            + f". {seen}. Write gene symbols (TARDBP, not the protein name TDP-43) or gene IDs "
            "of the table; for an ambiguous symbol give the gene ID. Genes removed by the "
            "low-count filter are still in the raw table."
        )
    return pd.DataFrame(rows, columns=RESOLVED_COLUMNS)


def _offsets(n: int, width: float = 0.5) -> np.ndarray:
    """Evenly spread horizontal offsets (a deterministic jitter)."""
    if n <= 1:
        return np.zeros(n)
    return np.linspace(-width / 2, width / 2, n)


def draw_panel(
    values_by_stage: Mapping[str, pd.DataFrame],
    genes: Sequence[str],
    condition: Sequence[object],
    batch: Sequence[object] | None = None,
    symbols: Mapping[str, str] | None = None,
    *,
    value_label: str = "log2 CPM",
    condition_name: str = "condition",
    batch_name: str = "batch",
    title: str = "",
) -> Figure:
    """One figure of the genes of interest: a row per gene, a column per stage.

    Each panel shows the gene's values by condition: a box (quartiles, whiskers to the
    extreme values) and every sample as a point, coloured by condition, with its batch as
    the marker. Points are spread evenly within a condition (no random jitter, so the
    file is reproducible). All text is literal (no mathtext), as in :mod:`cohortnorm.plots`.

    Parameters
    ----------
    values_by_stage
        Stage name → genes × samples table (the same samples in the same order in each);
        a gene missing from a stage (e.g. removed by the filter) gets an empty panel saying so.
    genes
        Gene IDs, in row order (from :func:`resolve_genes`).
    condition, batch
        One label per sample.
    symbols
        Gene ID → label shown on the row (e.g. its symbol); the ID is shown as well.
    value_label
        Y axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    from cohortnorm import plots

    with matplotlib.rc_context(plots.STYLE):
        return _draw_panel(
            values_by_stage,
            genes,
            condition,
            batch,
            symbols,
            value_label=value_label,
            condition_name=condition_name,
            batch_name=batch_name,
            title=title,
        )


def _draw_panel(
    values_by_stage: Mapping[str, pd.DataFrame],
    genes: Sequence[str],
    condition: Sequence[object],
    batch: Sequence[object] | None = None,
    symbols: Mapping[str, str] | None = None,
    *,
    value_label: str = "log2 CPM",
    condition_name: str = "condition",
    batch_name: str = "batch",
    title: str = "",
) -> Figure:
    """:func:`draw_panel`, under :data:`cohortnorm.plots.STYLE`."""
    from matplotlib.lines import Line2D

    from cohortnorm import plots

    stages = list(values_by_stage)
    if not stages or not genes:
        raise InputError("a biomarker panel needs at least one stage and one gene")
    condition = np.asarray([str(c) for c in condition])
    levels = sorted(set(condition))
    colours = plots.palette(condition)
    batch_array = None if batch is None else np.asarray([str(b) for b in batch])
    batch_levels = [] if batch_array is None else sorted(set(batch_array))
    markers = {level: plots.MARKERS[i % len(plots.MARKERS)] for i, level in enumerate(batch_levels)}
    n_samples = len(condition)
    fig = plots._figure(2.3 * len(stages) + 1.8, 2.0 * len(genes) + 0.8)
    axes = fig.subplots(len(genes), len(stages), squeeze=False)
    for row, gene in enumerate(genes):
        label = (symbols or {}).get(gene)
        row_label = f"{label} ({gene})" if label and label != gene else str(gene)
        for column, stage in enumerate(stages):
            ax = axes[row, column]
            table = values_by_stage[stage]
            if table.shape[1] != n_samples:
                raise InputError(
                    f"stage {stage} has {table.shape[1]} samples, the sheet {n_samples}"
                )
            if row == 0:
                ax.set_title(stage)
            if column == 0:
                ax.set_ylabel(f"{row_label}\n{value_label}")
            if gene not in table.index:
                ax.text(
                    0.5,
                    0.5,
                    "not in this stage's table\n(e.g. removed by the\nlow-count filter)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            values = table.loc[gene].to_numpy(dtype=np.float64)
            groups = [values[condition == level] for level in levels]
            ax.boxplot(
                groups,
                positions=np.arange(len(levels)),
                widths=0.6,
                whis=(0, 100),
                showfliers=False,
                medianprops={"color": "black"},
                patch_artist=False,
            )
            for i, level in enumerate(levels):
                members = np.flatnonzero(condition == level)
                x = i + _offsets(len(members))
                if batch_array is None:
                    ax.scatter(x, values[members], color=colours[level], s=18, zorder=3)
                    continue
                for b in batch_levels:
                    chosen = batch_array[members] == b
                    if chosen.any():
                        ax.scatter(
                            x[chosen],
                            values[members][chosen],
                            color=colours[level],
                            marker=markers[b],
                            edgecolors="black",
                            linewidths=0.4,
                            s=22,
                            zorder=3,
                        )
            ax.set_xticks(np.arange(len(levels)), levels)
            ax.set_xlim(-0.6, len(levels) - 0.4)
    handles = [Line2D([], [], lw=0, label=f"{condition_name}:")]
    handles += [
        Line2D([], [], color=colours[level], marker="o", lw=0, label=level) for level in levels
    ]
    if batch_levels:
        handles.append(Line2D([], [], lw=0, label=f"{batch_name}:"))
        handles += [
            Line2D([], [], color="grey", marker=markers[b], lw=0, label=b) for b in batch_levels
        ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    plots._suptitle(fig, title or "Genes of interest by condition at each stage")
    return fig


def read_annotation(path: str | Path) -> pd.Series:
    """Gene ID → gene name from a GTF/GFF (``.gtf``, ``.gff``, ``.gff3``, gzipped or not)
    or from a table whose first two columns are the gene ID and the gene name.

    Raises
    ------
    InputError
        An unreadable file, a table with fewer than two columns, or no names.
    """
    path = check_input_file(path, "annotation file (gene names)")
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".gtf", ".gff", ".gff3")):
        return gene_names_from_gtf(path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    if table.shape[1] < 2 or table.empty:
        raise InputError(
            f"{path}: an annotation table needs two tab-separated columns, gene ID then gene "
            f"name, with a header line (found columns {list(table.columns)})."
        )
    ids = table.iloc[:, 0].str.strip()
    names = table.iloc[:, 1].str.strip()
    keep = (ids != "") & (names != "")
    series = pd.Series(
        names[keep].to_numpy(),
        index=pd.Index(ids[keep].to_numpy(), name="gene_id"),
        name="gene_name",
    )
    return series[~series.index.duplicated(keep="first")]
