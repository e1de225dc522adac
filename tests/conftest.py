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

# Datasets with edgeR/DESeq2 reference outputs (shared/reference, copied here).
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
