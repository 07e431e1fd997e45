import numpy as np
import pytest

from hierarchy.metrics import accuracy, macro_auc, mcnemar_exact, paired_bootstrap_difference
from hierarchy.metrics.paired import bootstrap_test


def test_mcnemar_matches_hand_computed_case():
    # b = 1, c = 6: two-sided exact p = 2 * P(X <= 1 | n=7, 0.5) = 2 * 8 / 128 = 0.125
    correct_a = np.array([True] * 10 + [True] + [False] * 6 + [False] * 3)
    correct_b = np.array([True] * 10 + [False] + [True] * 6 + [False] * 3)
    result = mcnemar_exact(correct_a, correct_b)
    assert result == {"b": 1, "c": 6, "p_value": pytest.approx(0.125), "mid_p": pytest.approx(9 / 128)}


def test_mcnemar_without_discordant_pairs_and_bad_shapes():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == {"b": 0, "c": 0, "p_value": 1.0, "mid_p": 1.0}
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact(same, same[:2])


def test_paired_bootstrap_difference():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    good = np.eye(3)[y] * 0.7 + 0.1
    noisy = np.where((rng.random(300) < 0.4)[:, None], np.roll(good, 1, axis=1), good)
    same = paired_bootstrap_difference(y, good, good, accuracy, n_resamples=100)
    assert same == {"difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}
    better = paired_bootstrap_difference(y, noisy, good, accuracy, n_resamples=200, seed=1)
    assert better["difference"] == pytest.approx(accuracy(y, good) - accuracy(y, noisy))
    assert 0 < better["ci"][0] < better["difference"] < better["ci"][1]
    assert better["p_value"] < 0.01
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_difference(y, good, good[:10], accuracy)


def test_mcnemar_mid_p_hand_computed():
    # b = 1, c = 6: mid-p = 2 * P(X <= 1) - P(X = 1) = 2 * 8/128 - 7/128 = 9/128
    correct_a = np.array([True] * 10 + [True] + [False] * 6)
    correct_b = np.array([True] * 10 + [False] + [True] * 6)
    assert mcnemar_exact(correct_a, correct_b)["mid_p"] == pytest.approx(9 / 128)
    balanced = mcnemar_exact(np.array([True, False]), np.array([False, True]))
    assert balanced["p_value"] == 1.0 and balanced["mid_p"] == pytest.approx(1.0)


def test_bootstrap_interval_and_p_value_agree():
    """The issue's contradiction (CI excluding 0 with p = 0.09) cannot happen: both come from one procedure."""
    rng = np.random.default_rng(5)
    y = np.arange(120) % 3
    for trial in range(30):
        a = rng.dirichlet([1, 1, 1], size=120) + np.eye(3)[y] * rng.uniform(0, 1)
        b = a + rng.normal(0, 0.3, a.shape) * np.eye(3)[y]
        a, b = np.clip(a, 1e-3, None), np.clip(b, 1e-3, None)
        a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
        for metric in (accuracy, macro_auc):
            result = paired_bootstrap_difference(y, a, b, metric, n_resamples=200, seed=trial)
            excludes = result["ci"][0] > 0 or result["ci"][1] < 0
            assert excludes == (result["p_value"] < 0.05), (trial, metric.__name__, result)


def test_bootstrap_test_on_known_samples():
    # 3% of resamples at or below 0: the 2.5% quantile is -1 and p = 2 * 0.03
    assert bootstrap_test(np.r_[np.full(30, -1.0), np.full(970, 1.0)]) == {"ci": [-1.0, 1.0],
                                                                          "p_value": pytest.approx(0.06)}
    # 1%: the 2.5% quantile is already +1, and p = 0.02 < 0.05
    assert bootstrap_test(np.r_[np.full(10, -1.0), np.full(990, 1.0)]) == {"ci": [1.0, 1.0],
                                                                          "p_value": pytest.approx(0.02)}
    assert bootstrap_test(np.ones(100))["p_value"] == pytest.approx(0.01)  # floor 1 / R
