"""Temperature scaling: one temperature fitted on validation scores, applied to any scores.

It sits below both ``hierarchy.routing`` (a Router calibrates its routes) and ``hierarchy.metrics`` (which
reports calibration), so routing does not depend on metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import log_loss

from hierarchy.predictions import check_inputs


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
