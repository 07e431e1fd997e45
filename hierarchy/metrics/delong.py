"""DeLong's test for two correlated ROC AUCs, and AUC intervals that stay honest at AUC = 1.

The AUC of a score is the Mann-Whitney statistic: the share of (positive, negative) pairs the score
orders correctly, ties counting one half. DeLong, DeLong & Clarke-Pearson (1988, Biometrics 44:837)
estimate the covariance of several AUCs on the same images from each image's *placement value* (its
share of correctly ordered pairs); Sun & Xu (2014, IEEE Signal Process. Lett. 21:1389) compute the
placement values from mid-ranks in O(n log n), which is what :func:`delong_covariance` does.

Intervals (:func:`auc_interval`):

- ``"delong_logit"``: DeLong's standard error, moved to the logit scale by the delta method, so the
  interval stays inside (0, 1).
- ``"score_hanley_mcneil"``, used when DeLong's variance is 0 (the AUC is 0 or 1: every pair ordered
  one way): the AUC is treated like a proportion and its interval found as a Wilson-type score interval,
  ``{theta : (AUC - theta)^2 <= z^2 V(theta)}``, with ``V`` the Hanley & McNeil (1982, Radiology
  143:29) variance at ``theta``, its ``m - 1`` and ``n - 1`` (``m`` positives, ``n`` negatives) both
  replaced by their mean ``(m + n) / 2 - 1`` as in Newcombe (2006, Stat Med 25:559). A perfect AUC thus gets ``[lower < 1, 1]``, narrowing as
  images are added, instead of the [1, 1] a bootstrap gives.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm, rankdata

from hierarchy.metrics.intervals import _check_confidence

_EDGE = 1e-12


def _binary(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive = np.asarray(positive, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if positive.ndim != 1 or scores.shape[1] != len(positive):
        raise ValueError(f"scores must be (n,) or (k, n) with n = {len(positive)} labels, got {scores.shape}")
    if positive.all() or not positive.any():
        raise ValueError("an AUC needs both positive and negative images")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return positive, scores


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of ``k`` scores on the same images and DeLong's ``(k, k)`` covariance matrix of them.

    Parameters
    ----------
    positive
        Boolean ``(n,)``: the images of the positive class.
    scores
        ``(n,)`` or ``(k, n)``: higher means more likely positive.

    Returns
    -------
    tuple
        ``(aucs (k,), covariance (k, k))``; the covariance is ``S10 / m + S01 / n`` with ``S10``
        (``S01``) the sample covariance of the positives' (negatives') placement values.
    """
    positive, scores = _binary(positive, scores)
    pos, neg = scores[:, positive], scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    # Sun & Xu: mid-ranks within each group and in the pooled sample give the placement values
    pooled = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (pooled[:, :m] - rankdata(pos, axis=1)) / n  # share of negatives each positive beats
    v01 = 1 - (pooled[:, m:] - rankdata(neg, axis=1)) / m  # share of positives that beat each negative
    aucs = v10.mean(axis=1)
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_test(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, *,
                confidence: float = 0.95) -> dict:
    """Paired DeLong test of ``AUC(B) - AUC(A)`` on the same images, with its Wald interval.

    The interval ``difference +- z * se`` and the two-sided p-value come from the same normal
    approximation, so the interval excludes 0 exactly when ``p < 1 - confidence``.

    Returns
    -------
    dict
        ``{"auc_a", "auc_b", "difference", "se", "z", "ci": [lo, hi], "p_value", "method"}``;
        ``z`` is None and ``p_value`` 1.0 when the difference has no variance (e.g. both AUCs are 1).
    """
    _check_confidence(confidence)
    aucs, cov = delong_covariance(positive, np.vstack([scores_a, scores_b]))
    difference = float(aucs[1] - aucs[0])
    variance = max(0.0, float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    se = float(np.sqrt(variance))
    half = norm.ppf(0.5 + confidence / 2) * se
    if se > 0:
        z = difference / se
        p_value = float(2 * norm.sf(abs(z)))
    else:
        z, p_value = None, 1.0 if difference == 0 else 0.0
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference, "se": se, "z": z,
            "ci": [difference - half, difference + half], "p_value": p_value, "method": "delong"}


def _hanley_mcneil_variance(theta: float, m: int, n: int) -> float:
    """Hanley & McNeil's variance of an AUC ``theta`` from ``m`` positives and ``n`` negatives, with ``m - 1``
    and ``n - 1`` both replaced by their mean ``(m + n) / 2 - 1`` (symmetrised as in Newcombe 2006)."""
    spread = (m + n) / 2 - 1
    return theta * (1 - theta) / (m * n) * (1 + spread * (1 - theta) / (2 - theta) + spread * theta / (1 + theta))


def _score_interval(auc: float, m: int, n: int, confidence: float) -> list[float]:
    """``{theta : (auc - theta)^2 <= z^2 V(theta)}`` for the Hanley-McNeil/Newcombe variance ``V``."""
    z2 = norm.ppf(0.5 + confidence / 2) ** 2

    def outside(theta: float) -> float:
        return (auc - theta) ** 2 - z2 * _hanley_mcneil_variance(theta, m, n)

    # the variance vanishes at 0 and 1, so search just inside them for the sign change
    inner = np.clip(auc, _EDGE, 1 - _EDGE)
    low = 0.0 if auc <= 0 or outside(0.0) <= 0 else brentq(outside, 0.0, inner)
    high = 1.0 if auc >= 1 or outside(1.0) <= 0 else brentq(outside, inner, 1.0)
    return [float(low), float(high)]


def auc_interval(positive: np.ndarray, scores: np.ndarray, *, confidence: float = 0.95) -> dict:
    """The AUC of ``scores`` with a confidence interval that does not collapse when the AUC is 0 or 1.

    Returns
    -------
    dict
        ``{"value", "ci": [lo, hi], "se" (DeLong), "n_positive", "n_negative", "method"}``; ``method`` is
        ``"delong_logit"`` or, when DeLong's variance is 0, ``"score_hanley_mcneil"`` (module docstring).
    """
    _check_confidence(confidence)
    positive, _ = _binary(positive, scores)
    aucs, cov = delong_covariance(positive, scores)
    auc, variance = float(aucs[0]), max(0.0, float(cov[0, 0]))
    m, n = int(positive.sum()), int((~positive).sum())
    if variance > 0 and 0 < auc < 1:
        half = norm.ppf(0.5 + confidence / 2) * np.sqrt(variance) / (auc * (1 - auc))
        ci, method = [float(expit(logit(auc) - half)), float(expit(logit(auc) + half))], "delong_logit"
    else:
        ci, method = _score_interval(auc, m, n, confidence), "score_hanley_mcneil"
    return {"value": auc, "ci": ci, "se": float(np.sqrt(variance)), "n_positive": m, "n_negative": n,
            "method": method}
