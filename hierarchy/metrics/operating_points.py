"""Tumour-vs-normal read as a clinician would: sensitivity at fixed specificity (and the reverse), and a
decision curve.

The four-class probabilities become one binary score, ``1 - p(no_tumour)`` (:func:`tumour_scores`).
An operating point fixes the threshold on the images themselves: for a target specificity the threshold is
the lowest one whose specificity on the normal images reaches the target, and the sensitivity at it is
reported (and the reverse for a target sensitivity). Its interval is a percentile bootstrap that
resamples tumour and normal images separately and chooses the threshold again in every resample, so
the uncertainty of the threshold itself is in the interval.

The decision curve (Vickers & Elkin 2006, Med Decis Making 26:565) gives the net benefit of acting on
the images whose score reaches a threshold probability ``p_t``: ``TP/n - FP/n * p_t / (1 - p_t)``, beside
treating every image (``prevalence - (1 - prevalence) p_t / (1 - p_t)``) and none (0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hierarchy.labels import NO_TUMOR
from hierarchy.metrics.classification import check_inputs
from hierarchy.metrics.intervals import _check_confidence, percentile_interval

TARGETS = (0.95, 0.99)
DECISION_THRESHOLDS = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2))


def tumour_scores(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str],
                  normal: str = NO_TUMOR) -> tuple[np.ndarray, np.ndarray]:
    """``(tumour, score)``: whether each image holds a tumour, and its tumour probability ``1 - p(normal)``;
    ``classes`` names the columns of ``proba`` (the data's own label set, no default)."""
    y_true, proba = check_inputs(y_true, proba)
    if normal not in classes:
        raise ValueError(f"the normal class {normal!r} is not among the classes {list(classes)}")
    k = list(classes).index(normal)
    return y_true != k, 1.0 - proba[:, k]


def _check_binary(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive, scores = np.asarray(positive, dtype=bool), np.asarray(scores, dtype=float)
    if positive.shape != scores.shape or positive.ndim != 1:
        raise ValueError(f"positive and scores must be 1-D and paired, got {positive.shape} and {scores.shape}")
    if positive.all() or not positive.any():
        raise ValueError("an operating point needs both tumour and normal images")
    return positive, scores


def _at_specificity(pos: np.ndarray, neg: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of resamples: threshold (call positive when score > t), specificity, sensitivity."""
    k = max(1, int(np.ceil(round(target * neg.shape[1], 9))))
    threshold = np.sort(neg, axis=1)[:, k - 1]
    return (threshold, np.mean(neg <= threshold[:, None], axis=1), np.mean(pos > threshold[:, None], axis=1))


def _at_sensitivity(pos: np.ndarray, neg: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of resamples: threshold (call positive when score >= t), sensitivity, specificity."""
    k = max(1, int(np.ceil(round(target * pos.shape[1], 9))))
    threshold = -np.sort(-pos, axis=1)[:, k - 1]
    return (threshold, np.mean(pos >= threshold[:, None], axis=1), np.mean(neg < threshold[:, None], axis=1))


def operating_point(positive: np.ndarray, scores: np.ndarray, *, specificity: float | None = None,
                    sensitivity: float | None = None, n_resamples: int = 1000, seed: int = 0,
                    confidence: float = 0.95) -> dict:
    """Sensitivity at a target ``specificity``, or specificity at a target ``sensitivity`` (give one).

    Returns
    -------
    dict
        ``{"target": "specificity" | "sensitivity", "target_value", "threshold", "achieved" (the target
        measure at the threshold, at least the target), "value" (the other measure), "ci" (bootstrap,
        threshold re-chosen per resample), "n_positive", "n_negative"}``.
    """
    if (specificity is None) == (sensitivity is None):
        raise ValueError("give exactly one of specificity= or sensitivity=")
    target = specificity if specificity is not None else sensitivity
    if not 0 < target <= 1:
        raise ValueError(f"the target must be in (0, 1], got {target}")
    _check_confidence(confidence)
    positive, scores = _check_binary(positive, scores)
    pos, neg = scores[positive], scores[~positive]
    rule = _at_specificity if specificity is not None else _at_sensitivity
    threshold, achieved, value = (float(v[0]) for v in rule(pos[None], neg[None], target))
    rng = np.random.default_rng(seed)
    resampled_pos = pos[rng.integers(0, len(pos), size=(n_resamples, len(pos)))]
    resampled_neg = neg[rng.integers(0, len(neg), size=(n_resamples, len(neg)))]
    samples = rule(resampled_pos, resampled_neg, target)[2]
    return {"target": "specificity" if specificity is not None else "sensitivity", "target_value": target,
            "threshold": threshold, "achieved": achieved, "value": value,
            "ci": percentile_interval(samples, confidence), "n_positive": int(len(pos)),
            "n_negative": int(len(neg))}


def operating_points(positive: np.ndarray, scores: np.ndarray, *, targets: Sequence[float] = TARGETS,
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """``{"sensitivity_at_specificity": {target: ...}, "specificity_at_sensitivity": {target: ...}}`` of
    :func:`operating_point` at every target (keys are the targets as strings, e.g. ``"0.95"``)."""
    options = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    return {"sensitivity_at_specificity": {str(t): operating_point(positive, scores, specificity=t, **options)
                                           for t in targets},
            "specificity_at_sensitivity": {str(t): operating_point(positive, scores, sensitivity=t, **options)
                                           for t in targets}}


def decision_curve(positive: np.ndarray, scores: np.ndarray,
                   thresholds: Sequence[float] = DECISION_THRESHOLDS) -> dict[str, list[float]]:
    """Net benefit of acting on ``scores >= p_t`` at each threshold probability ``p_t`` in (0, 1), beside
    treating all and none: ``{"threshold", "model", "treat_all", "treat_none"}`` (lists) and ``"prevalence"``
    (the largest net benefit any strategy can reach)."""
    positive, scores = _check_binary(positive, scores)
    t = np.asarray(thresholds, dtype=float)
    if t.ndim != 1 or np.any((t <= 0) | (t >= 1)):
        raise ValueError("decision thresholds must be probabilities strictly between 0 and 1")
    n = len(positive)
    called = scores[None, :] >= t[:, None]
    odds = t / (1 - t)
    true_pos = (called & positive).sum(axis=1) / n
    false_pos = (called & ~positive).sum(axis=1) / n
    prevalence = positive.mean()
    return {"threshold": t.tolist(), "model": (true_pos - false_pos * odds).tolist(),
            "treat_all": (prevalence - (1 - prevalence) * odds).tolist(), "treat_none": [0.0] * len(t),
            "prevalence": float(prevalence)}


def clinical_reading(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict | None:
    """Operating points and decision curve of the tumour-vs-normal reading of four-class predictions;
    None when the images are all tumours or all normal (nothing to trade off)."""
    positive, scores = tumour_scores(y_true, proba, classes)
    if positive.all() or not positive.any():
        return None
    return {"score": f"1 - p({NO_TUMOR})",
            **operating_points(positive, scores, n_resamples=n_resamples, seed=seed, confidence=confidence),
            "decision_curve": decision_curve(positive, scores)}
