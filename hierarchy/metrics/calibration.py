"""Calibration: top-label reliability and ECE, multiclass Brier score, temperature scaling."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss

from hierarchy.metrics.classification import predicted
from hierarchy.predictions import check_inputs


def reliability_curve(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """Top-label reliability over ``n_bins`` equal-width confidence bins on [0, 1].

    Returns, for the non-empty bins only, ``{"bin_lower", "bin_upper", "confidence" (mean top
    probability), "accuracy" (fraction correct), "count"}``. A confidence on a bin edge falls in the
    upper bin (1.0 falls in the last one).
    """
    y_true, proba = check_inputs(y_true, proba)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    confidence = proba.max(axis=1)
    correct = (predicted(proba) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    filled = count > 0
    return {"bin_lower": edges[:-1][filled].tolist(), "bin_upper": edges[1:][filled].tolist(),
            "confidence": (conf_sum[filled] / count[filled]).tolist(),
            "accuracy": (correct_sum[filled] / count[filled]).tolist(),
            "count": count[filled].astype(int).tolist()}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: the count-weighted mean |accuracy - confidence| over equal-width bins."""
    curve = reliability_curve(y_true, proba, n_bins)
    count = np.array(curve["count"], dtype=float)
    gap = np.abs(np.array(curve["accuracy"]) - np.array(curve["confidence"]))
    return float(np.sum(count * gap) / count.sum())


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multiclass Brier score: mean over images of the squared distance to the one-hot truth."""
    y_true, proba = check_inputs(y_true, proba)
    return float(brier_score_loss(y_true, proba, labels=np.arange(proba.shape[1])))
