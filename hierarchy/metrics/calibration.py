"""Calibration: top-label reliability and ECE, multiclass Brier score, temperature scaling."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss

from hierarchy.metrics.classification import check_inputs, predicted


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


def fit_temperature(logits_val: np.ndarray, y_val: np.ndarray,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits_val / T)`` on validation data.

    ``logits_val`` may be logits or log-probabilities (softmax ignores a per-row shift). Fit on a
    validation split only, never on the test set you report.
    """
    y_val, logits_val = check_inputs(y_val, logits_val)
    labels = np.arange(logits_val.shape[1])

    def nll(log_t: float) -> float:
        return log_loss(y_val, softmax(logits_val / np.exp(log_t), axis=1), labels=labels)

    result = minimize_scalar(nll, bounds=np.log(bounds), method="bounded")
    if not result.success:
        raise RuntimeError(f"temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))


def apply_temperature(scores: np.ndarray, temperature: float, *,
                      are_probabilities: bool | None = None) -> np.ndarray:
    """Probabilities ``softmax(logits / T)``; probability input is turned into log-probabilities first.

    ``are_probabilities=None`` treats ``scores`` as probabilities when every row is non-negative and
    sums to 1; pass True or False to say which they are.
    """
    scores = np.asarray(scores, dtype=float)
    if temperature <= 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if scores.ndim != 2 or not np.all(np.isfinite(scores)):
        raise ValueError("scores must be a finite 2-D (n, n_classes) array")
    if are_probabilities is None:
        are_probabilities = bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0))
    if are_probabilities:
        with np.errstate(divide="ignore"):
            scores = log_softmax(np.log(scores), axis=1)
    return softmax(scores / temperature, axis=1)
