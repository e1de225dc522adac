"""Every rule has a pinned conda env, and the envs pin what the tests run with.

``requirements.txt`` is the one source of truth for versions: ``make setup`` and CI
install it, and every ``envs/*.yaml`` must pin the same version of each package it
lists (conda channels are not reachable in CI, so the envs are checked, not solved).
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest
import yaml
from conftest import REPO

CONDA_TO_PYPI = {"matplotlib-base": "matplotlib"}
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def rule_blocks() -> dict[str, str]:
    """Map each rule name to its text in rules/*.smk and the Snakefile."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = path.read_text()
        # Named rules, and rules generated in a loop (`rule:` with a `name:` directive).
        starts = list(re.finditer(r"^\s*rule(?: (\w+))?:", text, flags=re.M))
        for index, match in enumerate(starts):
            end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
            name = match.group(1) or f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}"
            blocks[name] = text[match.start() : end]
    return blocks


def test_every_rule_that_runs_a_script_has_a_pinned_env() -> None:
    blocks = rule_blocks()
    assert blocks, "no rules found"
    for name, block in blocks.items():
        if "script:" not in block:
            continue
        match = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
        assert match, f"rule {name} has no conda: directive"
        assert (REPO / "rules" / match.group(1)).resolve().exists(), (name, match.group(1))


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_parses_and_pins_the_tested_versions(env_file) -> None:
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] and "defaults" not in env["channels"]
    pins = requirement_pins()
    for dependency in env["dependencies"]:
        assert isinstance(dependency, str), f"{env_file.name}: pip sections are not used"
        name, _, version = dependency.partition("=")
        assert version, f"{env_file.name}: {name} is not pinned"
        if name == "python":
            continue
        pypi_name = CONDA_TO_PYPI.get(name, name).lower()
        assert pypi_name in pins, f"{env_file.name}: {name} is not in requirements.txt"
        assert version == pins[pypi_name], f"{env_file.name}: {name}={version} != {pins[pypi_name]}"


def test_tests_run_with_the_pinned_versions() -> None:
    for name, version in requirement_pins().items():
        assert metadata.version(name) == version, f"installed {name} differs from requirements.txt"
