import numpy as np
import pytest
from crepes.extras import hinge
from scipy.special import softmax

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics.conformal import ConformalSets, conformal_evaluation, set_summary
from hierarchy.metrics.simulate import simulate_predictions


def exchangeable(n: int, skill: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from the probabilities themselves, so the probabilities are calibrated."""
    rng = np.random.default_rng(seed)
    proba = softmax(skill * rng.normal(size=(n, 4)), axis=1)
    y = np.array([rng.choice(4, p=p) for p in proba])
    return y, proba


@pytest.mark.parametrize("class_conditional", [False, True])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_coverage_about_one_minus_alpha_on_exchangeable_data(alpha, class_conditional):
    y_cal, p_cal = exchangeable(2000, 2.0, seed=0)
    y_test, p_test = exchangeable(4000, 2.0, seed=1)
    conformal = ConformalSets(class_conditional=class_conditional).fit(p_cal, y_cal)
    summary = set_summary(conformal.predict(p_test, alpha), y_test, TUMOR_CLASSES)
    assert summary["coverage"]["value"] == pytest.approx(1 - alpha, abs=0.025)
    if class_conditional:
        for row in summary["per_class"]:
            assert row["coverage"] == pytest.approx(1 - alpha, abs=0.05)


def test_sets_shrink_as_probabilities_sharpen():
    sizes = []
    for skill in (0.5, 2.0, 6.0):
        y_cal, p_cal = exchangeable(1000, skill, seed=2)
        y_test, p_test = exchangeable(1000, skill, seed=3)
        sets = ConformalSets().fit(p_cal, y_cal).predict(p_test, alpha=0.1)
        sizes.append(set_summary(sets, y_test, TUMOR_CLASSES)["mean_set_size"])
    assert sizes[0] > sizes[1] > sizes[2]
    assert sizes[2] < 1.3


def test_summary_agrees_with_crepes_evaluate():
    y_cal, p_cal = exchangeable(300, 1.5, seed=4)
    y_test, p_test = exchangeable(300, 1.5, seed=5)
    conformal = ConformalSets().fit(p_cal, y_cal)
    summary = set_summary(conformal.predict(p_test, 0.1), y_test, TUMOR_CLASSES)
    crepes = conformal.classifier_.evaluate(hinge(p_test), np.arange(4), y_test, confidence=0.9,
                                            smoothing=False, metrics=["error", "avg_c"])
    assert summary["coverage"]["value"] == pytest.approx(1 - crepes["error"])
    assert summary["mean_set_size"] == pytest.approx(crepes["avg_c"])


def test_set_summary_counts_by_hand():
    sets = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=bool)
    summary = set_summary(sets, np.array([0, 1, 1, 2]), TUMOR_CLASSES)
    assert summary["coverage"]["value"] == 0.75 and summary["coverage"]["successes"] == 3
    assert summary["mean_set_size"] == pytest.approx(5 / 4)
    assert summary["empty"] == 0.25 and summary["singleton"] == 0.25
    by_class = {row["class"]: row for row in summary["per_class"]}
    assert by_class["meningioma"] == {"class": "meningioma", "n": 2, "coverage": 0.5,
                                      "mean_set_size": 1.0}
    assert by_class["no_tumor"]["coverage"] is None


def test_conformal_evaluation_per_route_from_prediction_tables():
    calibration = simulate_predictions(400, classes=TUMOR_CLASSES, planes=PLANES,
                                       routes=("flat", "hierarchical"), skill=1.0, seed=0)
    evaluation = simulate_predictions(400, classes=TUMOR_CLASSES, planes=PLANES,
                                      routes=("flat", "hierarchical", "soft"), skill=1.0,
                                      seed=1)
    result = conformal_evaluation(calibration, evaluation, alpha=0.1)
    assert list(result["routes"]) == ["flat", "hierarchical"]
    flat = result["routes"]["flat"]
    assert flat["n_calibration"] == 400 and flat["n"] == 400
    assert flat["coverage"]["ci"][0] < 0.9 + 0.05 and flat["coverage"]["value"] > 0.8
    assert len(flat["per_class"]) == 4
    # a sharper evaluation set than the calibration one gets small sets
    sharp = simulate_predictions(400, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",), skill=8.0, seed=2)
    assert conformal_evaluation(calibration, sharp, routes=["flat"])["routes"]["flat"][
        "mean_set_size"] < flat["mean_set_size"]
    with pytest.raises(ValueError, match="not in both"):
        conformal_evaluation(calibration, evaluation, routes=["soft"])


def test_bad_input_gets_clear_errors():
    y, proba = exchangeable(50, 1.0, seed=6)
    with pytest.raises(RuntimeError, match="not fitted"):
        ConformalSets().predict(proba)
    with pytest.raises(ValueError, match="score must be"):
        ConformalSets(score="lac").fit(proba, y)
    with pytest.raises(ValueError, match=r"classes \[3\] have none"):
        ConformalSets(class_conditional=True).fit(proba, np.minimum(y, 2))
    conformal = ConformalSets().fit(proba, y)
    with pytest.raises(ValueError, match="alpha"):
        conformal.predict(proba, alpha=1.5)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        conformal.predict(proba[:, :3])


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels from the true probabilities, but the model under-states class 0 (a hard class)."""
    y, proba = exchangeable(n, 2.0, seed)
    shown = proba * np.array([0.25, 1, 1, 1])
    return y, shown / shown.sum(axis=1, keepdims=True)


def test_mondrian_sets_cover_every_class_on_a_separate_calibration_split():
    y_cal, p_cal = miscalibrated(3000, seed=10)  # the calibration split, seen by nothing else
    y_test, p_test = miscalibrated(4000, seed=11)
    alpha = 0.1
    marginal = set_summary(ConformalSets().fit(p_cal, y_cal).predict(p_test, alpha), y_test, TUMOR_CLASSES)
    mondrian = set_summary(ConformalSets(class_conditional=True).fit(p_cal, y_cal).predict(p_test, alpha),
                           y_test, TUMOR_CLASSES)
    # on average both hold, but only the Mondrian sets hold for the under-stated class
    assert marginal["coverage"]["value"] >= 1 - alpha - 0.02
    assert marginal["per_class"][0]["coverage"] < 1 - alpha - 0.05
    assert all(row["coverage"] >= 1 - alpha - 0.03 for row in mondrian["per_class"])


def test_sets_may_be_forbidden_to_be_empty():
    y_cal, p_cal = exchangeable(1000, 6.0, seed=4)
    y_test, p_test = exchangeable(2000, 6.0, seed=5)
    alpha = 0.3  # a loose target leaves many confident images with no class at all
    allowed = ConformalSets().fit(p_cal, y_cal).predict(p_test, alpha)
    forbidden = ConformalSets(allow_empty=False).fit(p_cal, y_cal).predict(p_test, alpha)
    assert (~allowed.any(axis=1)).mean() > 0.02 and forbidden.any(axis=1).all()
    # only the empty sets changed, each to the most probable class
    empty = ~allowed.any(axis=1)
    assert (forbidden[~empty] == allowed[~empty]).all()
    assert (forbidden[empty].argmax(axis=1) == p_test[empty].argmax(axis=1)).all()
    before, after = (set_summary(s, y_test, TUMOR_CLASSES) for s in (allowed, forbidden))
    assert after["empty"] == 0 and after["coverage"]["value"] >= before["coverage"]["value"]
