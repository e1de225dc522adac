"""The registries (cohortnorm.registry) against every list that must agree with them."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cohortnorm import edger, plots, registry, resources
from cohortnorm.errors import InputError
from cohortnorm.io import importers

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schemas" / "config.schema.yaml").read_text())


def _enum(*keys: str) -> list[str]:
    node = SCHEMA
    for key in keys:
        node = node["properties"][key]
    return list(node["enum"])


def test_schema_enums_equal_the_registry_keys() -> None:
    assert _enum("counts", "format") == list(registry.FORMATS)
    assert _enum("normalization", "method") == registry.normalizers("method")
    assert _enum("normalization", "size_factor_type") == registry.normalizers("size_factor_type")
    method = SCHEMA["properties"]["batch_correction"]["properties"]["method"]["anyOf"]
    assert method[0]["enum"] == ["none", *registry.BATCH_CORRECTORS]
    assert method[1]["items"]["enum"] == list(registry.BATCH_CORRECTORS)
    transforms = SCHEMA["properties"]["normalization"]["properties"]["transforms"]["items"]
    assert transforms["enum"] == registry.normalizers("transforms")
    sections = SCHEMA["properties"]["transforms"]["properties"]
    assert list(sections) == registry.normalizers("transform_section")


def test_every_registered_function_imports() -> None:
    references = [f.reader for f in registry.FORMATS.values()]
    references += [n.function for n in registry.NORMALIZERS.values()]
    references += [b.function for b in registry.BATCH_CORRECTORS.values()]
    references += [s.draw for s in registry.STAGE_FIGURES.values()]
    for reference in references:
        assert callable(registry.load(reference)), reference


def test_format_options_are_keywords_of_their_reader() -> None:
    for name, entry in registry.FORMATS.items():
        reader = registry.load(entry.reader)
        parameters = inspect.signature(reader).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        for keyword in entry.options:
            assert takes_any or keyword in parameters, (name, keyword)
        options = inspect.signature(importers.import_counts).parameters
        assert set(entry.options.values()) <= set(options), name


def test_quantifiers_supply_lengths_and_plain_matrices_do_not() -> None:
    assert registry.formats_of_kind("quantifier") == ["salmon", "kallisto", "rsem"]
    assert all(registry.FORMATS[name].supplies_lengths for name in ("salmon", "featurecounts"))
    assert not any(registry.FORMATS[name].supplies_lengths for name in ("matrix", "h5ad"))


def test_unknown_format_names_the_registered_ones() -> None:
    with pytest.raises(InputError, match="unknown counts format 'bam': use one of matrix, "):
        importers.import_counts("bam", "counts.tsv")


def test_edger_entries_are_the_methods_calc_norm_factors_implements() -> None:
    edger_entries = [
        name
        for name, entry in registry.NORMALIZERS.items()
        if entry.function == "cohortnorm.edger:calc_norm_factors"
    ]
    assert edger_entries == list(edger.NORM_METHODS)
    # The old alias is refused, as the schema refuses it.
    with pytest.raises(ValueError, match="unknown normalization method 'TMMwzp'"):
        edger.calc_norm_factors([[1.0, 2.0], [3.0, 4.0]], method="TMMwzp")


def test_normalizer_parameters_are_config_keys() -> None:
    section = SCHEMA["properties"]["normalization"]["properties"]
    keys = set(section)
    sections = SCHEMA["properties"]["transforms"]["properties"]
    for name, entry in registry.NORMALIZERS.items():
        if entry.selects == "transform_section":
            # A transform with options: its own section transforms.<name>.
            options = set(sections[name]["properties"])
            assert "enabled" in options, name
            assert set(entry.parameters.values()) <= options, name
        else:
            assert entry.selects in keys, name
            for key in entry.parameters.values():
                # "a.b": key b of the sub-section a (normalization.scran.sizes)
                head, _, tail = key.partition(".")
                assert head in keys, (name, key)
                if tail:
                    assert tail in section[head]["properties"], (name, key)
        is_transform = entry.selects in ("transforms", "transform_section")
        assert entry.output == ("matrix" if is_transform else "factor"), name
        allowed = {"lib_size", "size_factors", "design", "clusters", "sample_names"}
        assert set(entry.data) <= allowed, name
        if entry.output == "matrix":
            assert f"transform_{name}" in resources.RULE_COSTS, name


def test_batch_correctors_have_costs_captions_and_their_own_params_table() -> None:
    for name, entry in registry.BATCH_CORRECTORS.items():
        assert f"batch_correction_{name}" in resources.RULE_COSTS, name
        assert (REPO / entry.caption).is_file(), name
        assert entry.input in registry.BATCH_INPUTS, name
        # ComBat and ComBat-seq keep the documented batch/combat_params.tsv; any other
        # method writes its own table, so that methods never share one.
        shared = name in ("combat", "combat_seq")
        expected = "batch/combat_params" if shared else f"batch/{name}_params"
        assert entry.params == expected, name


def test_stage_figures_have_captions_and_one_drawing_function_each() -> None:
    for name, entry in registry.STAGE_FIGURES.items():
        assert (REPO / entry.caption).is_file(), name
        assert registry.load(entry.draw) is getattr(plots, f"stage_{name}")
    assert list(registry.STAGE_FIGURES) == ["boxplot", "density", "pca", "rle", "correlation", "ma"]


@pytest.mark.e2e
def test_the_old_tmmwzp_alias_stops_the_run_before_any_job(tmp_path: Path) -> None:
    from test_workflow import base_config, run_snakemake

    config = base_config(tmp_path, normalization={"method": "TMMwzp"})
    result = run_snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert (
        "key normalization.method: 'TMMwzp' is not one of ['TMM', 'TMMwsp', 'RLE', "
        "'upperquartile', 'none']. Fix it and rerun" in result.stdout + result.stderr
    )


def test_norm_transform_is_log2_of_deseq2_normalized_counts() -> None:
    from cohortnorm.deseq2 import norm_transform

    counts = np.array([[0.0, 3.0], [8.0, 1.0]])
    np.testing.assert_array_equal(
        norm_transform(counts, [2.0, 0.5]), np.log2(np.array([[1.0, 7.0], [5.0, 3.0]]))
    )
    with pytest.raises(ValueError, match="one positive, finite size factor per sample"):
        norm_transform(counts, [1.0, 0.0])


@pytest.mark.e2e
def test_a_registered_transform_runs_through_the_generic_rule(tmp_path: Path) -> None:
    """normalization.transforms: [norm_transform] on pasilla, against R's size factors."""
    from conftest import DATA
    from test_workflow import base_config, run_snakemake

    config = base_config(tmp_path, normalization={"transforms": ["norm_transform"]})
    config["batch_correction"] = {"method": "none"}
    target = str(tmp_path / "results" / "normalization" / "norm_transform.tsv")
    # The filtered counts deliverable too: rules hand matrices on as Arrow files, so the
    # TSV read below exists only when asked for.
    filtered_tsv = str(tmp_path / "results" / "counts" / "filtered_counts.tsv")
    result = run_snakemake(tmp_path, config, target, filtered_tsv)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    ours = pd.read_csv(target, sep="\t", index_col=0)
    filtered = pd.read_csv(
        tmp_path / "results" / "counts" / "filtered_counts.tsv", sep="\t", index_col=0
    )
    reference = DATA / "pasilla" / "reference" / "deseq2_size_factors.tsv.gz"
    size_factor = pd.read_csv(reference, sep="\t", index_col=0)["size_factor_filtered"]
    # DESeq2::normTransform(dds, f = log2, pc = 1) with R's size factors of the same genes.
    expected = np.log2(filtered.to_numpy() / size_factor.loc[filtered.columns].to_numpy() + 1)
    assert list(ours.columns) == list(filtered.columns)
    np.testing.assert_allclose(ours.to_numpy(), expected, rtol=1e-12)
