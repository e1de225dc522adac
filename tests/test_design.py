"""The design checks run before any job (cohortnorm.design) and the cluster-request sizing
(cohortnorm.resources): pure functions, no snakemake."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pandas as pd
import pytest

from cohortnorm import design, resources
from cohortnorm.errors import InputError


def settings(method="combat", covariates=("condition",), group="condition", **combat_seq):
    return {
        "filter": {"group": group},
        "batch_correction": {
            "method": method,
            "batch": "batch",
            "covariates": list(covariates),
            "combat_seq": {"group": None, "covariates": [], **combat_seq},
        },
    }


def sheet(batch, condition, **extra):
    frame = pd.DataFrame(
        {"sample": [f"S{i + 1}" for i in range(len(batch))], "batch": batch, "condition": condition}
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


BALANCED = dict(batch=list("aabbcc"), condition=list("xyxyxy"))


def refuse(frame, config, *needles):
    with pytest.raises(InputError) as error:
        design.check_design(frame, config, source="samples.tsv")
    message = str(error.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_a_balanced_design_passes() -> None:
    assert design.check_design(sheet(**BALANCED), settings(), source="samples.tsv") == []


@pytest.mark.parametrize("value", ["", "NA", "NaN", "N/A", " NA ", "#N/A", "null"])
@pytest.mark.parametrize(
    ("column", "key", "config"),
    [
        ("condition", "filter.group", settings(method="none", covariates=())),
        ("batch", "batch_correction.batch", settings()),
        ("site", "batch_correction.covariates", settings(covariates=("condition", "site"))),
        ("site", "batch_correction.combat_seq.covariates", settings("combat_seq", (), None)),
    ],
)
def test_a_missing_cell_in_any_used_column_stops(value, column, key, config) -> None:
    if key.endswith("combat_seq.covariates"):
        config["batch_correction"]["combat_seq"]["covariates"] = ["site"]
    frame = sheet(**BALANCED, site=list("pqqppq"))
    frame.loc[2, column] = value
    refuse(frame, config, f"column {column!r}", key, "'S3'", "Fill in", "remove those samples")


def test_none_is_a_level_not_a_missing_value() -> None:
    frame = sheet(batch=list("aabbcc"), condition=["none", "drug"] * 3)
    assert design.check_design(frame, settings(), source="s") == []


def test_batch_column_is_checked_for_qc_even_without_correction() -> None:
    frame = sheet(**BALANCED)
    frame.loc[0, "batch"] = "NA"
    refuse(frame, settings(method="none"), "batch_correction.batch", "'S1'")


def test_a_missing_column_is_named() -> None:
    refuse(sheet(**BALANCED), settings(covariates=("sex",)), "'sex'", "batch_correction.covariates")


def test_confounded_design_says_correction_would_remove_the_biology() -> None:
    frame = sheet(batch=list("aaabbb"), condition=list("xxxyyy"))
    for method in ("combat", "combat_seq"):
        message = refuse(
            frame,
            settings(method),
            "confounded",
            "batch a: x (3); batch b: y (3)",
            "remove the biology",
            "batch_correction.method: none",
        )
        assert ("ComBat-seq" if method == "combat_seq" else "ComBat refuses") in message


def test_combat_seq_group_confounded_with_batch_is_refused() -> None:
    frame = sheet(batch=list("aaabbb"), condition=list("xxxyyy"))
    config = settings("combat_seq", covariates=(), group=None)
    config["batch_correction"]["combat_seq"]["group"] = "condition"
    refuse(frame, config, "confounded", "'condition'")


def test_one_sample_batch_in_plain_words() -> None:
    frame = sheet(batch=list("aabbbc"), condition=list("xyxyxy"))
    refuse(frame, settings("combat_seq"), "batch(es) c", "single sample", "ComBat-seq needs")
    notes = design.check_design(frame, settings("combat"), source="s")
    assert notes and "mean only" in notes[0]
    refuse(frame, settings("combat_ref"), "batch(es) c", "single sample", "ComBat-ref needs")


def test_combat_ref_keeps_one_condition() -> None:
    frame = sheet(batch=list("aaabbb"), condition=list("xyxyxy"), sex=list("mffmmf"))
    config = settings("combat_ref", covariates=("condition", "sex"))
    refuse(frame, config, "ComBat-ref keeps one condition", "['condition', 'sex']", "combat_seq")
    assert design.check_design(frame, settings("combat_ref"), source="s") == []
    assert design.combat_ref_group(settings("combat_ref")["batch_correction"]) == "condition"
    assert design.combat_ref_group({"covariates": []}) is None
    config = settings("combat_ref", covariates=())
    config["batch_correction"]["combat_ref"] = {"group": "sex"}
    assert design.kept_covariates(config) == ["sex"]


def test_combat_ref_group_confounded_with_batch_is_refused() -> None:
    frame = sheet(batch=list("aaabbb"), condition=list("xxxyyy"))
    refuse(frame, settings("combat_ref"), "confounded", "'condition'", "ComBat-ref refuses")


def test_scran_clusters_column_is_checked() -> None:
    frame = sheet(batch=list("aaabbb"), condition=list("xyxyxy"))
    config = settings("none")
    config["normalization"] = {"size_factor_type": "scran", "scran": {"clusters": "cell_type"}}
    refuse(frame, config, "normalization.scran.clusters", "'cell_type'")


def test_copied_covariate_is_named() -> None:
    frame = sheet(**BALANCED, treatment=["ctl" if c == "x" else "drug" for c in "xyxyxy"])
    refuse(frame, settings(covariates=("condition", "treatment")), "'condition' and 'treatment'")


def test_constant_covariate_is_refused() -> None:
    frame = sheet(**BALANCED, sex=["f"] * 6)
    refuse(frame, settings(covariates=("condition", "sex")), "'sex'", "same value")


@pytest.mark.parametrize(
    ("batch", "condition", "covariates"),
    [(["A", "B"], ["x", "y"], ()), (["A", "A", "B"], ["x", "y", "x"], ("condition",))],
)
def test_no_residual_degrees_of_freedom(batch, condition, covariates) -> None:
    refuse(
        sheet(batch=batch, condition=condition),
        settings(covariates=covariates),
        "0 residual degrees of freedom",
        "Add samples",
    )


def test_single_batch_is_refused() -> None:
    refuse(sheet(batch=["a"] * 4, condition=list("xyxy")), settings(), "every sample is in batch")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("S1 ", "at its start or end"),
        ("S 1", "contains a space"),
        ("S{1}", "curly brace"),
        ("a/b", "slash"),
        ('S"1', "double quote"),
        ("", "empty"),
        ("NA", "empty or 'NA'"),
    ],
)
def test_sample_name_rule(name, needle) -> None:
    with pytest.raises(InputError) as error:
        design.check_sample_names(["ok", name], source="samples.tsv")
    assert needle in str(error.value) and "line 3" in str(error.value)


def test_ordinary_sample_names_pass() -> None:
    design.check_sample_names(["S1", "S1.bam", "$x$", "ctl_(rep-2)", "1"], source="s")


# ----------------------------------------------------------------------- resources


def test_requests_follow_the_stated_formula() -> None:
    cost = resources.RULE_COSTS["batch_correction_combat"]
    # 34,000 genes × 17,000 samples: 578 M cells, 4,624 MB dense.
    assert resources.mem_mb(cost, 34_000, 17_000) == int(np.ceil(500 + 1.5 * 3.05 * 4624))
    assert resources.runtime_min(cost, 34_000, 17_000) == int(np.ceil(5 + 3 * 0.5 * 578 / 60))
    assert resources.runtime_min(cost, 34_000, 17_000, attempt=2) == 2 * 20
    # Tiny inputs ask for the floors.
    assert resources.mem_mb(cost, 100, 4) == 1000
    assert resources.runtime_min(cost, 100, 4) == 6


def test_combat_at_gtex_scale_asks_for_minutes_not_days() -> None:
    for name, cost in resources.RULE_COSTS.items():
        # The dearer choices: non-parametric ComBat, the count-level GLM methods
        # (ComBat-seq, ComBat-ref), rlog and the full VST (transforms.vst.nsub: null) take
        # hours at GTEx scale, as in R (sharded_seq_block: ComBat-seq's gene blocks).
        keys = ("nonparametric", "combat_seq", "seq_block", "combat_ref", "rlog", "vst_full")
        if any(key in name for key in keys):
            continue
        assert resources.runtime_min(cost, 60_000, 17_000) < 120, name


def test_h5ad_shape_comes_from_metadata(tmp_path) -> None:
    anndata = pytest.importorskip("anndata")
    from scipy import sparse

    dense = tmp_path / "dense.h5ad"
    anndata.AnnData(np.ones((30, 200), dtype=np.float32)).write_h5ad(dense)
    assert resources.matrix_shape(dense) == (200, 30)
    packed = tmp_path / "sparse.h5ad"
    anndata.AnnData(sparse.random(30, 200, density=0.1, format="csr")).write_h5ad(packed)
    assert resources.matrix_shape(packed) == (200, 30)


def test_text_shape_estimate(tmp_path) -> None:
    counts = np.random.default_rng(0).integers(100, 1000, size=(2000, 5))
    frame = pd.DataFrame(counts, columns=[f"S{i}" for i in range(5)])
    frame.index = [f"G{i:05d}" for i in range(2000)]
    plain = tmp_path / "counts.tsv"
    frame.to_csv(plain, sep="\t", index_label="gene_id")
    packed = tmp_path / "counts.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        genes, samples = resources.matrix_shape(path)
        assert samples == 5 and abs(genes - 2000) < 200, (path, genes)


@pytest.mark.parametrize("kind", ["truncated_gz", "not_gzip", "directory", "missing", "empty"])
def test_unreadable_inputs_never_crash_the_sizing(tmp_path, kind) -> None:
    path = tmp_path / "counts.tsv.gz"
    if kind == "truncated_gz":
        path.write_bytes(gzip.compress(b"gene_id\tS1\n" + b"G\t1\n" * 10_000)[:40])
    elif kind == "not_gzip":
        path.write_bytes(b"gene_id\tS1\nG1\t4\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    shape = resources.matrix_shape(path)
    assert shape is None or all(isinstance(v, int) for v in shape)
    assert resources.matrix_shape(tmp_path / "x.h5ad") is None
    assert resources.matrix_shape(tmp_path / "x.parquet") is None


def test_gzip_trailer_gives_the_unpacked_size(tmp_path) -> None:
    path = tmp_path / "a.gz"
    body = b"x" * 100_000
    path.write_bytes(gzip.compress(body))
    assert struct.unpack("<I", path.read_bytes()[-4:])[0] == len(body)
    assert resources._text_size(path) == len(body)
