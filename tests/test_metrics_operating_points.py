"""Tumour-vs-normal operating points and the decision curve on hand-worked cases."""

import numpy as np
import pytest

from hierarchy.metrics.operating_points import (
    clinical_reading,
    decision_curve,
    operating_point,
    operating_points,
    tumour_scores,
)

NEGATIVE = np.arange(1, 21) / 100  # 20 normal images scored 0.01 ... 0.20
POSITIVE = np.array([0.1, 0.15, 0.195, 0.3, 0.5])
LABELS = np.r_[np.zeros(20, dtype=bool), np.ones(5, dtype=bool)]
SCORES = np.r_[NEGATIVE, POSITIVE]


def test_sensitivity_at_fixed_specificity():
    # 95% of 20 normals = 19: threshold at the 19th lowest normal score (0.19), above it 3 of 5 tumours
    at95 = operating_point(LABELS, SCORES, specificity=0.95, n_resamples=200)
    assert (at95["threshold"], at95["achieved"], at95["value"]) == (0.19, 0.95, 0.6)
    # 99% needs all 20 normals below: threshold 0.20, 2 of 5 tumours above
    at99 = operating_point(LABELS, SCORES, specificity=0.99, n_resamples=200)
    assert (at99["threshold"], at99["achieved"], at99["value"]) == (0.2, 1.0, 0.4)
    assert at95["ci"][0] <= at95["value"] <= at95["ci"][1] and at95["ci"][1] - at95["ci"][0] > 0.2


def test_specificity_at_fixed_sensitivity():
    # 95% of 5 tumours rounds up to all 5: threshold at the lowest tumour score 0.1; 9 normals lie below it
    result = operating_point(LABELS, SCORES, sensitivity=0.95, n_resamples=200)
    assert (result["threshold"], result["achieved"], result["value"]) == (0.1, 1.0, 0.45)
    both = operating_points(LABELS, SCORES, n_resamples=50)
    assert set(both["sensitivity_at_specificity"]) == {"0.95", "0.99"}
    assert both["specificity_at_sensitivity"]["0.99"]["value"] == 0.45


def test_operating_point_errors():
    with pytest.raises(ValueError, match="exactly one"):
        operating_point(LABELS, SCORES)
    with pytest.raises(ValueError, match="both tumour and normal"):
        operating_point(np.ones(3, dtype=bool), np.arange(3.0), specificity=0.9)


def test_decision_curve_hand_worked():
    positive = np.array([True, True, False, False])
    scores = np.array([0.9, 0.4, 0.6, 0.1])
    curve = decision_curve(positive, scores, thresholds=[0.2, 0.5])
    # p_t 0.2: 2 TP, 1 FP of 4, odds 1/4 -> 0.5 - 0.0625; treat all 0.5 - 0.5/4
    # p_t 0.5: 1 TP, 1 FP, odds 1 -> 0; treat all 0.5 - 0.5
    assert curve["model"] == pytest.approx([0.4375, 0.0])
    assert curve["treat_all"] == pytest.approx([0.375, 0.0]) and curve["treat_none"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="strictly between"):
        decision_curve(positive, scores, thresholds=[0.0])


def test_clinical_reading_of_four_class_probabilities():
    classes = ("glioma", "meningioma", "no_tumor", "pituitary")
    y = np.array([0, 1, 2, 2, 3])
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.1, 0.1, 0.8, 0.0],
                      [0.3, 0.1, 0.6, 0.0], [0.1, 0.1, 0.1, 0.7]])
    tumour, score = tumour_scores(y, proba, classes)
    assert tumour.tolist() == [True, True, False, False, True]
    np.testing.assert_allclose(score, [0.9, 0.8, 0.2, 0.4, 0.9])
    reading = clinical_reading(y, proba, classes, n_resamples=20)
    assert reading["sensitivity_at_specificity"]["0.95"]["value"] == 1.0
    assert len(reading["decision_curve"]["threshold"]) == 99
    assert clinical_reading(np.array([0, 1]), proba[:2], classes) is None
