"""Paired comparisons of two classifiers on the same images: exact McNemar and paired bootstrap.

Every paired-bootstrap interval and its p-value come from the same resamples and agree: the p-value is
the smallest ``1 - confidence`` at which the percentile interval would exclude 0, so "0 outside the 95%
interval" and "p < 0.05" are one statement (see :func:`bootstrap_test`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, binomtest

from hierarchy.metrics.intervals import MetricFn, _check_confidence, bootstrap_samples

MCNEMAR_METHOD = ("exact two-sided binomial test of the discordant pairs (b of b + c at 0.5); mid-p = "
                  "exact p minus the probability of the observed b (Fagerland et al. 2013)")
BOOTSTRAP_METHOD = ("paired percentile bootstrap (the same resamples for both classifiers); p = 2 x the "
                    "smaller share of resampled differences on either side of 0, so the interval excludes "
                    "0 exactly when p < 1 - confidence")


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired correctness vectors, with its mid-p value.

    Parameters
    ----------
    correct_a, correct_b
        Whether classifier A (B) got each image right; 1-D and paired.

    Returns
    -------
    dict
        ``{"b", "c", "p_value", "mid_p"}``: ``b`` counts images A got right and B wrong, ``c`` the reverse;
        ``p_value`` is the two-sided binomial test of ``b`` out of ``b + c`` at 0.5 (1.0 when there are no
        discordant pairs); ``mid_p`` subtracts the probability of the observed split (less conservative,
        recommended by Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91).

    Raises
    ------
    ValueError
        The vectors are not 1-D or differ in shape.
    """
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be 1-D and paired, got shapes "
                         f"{correct_a.shape} and {correct_b.shape}")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return {"b": b, "c": c, "p_value": 1.0, "mid_p": 1.0}
    p_value = float(binomtest(b, b + c, 0.5).pvalue)
    mid_p = min(1.0, 2 * float(binom.cdf(min(b, c), b + c, 0.5)) - float(binom.pmf(b, b + c, 0.5)))
    return {"b": b, "c": c, "p_value": p_value, "mid_p": mid_p}


def bootstrap_test(samples: np.ndarray, confidence: float = 0.95) -> dict:
    """Percentile interval and two-sided p-value for "no difference" from bootstrap ``samples`` of a difference.

    The interval runs from the ``k``-th smallest to the ``k``-th largest sample, ``k = ceil(R (1 -
    confidence) / 2)`` for ``R`` samples (percentiles without interpolation); the p-value is
    ``2 * min(share <= 0, share >= 0)``, at least ``1 / len(samples)`` and at most 1. Then the interval
    excludes 0 exactly when ``p < 1 - confidence``. NaN samples are dropped.

    Returns
    -------
    dict
        ``{"ci": [lo, hi], "p_value"}`` (NaN when no sample is finite).
    """
    _check_confidence(confidence)
    samples = np.asarray(samples, dtype=float)
    valid = samples[~np.isnan(samples)]
    if not len(valid):
        return {"ci": [float("nan"), float("nan")], "p_value": float("nan")}
    # the k-th smallest and k-th largest samples, k = ceil(n (1 - confidence) / 2) (rounded first, so that
    # 0.025 * 200 is 5 and not the 6 that floating point would give)
    ordered = np.sort(valid)
    k = max(1, int(np.ceil(round(len(valid) * (1 - confidence) / 2, 9))))
    low, high = float(ordered[k - 1]), float(ordered[len(valid) - k])
    share = min(np.mean(valid <= 0), np.mean(valid >= 0))
    return {"ci": [low, high], "p_value": float(min(1.0, max(2 * share, 1 / len(valid))))}


def paired_bootstrap_difference(y_true: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray,
                                metric_fn: MetricFn, *, n_resamples: int = 1000, seed: int = 0,
                                stratified: bool = True, confidence: float = 0.95,
                                groups: np.ndarray | None = None) -> dict:
    """``metric_fn(B) - metric_fn(A)`` on the same images, with a paired bootstrap interval and p-value.

    Both classifiers are scored on each resample; the interval and p-value come from those resampled
    differences by :func:`bootstrap_test`, so they agree.

    Parameters
    ----------
    y_true
        Class indices ``(n,)``.
    proba_a, proba_b
        Probabilities ``(n, n_classes)`` of classifiers A and B on the same images.
    metric_fn
        Maps ``(y_true, proba)`` to a number.
    n_resamples, seed, stratified, confidence, groups
        As for ``hierarchy.metrics.bootstrap_cis`` (``groups``: resample whole duplicate groups).

    Returns
    -------
    dict
        ``{"difference", "ci": [lo, hi], "p_value"}``.

    Raises
    ------
    ValueError
        The inputs disagree in shape.
    """
    y_true, proba_a, proba_b = np.asarray(y_true), np.asarray(proba_a), np.asarray(proba_b)
    if proba_a.shape != proba_b.shape or proba_a.shape[0] != len(y_true):
        raise ValueError(f"paired inputs disagree in shape: y_true {y_true.shape}, "
                         f"proba_a {proba_a.shape}, proba_b {proba_b.shape}")
    difference = metric_fn(y_true, proba_b) - metric_fn(y_true, proba_a)

    def resampled(proba: np.ndarray) -> np.ndarray:
        # the same seed draws the same resamples for both classifiers, so the samples are paired
        return bootstrap_samples(metric_fn, y_true, proba, n_resamples=n_resamples, seed=seed,
                                 stratified=stratified, groups=groups)

    test = bootstrap_test(resampled(proba_b) - resampled(proba_a), confidence)
    if np.isnan(difference):
        test["p_value"] = float("nan")
    return {"difference": float(difference), **test}
