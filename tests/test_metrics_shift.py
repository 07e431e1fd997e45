import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hierarchy.metrics.shift import accuracy_coverage_curve, ood_auroc


def test_ood_auroc_near_one_for_a_clear_shift_and_half_for_none():
    rng = np.random.default_rng(0)
    inside = rng.normal(size=300)
    clear = ood_auroc(inside, rng.normal(loc=5.0, size=200), n_bootstrap=200)
    assert clear["value"] > 0.99 and clear["ci"][0] > 0.98
    assert (clear["n_in"], clear["n_out"]) == (300, 200)
    none = ood_auroc(inside, rng.normal(size=200), n_bootstrap=200)
    assert none["ci"][0] < 0.5 < none["ci"][1]


def test_ood_auroc_value_matches_sklearn_and_seed_repeats():
    inside, outside = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.9, 0.3, 0.7])
    result = ood_auroc(inside, outside, n_bootstrap=50, seed=3)
    expected = roc_auc_score([0, 0, 0, 0, 1, 1, 1], np.r_[inside, outside])
    assert result["value"] == pytest.approx(expected)
    assert ood_auroc(inside, outside, n_bootstrap=50, seed=3)["ci"] == result["ci"]
    with pytest.raises(ValueError, match="scores_out"):
        ood_auroc(inside, np.array([np.nan]))


def test_accuracy_coverage_refers_the_most_atypical_first():
    # the two most atypical images are the two errors
    correct = np.array([True, True, False, True, False, True])
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.4])
    curve = accuracy_coverage_curve(correct, scores, coverages=[1.0, 0.8, 0.5])
    assert curve["coverage"] == [1.0, 0.8, 0.5]
    assert curve["n_kept"] == [6, 5, 3]
    assert curve["accuracy"] == pytest.approx([4 / 6, 4 / 5, 1.0])
    assert curve["threshold"] == pytest.approx([0.9, 0.8, 0.3])
    assert all(lo <= acc <= hi for lo, acc, hi in
               zip(curve["ci_low"], curve["accuracy"], curve["ci_high"], strict=True))


def test_accuracy_coverage_default_grid_and_errors():
    rng = np.random.default_rng(1)
    curve = accuracy_coverage_curve(rng.random(100) > 0.2, rng.random(100))
    assert curve["coverage"][0] == 0.5 and curve["coverage"][-1] == 1.0
    assert curve["n_kept"][-1] == 100
    with pytest.raises(ValueError, match="shape"):
        accuracy_coverage_curve(np.ones(3, dtype=bool), np.ones(4))
    with pytest.raises(ValueError, match="coverages"):
        accuracy_coverage_curve(np.ones(3, dtype=bool), np.ones(3), coverages=[0.0])
