"""The QC as MultiQC custom content, to sit beside a lab's alignment QC.

MultiQC (Ewels et al. 2016) reads any file named ``*_mqc.tsv`` whose leading ``#`` lines
are a YAML header (``id``, ``section_name``, ``plot_type``, ``pconfig``, ``headers``) as a
"custom content" section (MultiQC docs, *Custom Content*). Three files are written:

* ``cohortnorm_general_stats_mqc.tsv`` (``plot_type: generalstats``): library size,
  detected genes, dropout and number of QC flags per sample, as columns of MultiQC's
  *General Statistics* table, next to the columns of the other tools;
* ``cohortnorm_sample_qc_mqc.tsv`` (``plot_type: table``): every per-sample QC value, the
  metrics flagged, and the PC1/PC2 scores of each stage;
* ``cohortnorm_verdict_mqc.tsv`` (``plot_type: table``): one row per stage with the
  verdict (does the PCA follow batch or condition?) and its numbers.

The functions below build the text from the QC tables (``qc/sample_flags.tsv``,
``qc/<stage>/samples.tsv``, ``qc/verdict.tsv``); :func:`write_multiqc` writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cohortnorm.errors import InputError
from cohortnorm.io.tables import atomic_output

#: Namespace of our columns in MultiQC's General Statistics table.
NAMESPACE = "cohortnorm"
#: Per-sample QC metrics of ``qc/sample_flags.tsv`` (:func:`cohortnorm.qc.sample_flags`).
FLAG_METRICS = ["lib_size", "detected_genes", "dropout_rate", "median_rle", "pca_distance"]
#: Score columns of ``qc/<stage>/samples.tsv`` carried into the sample table.
SCORE_COLUMNS = ["PC1", "PC2"]
FILES = {
    "general_stats": "cohortnorm_general_stats_mqc.tsv",
    "sample_qc": "cohortnorm_sample_qc_mqc.tsv",
    "verdict": "cohortnorm_verdict_mqc.tsv",
}

_HEADERS = {
    "lib_size": {
        "title": "Library size",
        "description": "Reads counted in the sample (column sum of the raw counts)",
        "format": "{:,.0f}",
        "scale": "Blues",
    },
    "detected_genes": {
        "title": "Detected genes",
        "description": "Genes with a count above 0 in the raw counts",
        "format": "{:,.0f}",
        "scale": "Greens",
    },
    "dropout_percent": {
        "title": "Dropout",
        "description": "Share of genes with a zero count in the raw counts",
        "suffix": "%",
        "min": 0,
        "max": 100,
        "format": "{:,.1f}",
        "scale": "OrRd",
    },
    "median_rle": {
        "title": "Median RLE",
        "description": "Median relative log expression of the sample (normalized stage)",
        "format": "{:,.3f}",
        "scale": "RdBu",
    },
    "pca_distance": {
        "title": "PCA distance",
        "description": "Distance of the sample from the median in the PCA (normalized stage)",
        "format": "{:,.2f}",
    },
    "n_flags": {
        "title": "QC flags",
        "description": "Number of QC rules the sample breaks (see qc/sample_flags.tsv)",
        "format": "{:,.0f}",
        "min": 0,
        "max": len(FLAG_METRICS),
        "scale": "Reds",
    },
    "flagged": {
        "title": "Flagged metrics",
        "description": "The QC rules the sample breaks",
    },
}


def _header(config: Mapping[str, object]) -> str:
    text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, width=10_000)
    return "".join(f"# {line}\n" for line in text.splitlines())


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    text = str(value)
    if "\t" in text or "\n" in text:
        raise InputError(f"a MultiQC cell would hold a tab or a line break: {text!r}")
    return text


def _body(frame: pd.DataFrame, first: str) -> str:
    lines = ["\t".join([first, *map(str, frame.columns)])]
    # itertuples keeps each column's type (iterrows would turn integers into floats).
    for name, *values in frame.itertuples(index=True, name=None):
        lines.append("\t".join([_cell(name), *(_cell(v) for v in values)]))
    return "\n".join(lines) + "\n"


def _whole(values: pd.Series) -> np.ndarray:
    """Counts as int64 when every value is a whole number (library sizes of counts)."""
    numbers = values.to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all() and (numbers == np.round(numbers)).all():
        return numbers.astype(np.int64)
    return numbers


def _check_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} has no column {', '.join(missing)}; its columns are "
            f"{', '.join(map(str, frame.columns))}. Rerun the QC summary that writes it."
        )


def _sample_values(flags: pd.DataFrame) -> pd.DataFrame:
    _check_columns(
        flags, [*FLAG_METRICS, *(f"{m}_flag" for m in FLAG_METRICS), "n_flags"], "sample_flags"
    )
    table = pd.DataFrame(index=pd.Index(flags.index.astype(str), name="sample"))
    table["lib_size"] = _whole(flags["lib_size"])
    table["detected_genes"] = _whole(flags["detected_genes"])
    table["dropout_percent"] = 100.0 * flags["dropout_rate"].to_numpy(dtype=np.float64)
    table["median_rle"] = flags["median_rle"].to_numpy(dtype=np.float64)
    table["pca_distance"] = flags["pca_distance"].to_numpy(dtype=np.float64)
    table["n_flags"] = flags["n_flags"].to_numpy(dtype=np.int64)
    flagged = np.array(
        [
            flags[f"{m}_flag"].astype(str).str.lower().isin(["true", "1", "yes"])
            for m in FLAG_METRICS
        ]
    ).T
    table["flagged"] = [
        ", ".join(m for m, hit in zip(FLAG_METRICS, row, strict=True) if hit) or "none"
        for row in flagged
    ]
    return table


def general_stats_content(flags: pd.DataFrame) -> str:
    """``*_mqc.tsv`` text adding library size, detected genes, dropout and flags to
    MultiQC's General Statistics table.

    Parameters
    ----------
    flags
        ``qc/sample_flags.tsv`` indexed by sample (:func:`cohortnorm.qc.sample_flags`).
    """
    columns = ["lib_size", "detected_genes", "dropout_percent", "n_flags"]
    header = {
        "id": "cohortnorm_general_stats",
        "plot_type": "generalstats",
        "pconfig": [{name: {**_HEADERS[name], "namespace": NAMESPACE}} for name in columns],
    }
    return _header(header) + _body(_sample_values(flags)[columns], "Sample")


def sample_qc_content(
    flags: pd.DataFrame, stage_samples: Mapping[str, pd.DataFrame] | None = None
) -> str:
    """``*_mqc.tsv`` text of the per-sample QC table, with PC scores per stage.

    Parameters
    ----------
    flags
        ``qc/sample_flags.tsv`` indexed by sample.
    stage_samples
        Stage name → ``qc/<stage>/samples.tsv`` indexed by sample; its ``PC1`` and ``PC2``
        become the columns ``<stage> PC1`` and ``<stage> PC2`` (missing samples: empty).
    """
    table = _sample_values(flags)
    headers = {name: dict(_HEADERS[name]) for name in table.columns}
    for stage, samples in (stage_samples or {}).items():
        for score in SCORE_COLUMNS:
            if score not in samples.columns:
                continue  # a stage with a single PC (two samples) has no PC2
            column = f"{stage}_{score}"
            table[column] = (
                samples[score].set_axis(samples.index.astype(str)).reindex(table.index).to_numpy()
            )
            headers[column] = {
                "title": f"{stage} {score}",
                "description": f"{score} score of the sample in the {stage} stage's PCA",
                "format": "{:,.2f}",
            }
    header = {
        "id": "cohortnorm_sample_qc",
        "section_name": "cohortnorm: per-sample QC",
        "description": (
            "Per-sample QC of the cohortnorm workflow (qc/sample_flags.tsv and the PC scores "
            "of qc/&lt;stage&gt;/samples.tsv). A sample is flagged when it breaks a rule "
            "stated in the *_rule columns of qc/sample_flags.tsv."
        ),
        "plot_type": "table",
        "pconfig": {"id": "cohortnorm_sample_qc_table", "namespace": NAMESPACE},
        "headers": headers,
    }
    return _header(header) + _body(table, "Sample")


def verdict_content(verdict: pd.DataFrame) -> str:
    """``*_mqc.tsv`` text of the per-stage verdict table.

    Parameters
    ----------
    verdict
        ``qc/verdict.tsv`` (:func:`cohortnorm.qc.verdict_table`): ``cohort, stage, verdict,
        batch_r2, condition_r2, cramers_v``. Rows are named by stage, or ``cohort stage``
        when the table holds several cohorts.
    """
    columns = ["cohort", "stage", "verdict", "batch_r2", "condition_r2", "cramers_v"]
    _check_columns(verdict, columns, "verdict table")
    several = verdict["cohort"].astype(str).nunique() > 1
    names = [
        f"{c} {s}" if several else str(s)
        for c, s in zip(verdict["cohort"].astype(str), verdict["stage"].astype(str), strict=True)
    ]
    if len(set(names)) != len(names):
        raise InputError(f"the verdict table repeats a stage: {', '.join(names)}")
    table = pd.DataFrame(index=pd.Index(names, name="stage"))
    table["verdict"] = verdict["verdict"].astype(str).to_numpy()
    for name in ("batch_r2", "condition_r2", "cramers_v"):
        table[name] = pd.to_numeric(verdict[name], errors="coerce").to_numpy(dtype=np.float64)
    headers = {
        "verdict": {
            "title": "Verdict",
            "description": "What the top PCs follow: condition, batch, unclear, confounded or "
            "undetermined (qc/metrics.tsv verdict_rule)",
        },
        "batch_r2": {
            "title": "Batch R²",
            "description": "Share of the top-PC variance explained by batch",
            "min": 0,
            "max": 1,
            "format": "{:,.3f}",
        },
        "condition_r2": {
            "title": "Condition R²",
            "description": "Share of the top-PC variance explained by condition",
            "min": 0,
            "max": 1,
            "format": "{:,.3f}",
        },
        "cramers_v": {
            "title": "Cramér's V",
            "description": "Association of batch and condition in the sample sheet",
            "min": 0,
            "max": 1,
            "format": "{:,.2f}",
        },
    }
    header = {
        "id": "cohortnorm_verdict",
        "section_name": "cohortnorm: batch or condition?",
        "description": (
            "Per stage of the cohortnorm workflow (raw, normalized, each correction): do the "
            "samples cluster by batch or by condition (qc/verdict.tsv)."
        ),
        "plot_type": "table",
        "pconfig": {
            "id": "cohortnorm_verdict_table",
            "namespace": NAMESPACE,
            "col1_header": "Stage",
        },
        "headers": headers,
    }
    return _header(header) + _body(table, "Stage")


def write_multiqc(
    folder: str | Path,
    *,
    flags: pd.DataFrame,
    verdict: pd.DataFrame,
    stage_samples: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Write the three custom-content files into ``folder`` (e.g. ``qc/multiqc``).

    Each file is written to a temporary name and renamed (:func:`atomic_output`), so
    MultiQC never reads half a file.

    Returns
    -------
    dict
        ``general_stats``, ``sample_qc``, ``verdict`` → path written.
    """
    folder = Path(folder)
    texts = {
        "general_stats": general_stats_content(flags),
        "sample_qc": sample_qc_content(flags, stage_samples),
        "verdict": verdict_content(verdict),
    }
    written = {}
    for key, text in texts.items():
        path = folder / FILES[key]
        with atomic_output(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
        written[key] = path
    return written
