import numpy as np
import pytest

from hierarchy.metrics import bootstrap_ci, combined_interval, proportion, wilson_interval
from hierarchy.metrics.intervals import bootstrap_indices


def _accuracy(y, proba):
    return float(np.mean(proba.argmax(1) == y))


def test_wilson_matches_hand_computed_value():
    # 8/10 at 95%: centre (0.8 + z^2/20) / (1 + z^2/10), z = 1.959964 -> [0.4902, 0.9433]
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.49016, abs=1e-4) and hi == pytest.approx(0.94332, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    lo90, hi90 = wilson_interval(8, 10, confidence=0.90)
    assert lo < lo90 and hi90 < hi


@pytest.mark.parametrize("successes,n,confidence,expected", [
    # bounds of the hand-written score formula this project used before scipy's binomtest
    (0, 10, 0.95, (0.0, 0.2775327998628892)),
    (3, 10, 0.90, (0.12687658390319786, 0.5583002041301649)),
    (47, 50, 0.95, (0.8378290831116182, 0.979385029651026)),
    (1, 1, 0.99, (0.13097754328018596, 1.0)),
    (7, 13, 0.80, (0.36713205286258244, 0.7011628815276586)),
])
def test_wilson_agrees_with_the_score_formula(successes, n, confidence, expected):
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, abs=1e-12)


def test_proportion_of_an_empty_group_is_a_gap():
    assert proportion(0, 0) == {"value": None, "ci": [None, None], "successes": 0, "n": 0}
    filled = proportion(8, 10, 0.95)
    assert filled["value"] == 0.8 and filled["ci"] == list(wilson_interval(8, 10))


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=95)


def test_intervals_cover_the_true_accuracy_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    n, truth, wilson_hits, boot_hits = 200, 0.9, 0, 0
    for trial in range(200):
        y = np.arange(n) % 2
        correct = rng.random(n) < truth
        proba = np.eye(2)[np.where(correct, y, 1 - y)]
        lo, hi = wilson_interval(int(correct.sum()), n)
        wilson_hits += lo <= truth <= hi
        ci = bootstrap_ci(_accuracy, y, proba, n_resamples=200, seed=trial)["ci"]
        boot_hits += ci[0] <= truth <= ci[1]
    assert 0.90 <= wilson_hits / 200 <= 0.99
    assert 0.88 <= boot_hits / 200 <= 0.99


def test_bootstrap_is_seeded_and_stratified():
    y = np.array([0] * 30 + [1] * 10)
    proba = np.eye(2)[y]
    proba[:5] = [0.2, 0.8]
    first = bootstrap_ci(_accuracy, y, proba, n_resamples=100, seed=7)
    assert first == bootstrap_ci(_accuracy, y, proba, n_resamples=100, seed=7)
    assert first["value"] == pytest.approx(35 / 40)
    assert first["ci"][0] < first["value"] < first["ci"][1]
    for idx in bootstrap_indices(y, 20, seed=1):
        assert np.bincount(y[idx]).tolist() == [30, 10]
    assert any(np.bincount(y[idx], minlength=2)[1] != 10
               for idx in bootstrap_indices(y, 20, seed=1, stratified=False))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(_accuracy, y, proba, n_resamples=0)


def test_cluster_bootstrap_draws_whole_groups():
    from hierarchy.metrics.intervals import cluster_bootstrap_indices
    y = np.array([0, 0, 0, 1, 1, 2])
    groups = np.array([7, 7, 3, 5, 5, 9])
    for rows in cluster_bootstrap_indices(y, groups, 20, seed=0):
        drawn = groups[rows]
        for g in (7, 5):  # both members of a two-image group come together
            assert np.sum(drawn == g) % 2 == 0
        # stratified by each group's class: two class-0 groups, one class-1, one class-2 group per resample
        assert len(set(rows)) <= len(rows) and np.sum(np.isin(drawn, [7, 3])) in (2, 3, 4)
    with pytest.raises(ValueError, match="one group per image"):
        next(cluster_bootstrap_indices(y, groups[:3], 1, seed=0))


def test_cluster_bootstrap_is_not_fooled_by_duplicates():
    """Copying every image five times narrows a plain bootstrap interval ~sqrt(5)-fold, not a cluster one."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    proba = np.eye(2)[np.where(rng.random(200) < 0.8, y, 1 - y)]
    base = bootstrap_ci(_accuracy, y, proba, n_resamples=400, seed=1)
    y5, proba5, groups = np.repeat(y, 5), np.repeat(proba, 5, axis=0), np.repeat(np.arange(200), 5)
    naive = bootstrap_ci(_accuracy, y5, proba5, n_resamples=400, seed=1)
    cluster = bootstrap_ci(_accuracy, y5, proba5, n_resamples=400, seed=1, groups=groups)

    def width(result):
        return result["ci"][1] - result["ci"][0]
    assert cluster["value"] == base["value"]
    assert width(naive) < 0.6 * width(base)
    assert 0.75 < width(cluster) / width(base) < 1.33


def test_combined_interval_adds_between_model_and_test_sampling_variance():
    # two models: 0.80 and 0.90 (between-model variance 0.005), bootstrap variances 0.01 and 0.03 (mean 0.02)
    result = combined_interval([0.80, 0.90], [0.01, 0.03])
    assert result["mean"] == pytest.approx(0.85) and result["k"] == 2
    assert result["between_variance"] == pytest.approx(0.005) and result["within_variance"] == pytest.approx(0.02)
    assert result["total_variance"] == pytest.approx(0.025) and result["sd"] == pytest.approx(np.sqrt(0.005))
    half = 1.959964 * np.sqrt(0.025)
    assert result["ci"] == pytest.approx([0.85 - half, 0.85 + half], abs=1e-6)
    # the interval and the p-value agree: 0 sits on the 95% bound exactly when p = 0.05
    edge = combined_interval([half, half], [0.025, 0.025])
    assert edge["ci"][0] == pytest.approx(0.0, abs=1e-6) and edge["p_value"] == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ValueError, match="at least two models"):
        combined_interval([0.9], [0.01])
