"""provenance.json: input checksums, the resolved config and package versions."""

import hashlib
import json
import platform
from importlib import metadata

from cohortnorm.io.tables import atomic_output
from cohortnorm.runner import run

PACKAGES = [
    "cohortnorm",
    "numpy",
    "pandas",
    "scipy",
    "pyarrow",
    "anndata",
    "h5py",
    "pydeseq2",
    "matplotlib",
    "snakemake",
]


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version(package: str) -> str | None:
    """The installed version of `package`, or None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def main(smk, logger):
    inputs = {
        name: list(smk.input[name]) if not isinstance(smk.input[name], str) else [smk.input[name]]
        for name in smk.input.keys()
        if name not in ("outputs", "settings")
    }
    record = {
        "inputs": {name: {path: sha256(path) for path in paths} for name, paths in inputs.items()},
        "outputs": {path: sha256(path) for path in smk.input.outputs},
        "config": smk.params.config,
        "python": platform.python_version(),
        "packages": {name: version(name) for name in PACKAGES},
    }
    with atomic_output(smk.output[0]) as temporary:
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    logger.info(
        "recorded %d input and %d output checksums", len(record["inputs"]), len(record["outputs"])
    )


run(main, snakemake)
