"""The batch layer every batch corrector shares (cohortnorm.batch, cohortnorm.model_matrix)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cohortnorm import batch as batch_layer
from cohortnorm.combat import combat
from cohortnorm.combat_seq import combat_seq
from cohortnorm.errors import InputError
from cohortnorm.model_matrix import batch_factor, factor_levels

# Labels that differ in case: R's factor() (ICU collation) puts "a" before "B"; a plain
# code-point sort (pandas, Python) puts "B" first.
LABELS = ["B", "a", "B", "a", "B", "a", "B", "a"]


def _counts() -> np.ndarray:
    rng = np.random.default_rng(3)
    counts = rng.poisson(40, size=(60, len(LABELS)))
    counts[:, [0, 2, 4, 6]] *= 2
    return counts


def test_levels_follow_r_for_every_method() -> None:
    assert factor_levels(LABELS) == ["a", "B"]
    assert sorted(set(LABELS)) == ["B", "a"]  # what a plain sort would give
    levels, index = batch_factor(LABELS, len(LABELS))
    assert levels == ["a", "B"] and index.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    counts = _counts()
    assert combat_seq(counts, LABELS).batches == ["a", "B"]
    assert combat(np.log2(counts + 1.0), LABELS).batch_levels == ["a", "B"]


def test_a_categorical_batch_keeps_its_order_in_both_methods() -> None:
    order = pd.Categorical(LABELS, categories=["B", "a"])
    counts = _counts()
    assert combat_seq(counts, order).batches == ["B", "a"]
    assert combat(np.log2(counts + 1.0), order).batch_levels == ["B", "a"]


def test_confounded_design_gets_sva_sentence_then_the_columns_in_both_methods() -> None:
    counts = _counts()
    site = np.array([1.0 if label == "B" else 0.0 for label in LABELS])
    with pytest.raises(InputError) as seq_error:
        combat_seq(counts, LABELS, covariates=site[:, None], covariate_names=["siteX"])
    with pytest.raises(InputError) as combat_error:
        combat(
            np.log2(counts + 1.0),
            LABELS,
            np.column_stack([np.ones(len(LABELS)), site]),
            covariate_names=["(Intercept)", "siteX"],
        )
    seq_text, combat_text = str(seq_error.value), str(combat_error.value)
    assert seq_text.startswith(
        "The covariate is confounded with batch! Remove the covariate and rerun ComBat-Seq "
        "(sva's message): covariate column 'siteX' takes a single value within each batch; "
        "it is non-zero only in batch(es) B."
    )
    assert combat_text.startswith(
        "The covariate is confounded with batch! Remove the covariate and rerun ComBat "
        "(sva's message): covariate column 'siteX' takes a single value within each batch; "
        "it is non-zero only in batch(es) B."
    )


def test_params_table_is_batch_major_with_the_method_estimates() -> None:
    table = batch_layer.params_table(
        ["a", "B"], ["g1", "g2", "g3"], gamma_hat=np.arange(6.0).reshape(3, 2)
    )
    assert table["batch"].tolist() == ["a", "a", "a", "B", "B", "B"]
    assert table["gene_id"].tolist() == ["g1", "g2", "g3"] * 2
    assert table["gamma_hat"].tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_both_correctors_take_one_batch_input() -> None:
    counts = _counts()
    samples = [f"s{i}" for i in range(len(LABELS))]
    values = pd.DataFrame(counts, index=[f"g{i}" for i in range(60)], columns=samples)
    sheet = pd.DataFrame({"batch": LABELS}, index=pd.Index(samples, name="sample"))
    settings = {
        "batch": "batch",
        "covariates": [],
        "combat": {"parametric": True, "mean_only": False, "ref_batch": None},
        "combat_seq": {"group": None, "covariates": [], "shrink": False},
    }
    seq = batch_layer.correct_combat_seq(batch_layer.BatchInput(values, sheet, settings))
    assert seq.adjusted.shape == counts.shape
    assert list(seq.params.columns[:2]) == ["batch", "gene_id"]
    assert seq.params["batch"].iloc[0] == "a"
    logs = batch_layer.BatchInput(np.log2(values + 1.0), sheet, settings)
    adjusted = batch_layer.correct_combat(logs)
    assert adjusted.params["batch"].iloc[0] == "a"
    assert adjusted.notes[0] == "ComBat (parametric) over 2 batches, covariates none"
