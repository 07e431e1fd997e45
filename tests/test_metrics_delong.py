"""DeLong's paired AUC test and AUC intervals, against hand-worked cases and DeLong's definition."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from hierarchy.metrics.delong import auc_interval, delong_covariance, delong_test


def test_delong_matches_a_hand_worked_example():
    # Labels 0,0,1,1,1; A = (.1,.2,.6,.7,.8) orders every pair right (AUC 1, no variance);
    # B = (.3,.6,.2,.7,.9): positives beat 0, 2, 2 of the 2 negatives -> placement values 0, 1, 1
    # (AUC 2/3, S10 = var(0,1,1) = 1/3), each negative is beaten by 2 of 3 positives (S01 = 0).
    # Var(AUC_B - AUC_A) = S10/m + S01/n = (1/3)/3 = 1/9, se = 1/3, z = (2/3 - 1)/(1/3) = -1,
    # p = 2 * (1 - Phi(1)) = 0.3173 (DeLong et al. 1988, eq. for V10, V01, S10, S01).
    positive = np.array([0, 0, 1, 1, 1], dtype=bool)
    a = np.array([0.1, 0.2, 0.6, 0.7, 0.8])
    b = np.array([0.3, 0.6, 0.2, 0.7, 0.9])
    result = delong_test(positive, a, b)
    assert result["auc_a"] == 1.0 and result["auc_b"] == pytest.approx(2 / 3)
    assert result["se"] == pytest.approx(1 / 3)
    assert result["z"] == pytest.approx(-1.0)
    assert result["p_value"] == pytest.approx(0.3173, abs=1e-4)
    assert result["ci"] == pytest.approx([-1 / 3 - 1.959964 / 3, -1 / 3 + 1.959964 / 3], abs=1e-5)


def direct_delong(positive, scores):
    """DeLong et al. (1988) by their definition: psi over every (positive, negative) pair, O(m n)."""
    pos, neg = scores[:, positive], scores[:, ~positive]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    return v10.mean(axis=1), np.cov(v10) / pos.shape[1] + np.cov(v01) / neg.shape[1]


def test_fast_delong_equals_the_definition_with_ties():
    rng = np.random.default_rng(3)
    positive = rng.random(60) < 0.4
    # rounded scores make many ties, which the mid-ranks must count as one half
    scores = np.round(np.vstack([rng.normal(positive * 1.0, 1), rng.normal(positive * 0.5, 1)]), 1)
    aucs, cov = delong_covariance(positive, scores)
    ref_aucs, ref_cov = direct_delong(positive, scores)
    np.testing.assert_allclose(aucs, ref_aucs)
    np.testing.assert_allclose(cov, ref_cov)
    assert aucs[0] == pytest.approx(roc_auc_score(positive, scores[0]))


def test_delong_interval_and_p_value_agree():
    rng = np.random.default_rng(0)
    for trial in range(40):
        positive = rng.random(80) < 0.5
        a = rng.normal(positive * 1.0, 1)
        b = a + rng.normal(positive * rng.uniform(-0.8, 0.8), 0.7)
        result = delong_test(positive, a, b)
        excludes = result["ci"][0] > 0 or result["ci"][1] < 0
        assert excludes == (result["p_value"] < 0.05), trial
    same = delong_test(positive, a, a)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_auc_interval_does_not_collapse_at_one():
    perfect = auc_interval(np.array([0] * 50 + [1] * 50, dtype=bool), np.arange(100.0))
    assert perfect["value"] == 1.0 and perfect["method"] == "score_hanley_mcneil"
    low, high = perfect["ci"]
    assert high == 1.0 and 0.9 < low < 1.0
    # the bound solves (1 - theta)^2 = z^2 V(theta) for the Hanley-McNeil variance with N* = 49
    theta, spread = low, 49
    variance = theta * (1 - theta) / 2500 * (1 + spread * (1 - theta) / (2 - theta) + spread * theta / (1 + theta))
    assert (1 - theta) ** 2 == pytest.approx(norm.ppf(0.975) ** 2 * variance)
    more = auc_interval(np.array([0] * 200 + [1] * 200, dtype=bool), np.arange(400.0))
    assert low < more["ci"][0] < 1.0
    worst = auc_interval(np.array([1] * 10 + [0] * 10, dtype=bool), np.arange(20.0))
    assert worst["value"] == 0.0 and worst["ci"][0] == 0.0 and 0 < worst["ci"][1] < 0.5


def test_auc_interval_uses_delong_on_the_logit_scale():
    rng = np.random.default_rng(1)
    positive = rng.random(200) < 0.5
    scores = rng.normal(positive * 1.5, 1)
    result = auc_interval(positive, scores)
    assert result["method"] == "delong_logit"
    assert 0 < result["ci"][0] < result["value"] < result["ci"][1] < 1
    # about as wide as the plain DeLong Wald interval
    assert result["ci"][1] - result["ci"][0] == pytest.approx(2 * 1.96 * result["se"], rel=0.1)
    with pytest.raises(ValueError, match="positive and negative"):
        auc_interval(np.ones(5, dtype=bool), np.arange(5.0))
