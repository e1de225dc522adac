"""The SLURM profile, run for real: the demo cohort through a single-node SLURM on localhost.

The cluster is started by ``tests/slurm/local_slurm.sh`` in a scratch directory (never
touching /etc/slurm) and stopped again when the module finishes. The workflow then runs
once through ``--profile profiles/slurm`` and once locally, and every output must match
byte for byte. See docs/slurm.md.

Needs root and Debian's ``slurmctld slurmd slurm-client munge``; otherwise the test is
skipped with the reason. To use a SLURM that is already running instead (its default
partition, your own account settings), set ``COHORTNORM_TEST_SLURM=existing``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "local_slurm.sh"
PROFILE = REPO / "profiles" / "slurm"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"
SBIN_PATH = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
NEEDED = ("slurmctld", "slurmd", "munged", "munge", "sinfo", "sbatch", "srun", "squeue")
# A hung scheduler must fail the test, never hang CI. The demo takes ~1 minute through SLURM;
# the sharded run has one small job per shard and step (each ~10 s through this SLURM), so
# it runs the normalization part only (SHARDED_TARGETS: about 20 jobs).
WORKFLOW_TIMEOUT_S = 240
SHARDED_TIMEOUT_S = 600
SHARDED_TARGETS = [
    "counts/filter_report.tsv",
    "normalization/size_factors.tsv",
    "normalization/logcpm.tsv",
]


def _use_existing() -> bool:
    return os.environ.get("COHORTNORM_TEST_SLURM") == "existing"


def _skip_reason() -> str | None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (see requirements.txt)"
    if _use_existing():
        if shutil.which("sinfo") is None:
            return "COHORTNORM_TEST_SLURM=existing but sinfo is not on PATH"
        probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            return f"COHORTNORM_TEST_SLURM=existing but sinfo fails: {probe.stderr.strip()}"
        return None
    if os.geteuid() != 0:
        return "starting a local SLURM needs root (slurmd runs jobs as SlurmUser=root)"
    missing = [exe for exe in NEEDED if shutil.which(exe, path=SBIN_PATH) is None]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} missing); "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for SLURM clients: a running local cluster, stopped after the module."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PATH": SBIN_PATH}
    if _use_existing():
        yield env
        return
    cluster_dir = tmp_path_factory.mktemp("slurm")
    # Free ports, so that a system SLURM on the default 6817/6818 is left undisturbed.
    env["LOCAL_SLURM_CTLD_PORT"], env["LOCAL_SLURM_SLURMD_PORT"] = map(str, _free_ports(2))
    started = subprocess.run(
        [str(CLUSTER_SCRIPT), "start", str(cluster_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"local SLURM did not start:\n{started.stdout}\n{started.stderr}")
        env["SLURM_CONF"] = str(cluster_dir / "slurm.conf")
        yield env
    finally:
        subprocess.run(
            [str(CLUSTER_SCRIPT), "stop", str(cluster_dir)],
            env=env,
            timeout=120,
            check=False,
        )


def _absolute_inputs(node: object) -> object:
    """The config with every input file path made absolute inside the repository."""
    if isinstance(node, dict):
        return {
            key: value if key == "outdir" else _absolute_inputs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute_inputs(value) for value in node]
    if isinstance(node, str) and not os.path.isabs(node) and (REPO / node).is_file():
        return str(REPO / node)
    return node


def _demo_config(tmp_path: Path, sharded: bool = False) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if sharded:  # the sharded mode: shards of 4 samples (VST is not sharded)
        config["sharding"] = {"samples_per_shard": 4}
        config["transforms"] = {"vst": {"enabled": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_absolute_inputs(config), sort_keys=False))
    return path


def _run(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    cancel: bool = False,
    timeout: int = WORKFLOW_TIMEOUT_S,
) -> None:
    """Run snakemake with a hard timeout; on failure show the end of its log."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # snakemake's own SIGTERM handling waits on the status thread, so follow up with
            # SIGKILL, then cancel whatever it left queued under its run ID.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if cancel:
                for run_id in re.findall(r"SLURM run ID: (\S+)", log.read_text()):
                    subprocess.run(["scancel", "--name", run_id], env=env, check=False)
            pytest.fail(
                f"snakemake did not finish within {timeout} s: {' '.join(cmd)}\n"
                + log.read_text()[-4000:]
            )
    if proc.returncode != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _outputs(workdir: Path) -> dict[str, Path]:
    results = workdir / "results"
    files = sorted(path for path in results.rglob("*") if path.is_file())
    # Logs and benchmarks (beside the outputs) hold times; .cohortnorm/ the run's settings.
    skip = {"logs", "benchmarks", ".cohortnorm"}
    return {
        str(path.relative_to(results)): path
        for path in files
        if not skip & set(path.relative_to(results).parts)
    }


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def test_profile_dry_run() -> None:
    """`snakemake --profile profiles/slurm --dry-run` works from the repository root."""
    done = subprocess.run(
        [
            str(SNAKEMAKE),
            "--profile",
            str(PROFILE),
            "--configfile",
            "config/config.yaml",
            "--dry-run",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("sharded", [False, True], ids=["in-memory", "sharded"])
def test_demo_through_slurm_matches_local_run(
    slurm_env: dict[str, str], tmp_path: Path, sharded: bool
) -> None:
    """The demo through SLURM equals the local run byte for byte, in memory and in the
    sharded mode (one SLURM job per shard and step)."""
    config = _demo_config(tmp_path, sharded)
    common = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(config)]
    # Targets relative to the working directory: the demo's outdir is results/demo.
    targets = [f"results/demo/{name}" for name in SHARDED_TARGETS] if sharded else []
    cpus = subprocess.run(
        ["sinfo", "-h", "-o", "%c"], env=slurm_env, capture_output=True, text=True, check=True
    ).stdout.split()[0]

    on_slurm = tmp_path / "slurm"
    _run(
        [
            *common,
            "-d",
            str(on_slurm),
            "--profile",
            str(PROFILE),
            # The local cluster has no accounts and needs no file-system latency allowance.
            *([] if _use_existing() else ["--slurm-no-account", "--latency-wait", "5"]),
            # Poll faster than on a real cluster so the test stays short: a job here takes
            # ~5 s, and each check that finds it still running adds 10 s to the next wait.
            "--slurm-init-seconds-before-status-checks",
            "6",
            # A rule must not ask for more CPUs than the single node has.
            "--max-threads",
            cpus.rstrip("+"),
            *targets,
        ],
        slurm_env,
        tmp_path / "slurm.log",
        cancel=True,
        timeout=SHARDED_TIMEOUT_S if sharded else WORKFLOW_TIMEOUT_S,
    )
    log = (tmp_path / "slurm.log").read_text()
    # Every job but the local `all` target must have gone through sbatch.
    remote_jobs = re.findall(r"^rule (\w+):$", log, flags=re.MULTILINE)
    submitted = re.findall(r"has been submitted with SLURM jobid \d+", log)
    assert remote_jobs, "the SLURM run scheduled no job"
    assert len(submitted) == len(remote_jobs), (remote_jobs, submitted)

    local = tmp_path / "local"
    _run(
        [*common, "-d", str(local), "--cores", "2", *targets],
        {**os.environ, "PATH": SBIN_PATH},
        tmp_path / "local.log",
        timeout=SHARDED_TIMEOUT_S if sharded else WORKFLOW_TIMEOUT_S,
    )

    slurm_files, local_files = _outputs(on_slurm), _outputs(local)
    assert sorted(slurm_files) == sorted(local_files)
    assert any(name.endswith(".tsv") for name in local_files), sorted(local_files)
    # provenance.json included: it holds checksums of every output and no time stamps.
    differ = [name for name in local_files if not _same_bytes(slurm_files[name], local_files[name])]
    assert not differ, f"SLURM and local outputs differ: {differ}"
