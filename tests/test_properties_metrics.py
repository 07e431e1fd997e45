"""Properties of the metrics on random prediction tables: intervals hold their estimate, row order does
not matter, numbers agree with scikit-learn, and out-of-range probabilities are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from hierarchy.labels import TUMOR_CLASSES
from hierarchy.metrics import evaluate_predictions, wilson_interval
from hierarchy.metrics.classification import batch_headline_scores, headline_scores
from hierarchy.predictions import prob_column, probabilities

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
K = len(TUMOR_CLASSES)


@st.composite
def predictions(draw, min_size: int = 8, max_size: int = 40):
    """(y_true, proba): random labels with every class present, random probability rows."""
    n = draw(st.integers(min_size, max_size))
    y_true = np.array(draw(st.lists(st.integers(0, K - 1), min_size=n, max_size=n)))
    y_true[:K] = np.arange(K)
    weights = np.array(draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=K, max_size=K),
                                     min_size=n, max_size=n)))
    # Ties would make the predicted class depend on column order, not on the table.
    assume(all(len(set(row)) == K for row in weights))
    return y_true, weights / weights.sum(axis=1, keepdims=True)


def _table(y_true: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(proba, columns=[prob_column(c) for c in TUMOR_CLASSES])
    return frame.assign(id=[f"img_{i}" for i in range(len(y_true))], route="flat",
                        true_label=[TUMOR_CLASSES[i] for i in y_true],
                        pred_label=[TUMOR_CLASSES[i] for i in proba.argmax(axis=1)])


@SETTINGS
@given(predictions())
def test_agreement_with_scikit_learn(sample):
    y_true, proba = sample
    scores = headline_scores(y_true, proba)
    y_pred = proba.argmax(axis=1)
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert scores["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert scores["macro_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba, multi_class="ovr",
                                                                  average="macro"))
    onehot = np.eye(K)[y_true]
    assert scores["micro_auc"] == pytest.approx(skm.roc_auc_score(onehot.ravel(), proba.ravel()))
    batched = batch_headline_scores(y_true[None], proba[None])
    for name, value in scores.items():
        assert batched[name][0] == pytest.approx(value)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(predictions(), st.randoms(use_true_random=False))
def test_row_order_does_not_change_the_numbers(sample, random):
    y_true, proba = sample
    table = _table(y_true, proba)
    order = list(range(len(table)))
    random.shuffle(order)
    a = evaluate_predictions(table, n_bootstrap=5, seed=0)["routes"]["flat"]
    b = evaluate_predictions(table.iloc[order], n_bootstrap=5, seed=0)["routes"]["flat"]
    for name, value in a["headline"].items():
        assert b["headline"][name]["value"] == pytest.approx(value["value"]), name
    assert a["confusion"] == b["confusion"]
    for row_a, row_b in zip(a["per_class"], b["per_class"], strict=True):
        for key in ("tp", "fp", "fn", "tn", "recall_ci_low", "recall_ci_high", "auc"):
            assert row_a[key] == pytest.approx(row_b[key]), key
    for row in a["per_class"]:  # Wilson intervals hold their estimate
        for ratio in ("precision", "recall", "specificity", "npv"):
            if row[ratio] is not None:
                assert row[f"{ratio}_ci_low"] - 1e-12 <= row[ratio] <= row[f"{ratio}_ci_high"] + 1e-12


@SETTINGS
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.5, 0.999))
def test_wilson_interval_contains_the_proportion(counts, confidence):
    successes, n = counts
    low, high = wilson_interval(successes, n, confidence)
    assert 0.0 <= low <= successes / n <= high <= 1.0


@SETTINGS
@given(predictions(), st.data())
def test_probabilities_outside_0_1_are_refused_naming_the_row(sample, data):
    y_true, proba = sample
    table = _table(y_true, proba)
    row = data.draw(st.integers(0, len(table) - 1))
    shift = data.draw(st.floats(0.01, 5.0))
    first, second = data.draw(st.permutations(range(K)))[:2]
    table.loc[row, prob_column(TUMOR_CLASSES[first])] -= proba[row, first] + shift  # below 0
    table.loc[row, prob_column(TUMOR_CLASSES[second])] += proba[row, first] + shift  # sum stays 1
    with pytest.raises(ValueError, match=rf"row {row + 1} \(id 'img_{row}'.*outside \[0, 1\]"):
        probabilities(table)
