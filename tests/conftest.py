"""Shared fixtures: the real datasets and their R reference outputs in ``tests/data``.

See ``tests/data/README.md`` for each dataset's origin and licence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]

# Datasets with edgeR/DESeq2 reference outputs (copied into tests/data with their R outputs).
COUNT_DATASETS = ["marioni", "pasilla", "airway", "gtex_lung_chr21"]


def _first_existing(base: Path) -> Path:
    for candidate in (base, base.with_name(base.name + ".gz")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(base)


@dataclass
class Dataset:
    """One real dataset: counts (genes × samples), sample sheet and R outputs."""

    name: str
    root: Path
    counts: pd.DataFrame
    samples: pd.DataFrame
    lengths: pd.Series | None
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def condition(self) -> pd.Series:
        return self.samples["condition"]

    @property
    def has_condition(self) -> bool:
        return self.samples["condition"].nunique() > 1

    @property
    def batch(self) -> pd.Series:
        column = "batch" if "batch" in self.samples else "batch_synthetic"
        return self.samples[column]

    def reference(self, stem: str, index_col: int | None = 0) -> pd.DataFrame:
        """Read ``reference/<stem>.tsv[.gz]`` at full precision."""
        if stem not in self._cache:
            path = _first_existing(self.root / "reference" / f"{stem}.tsv")
            self._cache[stem] = pd.read_csv(
                path, sep="\t", index_col=index_col, float_precision="round_trip"
            )
        return self._cache[stem]

    def has_reference(self, stem: str) -> bool:
        base = self.root / "reference" / f"{stem}.tsv"
        return base.exists() or base.with_name(base.name + ".gz").exists()


def load_dataset(name: str) -> Dataset:
    root = DATA / name
    counts = pd.read_csv(_first_existing(root / "counts.tsv"), sep="\t", index_col=0)
    samples = pd.read_csv(root / "samples.tsv", sep="\t", dtype=str)
    lengths_path = root / "lengths.tsv.gz"
    lengths = (
        pd.read_csv(lengths_path, sep="\t", index_col=0).iloc[:, 0]
        if lengths_path.exists()
        else None
    )
    return Dataset(name, root, counts, samples, lengths)


_LOADED: dict[str, Dataset] = {}


@pytest.fixture(params=COUNT_DATASETS)
def dataset(request: pytest.FixtureRequest) -> Dataset:
    """Each real count dataset in turn (loaded once per session)."""
    name = request.param
    if name not in _LOADED:
        _LOADED[name] = load_dataset(name)
    return _LOADED[name]


@dataclass
class ReferenceVectors:
    """Sections of ``testvectors/testvectors_output.txt`` (R's own printout, 10 digits).

    ``tables`` holds the genes × samples matrices, ``vectors`` the ``S1=… S2=…`` lines and
    ``masks`` the printed logical vectors, each keyed by the section title.
    """

    tables: dict[str, pd.DataFrame]
    vectors: dict[str, pd.Series]
    masks: dict[str, pd.Series]


def _parse_testvectors() -> ReferenceVectors:
    text = (DATA / "testvectors" / "testvectors_output.txt").read_text()
    tables: dict[str, pd.DataFrame] = {}
    vectors: dict[str, pd.Series] = {}
    masks: dict[str, pd.Series] = {}
    for chunk in text.split("### ")[1:]:
        title, _, body = chunk.partition("\n")
        title = title.strip()
        lines = [line for line in body.splitlines() if line.strip()]
        if not lines:
            continue
        starts = [i for i, line in enumerate(lines) if line.startswith("row\t")]
        if starts:
            header = lines[starts[0]].split("\t")[1:]
            rows = [line.split("\t") for line in lines[starts[0] + 1 :] if "\t" in line]
            tables[title] = pd.DataFrame(
                [[float(value) for value in row[1:]] for row in rows],
                index=[row[0] for row in rows],
                columns=header,
            )
        elif "=" in lines[0] and not lines[0].startswith(("Error", "<")):
            pairs = [item.split("=", 1) for item in lines[0].split()]
            try:
                vectors[title] = pd.Series({key: float(value) for key, value in pairs})
            except ValueError:
                continue
        elif len(lines) >= 2 and set(lines[1].split()) <= {"TRUE", "FALSE"}:
            masks[title] = pd.Series(
                [value == "TRUE" for value in lines[1].split()], index=lines[0].split()
            )
    return ReferenceVectors(tables, vectors, masks)


@pytest.fixture(scope="session")
def testvectors() -> ReferenceVectors:
    """The hand-made 10 × 6 test vectors and every R output printed for them."""
    return _parse_testvectors()
