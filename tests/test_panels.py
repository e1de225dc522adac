"""Biomarker panels (cohortnorm.panels): gene resolution and the drawn figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import gzip

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from cohortnorm import plots
from cohortnorm.errors import InputError
from cohortnorm.panels import draw_panel, gene_names_from_gtf, gene_symbols, resolve_genes

# Ensembl GRCh38 IDs of the three markers (TARDBP, MAPT, NEFL) and two others.
IDS = ["ENSG00000120948", "ENSG00000186868", "ENSG00000277586", "ENSG00000104722", "G5"]
ANNOTATION = pd.Series(
    ["TARDBP", "MAPT", "NEFL", "NEFM", "PAR1"],
    index=[
        "ENSG00000120948.17",
        "ENSG00000186868.16",
        "ENSG00000277586.2",
        "ENSG00000104722.14",
        "G5",
    ],
)


def test_ids_versioned_ids_and_symbols():
    resolved = resolve_genes(
        ["ENSG00000120948", "ENSG00000186868.99", "NEFL", "nefm"], IDS, ANNOTATION
    )
    assert resolved["gene_id"].tolist() == IDS[:4]
    assert resolved["gene_name"].tolist() == ["TARDBP", "MAPT", "NEFL", "NEFM"]
    assert resolved["matched_by"].tolist() == [
        "gene_id",
        "ensembl_stem",
        "gene_name",
        "gene_name_ignoring_case",
    ]


def test_versioned_table_ids_found_from_unversioned_request():
    table = ["ENSG00000120948.17", "ENSG00000186868.16"]
    resolved = resolve_genes(["ENSG00000120948", "MAPT"], table, ANNOTATION)
    assert resolved["gene_id"].tolist() == table


def test_unknown_names_are_listed_with_close_matches():
    with pytest.raises(InputError) as error:
        resolve_genes(["TDP43", "MAPTT", "NEFL"], IDS, ANNOTATION)
    message = str(error.value)
    assert "TDP43 is not a gene ID of the count table nor a known symbol" in message
    assert "MAPTT is not a gene ID of the count table nor a known symbol (close: MAPT)" in message
    assert "NEFL is" not in message
    assert "TARDBP, not the protein name TDP-43" in message
    assert "The count table has 5 genes (e.g. ENSG00000120948" in message


def test_symbols_without_annotation_are_refused_with_the_reason():
    with pytest.raises(InputError, match=r"no annotation .* so only gene IDs can be used"):
        resolve_genes(["TARDBP"], IDS)


def test_ambiguous_symbol_and_stem():
    annotation = pd.Series(["CDKN2A", "CDKN2A"], index=["ENSG1", "ENSG2"])
    with pytest.raises(InputError, match=r"CDKN2A \(could be ENSG1, ENSG2\) is ambiguous"):
        resolve_genes(["CDKN2A"], ["ENSG1", "ENSG2"], annotation)
    # Only one of the two holders is in the table: that one.
    assert resolve_genes(["CDKN2A"], ["ENSG2"], annotation)["gene_id"].tolist() == ["ENSG2"]
    two_versions = ["ENSG00000120948.1", "ENSG00000120948.2"]
    with pytest.raises(InputError, match=r"could be ENSG00000120948\.1, ENSG00000120948\.2"):
        resolve_genes(["ENSG00000120948"], two_versions)


def test_gene_names_from_gtf(tmp_path):
    tardbp = 'gene_id "ENSG00000120948.17"; gene_name "TARDBP";\n'
    rows = [
        "#!genome-build GRCh38\n",
        "chr1\tensembl\tgene\t100\t900\t.\t+\t.\t" + tardbp,
        "chr1\tensembl\texon\t100\t300\t.\t+\t.\t" + tardbp,
        'chr17\tensembl\tgene\t10\t90\t.\t+\t.\tgene_id "ENSG00000186868.16"; gene_name "MAPT";\n',
        'chr8\tensembl\tgene\t10\t90\t.\t-\t.\tgene_id "ENSG00000999999.1";\n',
    ]
    path = tmp_path / "genes.gtf.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(rows)
    names = gene_names_from_gtf(path)
    assert names.to_dict() == {"ENSG00000120948.17": "TARDBP", "ENSG00000186868.16": "MAPT"}
    resolved = resolve_genes(["MAPT", "TARDBP"], IDS, names)
    assert resolved["gene_id"].tolist() == ["ENSG00000186868", "ENSG00000120948"]
    bare = tmp_path / "bare.gtf"
    bare.write_text('chr1\tx\texon\t1\t5\t.\t+\t.\tgene_id "A";\n')
    with pytest.raises(InputError, match="no row has both a gene_id and a gene_name"):
        gene_names_from_gtf(bare)


@pytest.fixture
def stages():
    rng = np.random.default_rng(3)
    samples = [f"S{i}" for i in range(12)]
    genes = ["ENSG00000120948", "ENSG00000186868", "ENSG00000277586"]
    raw = pd.DataFrame(rng.normal(5, 1, (3, 12)), index=genes, columns=samples)
    return {
        "raw": raw,
        "normalized": raw + 0.5,
        "ComBat $ref": raw.drop(index="ENSG00000277586") - 0.2,
    }


def test_panel_figure(stages, tmp_path):
    condition = ["ALS", "control"] * 6
    batch = ["site1"] * 4 + ["site2"] * 4 + ["site3"] * 4
    symbols = {"ENSG00000120948": "TARDBP", "ENSG00000186868": "MAPT", "ENSG00000277586": "NEFL"}
    genes = list(symbols)
    fig = draw_panel(stages, genes, condition, batch, symbols, title="exosomes: $x$ markers")
    axes = fig.axes
    assert len(axes) == 9  # 3 genes × 3 stages
    titles = [ax.get_title() for ax in axes[:3]]
    assert titles == ["raw", "normalized", "ComBat $ref"]
    assert axes[0].get_ylabel() == "TARDBP (ENSG00000120948)\nlog2 CPM"
    assert axes[6].get_ylabel().startswith("NEFL (ENSG00000277586)")
    # Every sample is one point: per drawn panel, one scatter per condition × batch cell.
    drawn = [ax for ax in axes if ax.collections]
    assert len(drawn) == 8  # NEFL is not in the ComBat stage
    for ax in drawn:
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points) == 6
        assert sum(len(c.get_offsets()) for c in points) == 12
    empty = axes[8]
    assert "not in this stage" in empty.texts[0].get_text()
    # Point values are the table's, by condition.
    offsets = np.concatenate([c.get_offsets() for c in axes[0].collections])
    assert sorted(offsets[:, 1]) == pytest.approx(sorted(stages["raw"].iloc[0]))
    assert fig._suptitle.get_text() == "exosomes: $x$ markers"
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_labels == [
        "condition:",
        "ALS",
        "control",
        "batch:",
        "site1",
        "site2",
        "site3",
    ]
    path = tmp_path / "panel.svg"
    plots.save_figure(fig, path)
    assert "ComBat $ref" in path.read_text()  # literal text, not mathtext


def test_panel_without_batch_and_bad_input(stages):
    fig = draw_panel(stages, ["ENSG00000120948"], ["a", "b"] * 6)
    assert len(fig.axes) == 3
    assert len(fig.legends[0].get_texts()) == 3
    with pytest.raises(InputError, match="at least one stage and one gene"):
        draw_panel(stages, [], ["a", "b"] * 6)
    with pytest.raises(InputError, match="stage raw has 12 samples, the sheet 4"):
        draw_panel(stages, ["ENSG00000120948"], ["a", "b"] * 2)


def test_gene_symbols_column():
    table = ["ENSG00000120948.3", "ENSG00000186868", "G5", "G6"]
    symbols = gene_symbols(table, ANNOTATION)
    assert symbols.index.tolist() == table
    assert symbols.tolist() == ["TARDBP", "MAPT", "PAR1", ""]
