"""Start-up of the scripts: a job loads only the heavy libraries it uses.

matplotlib (a quarter of a second and more) loads only in jobs that draw, and
scipy.stats (half a second) only where a test statistic or a distribution is computed:
each script's own import lines are run in a fresh interpreter and the modules it ended
up with are listed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

#: Scripts that never draw.
NOT_PLOTTING = [
    "filter_counts",
    "size_factors",
    "normalized_values",
    "tpm",
    "batch_correction",
    "import_counts",
    "gene_symbols",
]


def loaded_after_imports(script: str) -> set[str]:
    """Top modules loaded by the import lines of ``scripts/<script>.py``."""
    lines = [
        line
        for line in (REPO / "scripts" / f"{script}.py").read_text().splitlines()
        if re.match(r"(from|import) ", line) and "__future__" not in line
    ]
    assert lines, script
    code = "\n".join([*lines, "import json, sys", "print(json.dumps(sorted(sys.modules)))"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("script", NOT_PLOTTING)
def test_scripts_that_do_not_draw_do_not_load_matplotlib_or_scipy_stats(script: str) -> None:
    modules = loaded_after_imports(script)
    assert "matplotlib" not in modules, script
    assert "scipy.stats" not in modules, script


def test_the_qc_stage_loads_matplotlib_but_not_scipy_stats() -> None:
    modules = loaded_after_imports("qc_stage")
    assert "matplotlib" in modules  # it draws (the check above is not vacuous)
    assert "scipy.stats" not in modules and "scipy.cluster" not in modules


def test_scipy_loaded_late_still_gets_the_rule_threads() -> None:
    """scipy is now loaded inside the functions that use it, after runner.limit_threads
    ran: its own OpenBLAS must still start with the rule's threads."""
    code = (
        "import threadpoolctl\n"
        "from cohortnorm.runner import limit_threads\n"
        "limit_threads(1)\n"
        "import numpy as np\n"
        "from cohortnorm import qc\n"
        "qc.pca(np.random.default_rng(0).normal(size=(80, 30)), top_genes=50, n_pcs=3)\n"
        "info = threadpoolctl.threadpool_info()\n"
        "assert any('scipy' in pool['filepath'] for pool in info), info\n"
        "assert all(pool['num_threads'] == 1 for pool in info), info\n"
        "print('ok')\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
