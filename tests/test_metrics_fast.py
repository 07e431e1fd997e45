"""The vectorised ``batch_*`` metrics used for bootstrap resamples equal scikit-learn's."""

from functools import partial

import numpy as np
import pytest
from sklearn import metrics as skm

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import (
    HEADLINE_METRICS,
    bootstrap_ci,
    evaluate_predictions,
    paired_bootstrap_difference,
    simulate_predictions,
)
from hierarchy.metrics.classification import (
    batch_class_aucs,
    batch_headline_scores,
    batched,
    class_aucs,
    headline_scores,
)
from hierarchy.metrics.intervals import bootstrap_cis, bootstrap_indices, bootstrap_samples

CLASSES = ("a", "b", "c", "d")
# scikit-learn warns about the degenerate subsets these tests compare on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*(single label|not in y_true):UserWarning")


def _case(rng: np.random.Generator, n: int, k: int = 4, ties: bool = False,
          absent: int | None = None, never_predicted: int | None = None):
    """Random labels and probabilities; optionally coarse (tied) scores, a class missing from the
    truth, or a class that never wins the arg-max."""
    labels = [c for c in range(k) if c != absent]
    y = rng.choice(labels, size=n)
    y[: len(labels)] = labels[:n]  # every remaining class present when n allows
    logits = 1.5 * np.eye(k)[y] + rng.normal(size=(n, k))
    if never_predicted is not None:
        logits[:, never_predicted] = -10.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if ties:
        proba = np.round(proba, 1)
    return y, proba


def _cases():
    rng = np.random.default_rng(11)
    cases = []
    for n in (2, 3, 5, 8, 40, 300):
        for ties in (False, True):
            cases.append(_case(rng, n, ties=ties))
            cases.append(_case(rng, n, ties=ties, absent=1))
            cases.append(_case(rng, n, ties=ties, never_predicted=2))
            cases.append(_case(rng, n, k=2, ties=ties))
    single = np.zeros(6, dtype=int)
    cases.append((single, np.tile([0.7, 0.2, 0.1], (6, 1))))  # one class only: AUCs undefined
    return cases


def _assert_same(fast: np.ndarray, slow: list[float]) -> None:
    np.testing.assert_allclose(fast, np.array(slow, dtype=float), rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", range(len(_cases())))
def test_batch_metrics_equal_sklearn(case):
    y, proba = _cases()[case]
    # resamples, stratified and not, so that classes also vanish from some rows
    rows = np.stack([*bootstrap_indices(y, 10, seed=case),
                     *bootstrap_indices(y, 10, seed=case, stratified=False)])
    for name, metric in HEADLINE_METRICS.items():
        fast = batched(metric)(y[rows], proba[rows])
        _assert_same(fast, [metric(y[i], proba[i]) for i in rows])
        assert np.isnan(fast).tolist() == [np.isnan(metric(y[i], proba[i])) for i in rows], name
    _assert_same(batch_class_aucs(y[rows], proba[rows]), [class_aucs(y[i], proba[i]) for i in rows])


def test_batch_headline_scores_equal_headline_scores():
    y, proba = _case(np.random.default_rng(5), 60, ties=True, absent=3)
    rows = np.stack(list(bootstrap_indices(y, 30, seed=2, stratified=False)))
    fast = batch_headline_scores(y[rows], proba[rows], CLASSES)
    slow = [headline_scores(y[i], proba[i], CLASSES) for i in rows]
    assert list(fast) == list(slow[0])
    for name in fast:
        _assert_same(fast[name], [s[name] for s in slow])


def test_batched_lookup():
    assert batched(partial(headline_scores, classes=CLASSES)).keywords == {"classes": CLASSES}
    assert batched(lambda y, p: 0.0) is None


def test_bootstrap_uses_the_same_resamples_as_a_per_resample_loop():
    y, proba = _case(np.random.default_rng(8), 50, ties=True)
    fast = bootstrap_cis(partial(headline_scores, classes=CLASSES), y, proba, n_resamples=40,
                         seed=3)
    slow = bootstrap_cis(lambda a, b: headline_scores(a, b, CLASSES), y, proba, n_resamples=40,
                         seed=3)
    assert fast.keys() == slow.keys()
    for name in fast:
        assert fast[name]["value"] == slow[name]["value"]
        np.testing.assert_allclose(fast[name]["ci"], slow[name]["ci"], rtol=0, atol=1e-12)
    metric = HEADLINE_METRICS["macro_auc"]
    np.testing.assert_allclose(
        bootstrap_samples(metric, y, proba, n_resamples=30, seed=4),
        bootstrap_samples(lambda a, b: metric(a, b), y, proba, n_resamples=30, seed=4),
        rtol=0, atol=1e-12)
    assert bootstrap_ci(metric, y, proba, n_resamples=30)["ci"] == pytest.approx(
        bootstrap_ci(lambda a, b: metric(a, b), y, proba, n_resamples=30)["ci"], abs=1e-12)
    other = np.roll(proba, 1, axis=0)
    fast_diff = paired_bootstrap_difference(y, proba, other, metric, n_resamples=30)
    slow_diff = paired_bootstrap_difference(y, proba, other, lambda a, b: metric(a, b),
                                            n_resamples=30)
    assert fast_diff["p_value"] == slow_diff["p_value"]
    np.testing.assert_allclose(fast_diff["ci"], slow_diff["ci"], rtol=0, atol=1e-12)


def test_evaluate_predictions_calls_scikit_learn_a_fixed_number_of_times(monkeypatch):
    """The bootstrap runs vectorised: scikit-learn is called as often with 200 resamples as with 20 (one call
    per resample made a 1,000-image evaluation take minutes)."""
    calls = []
    for name in ("roc_auc_score", "accuracy_score", "f1_score", "balanced_accuracy_score"):
        original = getattr(skm, name)
        monkeypatch.setattr(skm, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    pred = simulate_predictions(300, classes=TUMOR_CLASSES, planes=PLANES, seed=0)
    counts = []
    for n_bootstrap in (20, 200):
        calls.clear()
        evaluate_predictions(pred, n_bootstrap=n_bootstrap)
        counts.append(len(calls))
    assert counts[0] == counts[1] > 0
