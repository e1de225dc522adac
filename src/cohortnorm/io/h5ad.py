"""Writing AnnData ``.h5ad`` files one layer at a time (reading is in importers).

AnnData is samples × genes, the transpose of the workflow's genes × samples arrays;
the Fortran-ordered arrays of :func:`cohortnorm.io.tables.read_matrix` transpose to
C-ordered ones without a copy. Each layer is written and released before the next is
read, so a consortium cohort needs one dense matrix in memory, not one per layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cohortnorm.io.tables import atomic_output


def write_h5ad_layers(
    path: str | Path,
    obs: pd.DataFrame,
    genes: pd.Index | list[str],
    layers: Iterable[tuple[str, np.ndarray]],
    *,
    x_layer: str | None = None,
) -> None:
    """Write an ``.h5ad`` file atomically from genes × samples layers.

    Parameters
    ----------
    path
        The output file.
    obs
        One row per sample (the index gives ``obs_names``), in the column order of the
        layers.
    genes
        ``var_names``.
    layers
        ``(name, genes × samples array)`` pairs, consumed one at a time.
    x_layer
        The layer also written as ``X`` (none: ``X`` is left empty).
    """
    import anndata
    import h5py
    from anndata.io import write_elem

    obs = obs.copy()
    obs.index = pd.Index(obs.index.astype(str), name=None)
    var = pd.DataFrame(index=pd.Index(np.asarray(genes, dtype=object).astype(str), name=None))
    skeleton = anndata.AnnData(obs=obs, var=var)
    with atomic_output(path) as temporary:
        skeleton.write_h5ad(temporary)
        with h5py.File(temporary, "a") as handle:
            for name, values in layers:
                values = np.asarray(values)
                if values.shape != (len(var), len(obs)):
                    raise ValueError(
                        f"layer {name!r} has shape {values.shape}, not genes × samples "
                        f"({len(var)} × {len(obs)})"
                    )
                write_elem(handle["layers"], name, values.T)
                if name == x_layer:
                    write_elem(handle, "X", values.T)
                del values
