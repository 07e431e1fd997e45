import numpy as np
import pytest

from hierarchy.metrics import accuracy, mcnemar_exact, paired_bootstrap_difference


def test_mcnemar_matches_hand_computed_case():
    # b = 1, c = 6: two-sided exact p = 2 * P(X <= 1 | n=7, 0.5) = 2 * 8 / 128 = 0.125
    correct_a = np.array([True] * 10 + [True] + [False] * 6 + [False] * 3)
    correct_b = np.array([True] * 10 + [False] + [True] * 6 + [False] * 3)
    result = mcnemar_exact(correct_a, correct_b)
    assert result == {"b": 1, "c": 6, "p_value": pytest.approx(0.125)}


def test_mcnemar_without_discordant_pairs_and_bad_shapes():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == {"b": 0, "c": 0, "p_value": 1.0}
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
