"""Paired comparisons of two classifiers on the same images: exact McNemar and paired bootstrap."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from hierarchy.metrics.intervals import MetricFn, bootstrap_samples, percentile_interval


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired correctness vectors.

    Parameters
    ----------
    correct_a, correct_b
        Whether classifier A (B) got each image right; 1-D and paired.

    Returns
    -------
    dict
        ``{"b", "c", "p_value"}``: ``b`` counts images A got right and B wrong, ``c`` the reverse; the
        p-value is the two-sided binomial test of ``b`` out of ``b + c`` at 0.5 (1.0 when there are no
        discordant pairs).

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
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": p_value}


def paired_bootstrap_difference(y_true: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray,
                                metric_fn: MetricFn, *, n_resamples: int = 1000, seed: int = 0,
                                stratified: bool = True, confidence: float = 0.95) -> dict:
    """``metric_fn(B) - metric_fn(A)`` on the same images, with a paired percentile bootstrap interval.

    Both classifiers are scored on each resample. ``p_value`` is two-sided for "no difference",
    from the bootstrap distribution shifted to the null: ``(1 + #{|d* - d| >= |d|}) / (1 + R)``.

    Parameters
    ----------
    y_true
        Class indices ``(n,)``.
    proba_a, proba_b
        Probabilities ``(n, n_classes)`` of classifiers A and B on the same images.
    metric_fn
        Maps ``(y_true, proba)`` to a number.
    n_resamples, seed, stratified, confidence
        As for ``hierarchy.metrics.bootstrap_cis``.

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
                                 stratified=stratified)

    samples = resampled(proba_b) - resampled(proba_a)
    valid = samples[~np.isnan(samples)]
    p_value = (float((1 + np.sum(np.abs(valid - difference) >= abs(difference))) / (1 + len(valid)))
               if len(valid) and not np.isnan(difference) else float("nan"))
    return {"difference": float(difference), "ci": percentile_interval(samples, confidence),
            "p_value": p_value}
