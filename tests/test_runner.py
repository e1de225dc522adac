"""The script runner: a full disk ends a rule with one line, and nothing partial is left."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cohortnorm import runner
from cohortnorm.io import tables


def fake_snakemake(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(
        log=[str(tmp_path / "rule.log")],
        threads=1,
        rule="size_factors",
        output=[str(tmp_path / "out" / "size_factors.tsv")],
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path: Path, capsys) -> None:
    smk = fake_snakemake(tmp_path)

    def main(smk, logger):
        frame = pd.DataFrame({"sample": ["a", "b"], "size_factor": np.array([1.0, 2.0])})
        tables.write_table(frame, smk.output[0])  # a real table, written in full
        with open("/dev/full", "wb") as device:  # then a write the kernel refuses: ENOSPC
            device.write(b"x" * 65536)
            device.flush()

    with pytest.raises(SystemExit) as stopped:
        runner.run(main, smk)
    assert stopped.value.code == 1
    said = capsys.readouterr().err
    (line,) = [text for text in said.splitlines() if text.startswith("ERROR in rule")]
    assert "the disk is full (no space left) while writing to" in line
    assert "GB free there now" in line and "set outdir to a disk with room" in line
    assert "Traceback" not in said
    assert "the disk is full" in Path(smk.log[0]).read_text()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["size_factors.tsv"]


def test_atomic_output_leaves_nothing_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    with pytest.raises(OSError), tables.atomic_output(target) as temporary:
        temporary.write_text("half a table")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_called_a_full_disk(tmp_path: Path) -> None:
    smk = fake_snakemake(tmp_path)

    def main(smk, logger):
        raise PermissionError(errno.EACCES, "Permission denied", "/root/x")

    with pytest.raises(PermissionError):
        runner.run(main, smk)
