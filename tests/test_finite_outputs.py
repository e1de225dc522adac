"""The shared writers refuse NaN and Inf under a final name, naming genes and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cohortnorm.errors import InputError
from cohortnorm.io.tables import write_matrix, write_table


def test_write_matrix_refuses_nan_and_leaves_nothing(tmp_path: Path) -> None:
    values = np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, np.inf]])
    path = tmp_path / "corrected.tsv"
    with pytest.raises(InputError) as raised:
        write_matrix(values, ["g1", "g2", "g3"], ["S1", "S2"], path, finite=True)
    message = str(raised.value)
    assert message.startswith(f"{path} was not written: it would hold NaN or infinite values")
    assert "g2 / S1; g3 / S2" in message
    assert not path.exists() and not list(tmp_path.iterdir())
    # Without the flag (intermediate use) the values are written as before.
    write_matrix(values, ["g1", "g2", "g3"], ["S1", "S2"], path)
    assert path.exists()


def test_write_table_refuses_nan_in_float_columns(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"sample": ["S1", "S2"], "lib_size": [10, 0], "norm_factor": [1.0, np.nan]}
    )
    path = tmp_path / "size_factors.tsv"
    with pytest.raises(InputError, match=r"at \(gene or row / sample or column\) S2 / norm_factor"):
        write_table(table, path, finite=True)
    assert not path.exists()
    write_table(table.fillna(1.0), path, finite=True)
    assert path.read_text().splitlines()[0] == "sample\tlib_size\tnorm_factor"
