import numpy as np
import pytest
from scipy.special import softmax

from hierarchy.metrics import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def _top_label_scores(n, confidence_to_accuracy, seed=0):
    """Rows whose top probability c sits on class j, true class j with probability f(c)."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    top = rng.integers(0, 4, n)
    proba = np.repeat(((1 - conf) / 3)[:, None], 4, axis=1)
    proba[np.arange(n), top] = conf
    right = rng.random(n) < confidence_to_accuracy(conf)
    other = (top + rng.integers(1, 4, n)) % 4
    return np.where(right, top, other), proba


def test_ece_near_zero_when_calibrated_and_large_when_not():
    y, proba = _top_label_scores(40000, lambda c: c)
    assert expected_calibration_error(y, proba) < 0.015
    y, proba = _top_label_scores(40000, lambda c: np.full_like(c, 0.3))
    assert expected_calibration_error(y, proba) > 0.3


def test_ece_and_reliability_on_hand_made_case():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    curve = reliability_curve(y, proba, n_bins=10)
    assert curve["count"] == [2, 2]
    assert curve["accuracy"] == [1.0, 0.5]
    # bins: {0.6, 0.6} all right -> gap 0.4; {0.9, 0.9} half right -> gap 0.4
    assert curve["confidence"] == pytest.approx([0.6, 0.9])
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(0.4)


def test_brier_score_is_mean_squared_distance_to_one_hot():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1])
    expected = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert brier_score(y, proba) == pytest.approx(expected)


def test_temperature_scaling_recovers_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(5000, 4))
    true_t = 2.5
    cumulative = softmax(logits / true_t, axis=1).cumsum(axis=1)
    y = (rng.random(5000)[:, None] > cumulative).sum(axis=1)
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)
    assert fit_temperature(logits - 7.0, y) == pytest.approx(fit_temperature(logits, y), rel=1e-3)


def test_apply_temperature_on_logits_and_probabilities():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(apply_temperature(logits, 2.0), softmax(logits / 2.0, axis=1))
    proba = softmax(logits, axis=1)
    np.testing.assert_allclose(apply_temperature(proba, 1.0), proba)
    np.testing.assert_allclose(apply_temperature(proba, 2.0), softmax(logits / 2.0, axis=1))
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(logits, 0.0)
