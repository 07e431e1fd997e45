"""Confidence intervals: Wilson score for proportions, stratified percentile bootstrap for any metric."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
from scipy.stats import norm

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for the proportion ``successes / n``."""
    if n <= 0:
        raise ValueError(f"a proportion needs n > 0 trials, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = _z(confidence)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_indices(y_true: np.ndarray, n_resamples: int, seed: int,
                      stratified: bool = True) -> Iterator[np.ndarray]:
    """Yield ``n_resamples`` index arrays drawn with replacement; stratified keeps each class's count."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y_true == c) for c in np.unique(y_true)] if stratified else [
        np.arange(len(y_true))]
    for _ in range(n_resamples):
        yield np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> list[float]:
    """The central ``confidence`` percentile interval of bootstrap samples (NaN samples ignored)."""
    _z(confidence)
    samples = np.asarray(samples, dtype=float)
    if np.all(np.isnan(samples)):
        return [float("nan"), float("nan")]
    tail = 50 * (1 - confidence)
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_cis(score_fn: Callable[[np.ndarray, np.ndarray], Mapping[str, float]],
                  y_true: np.ndarray, proba: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                  stratified: bool = True, confidence: float = 0.95) -> dict[str, dict]:
    """Several metrics, returned together by ``score_fn(y_true, proba) -> {name: value}``, with
    percentile bootstrap intervals from the same resamples.

    Returns ``{name: {"value": metric on all data, "ci": [lo, hi]}}``.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    point = dict(score_fn(y_true, proba))
    resampled = [score_fn(y_true[i], proba[i])
                 for i in bootstrap_indices(y_true, n_resamples, seed, stratified)]
    samples = np.array([[scores[name] for name in point] for scores in resampled], dtype=float)
    return {name: {"value": float(value), "ci": percentile_interval(samples[:, j], confidence)}
            for j, (name, value) in enumerate(point.items())}


def bootstrap_ci(metric_fn: MetricFn, y_true: np.ndarray, proba: np.ndarray, *,
                 n_resamples: int = 1000, seed: int = 0, stratified: bool = True,
                 confidence: float = 0.95) -> dict:
    """``metric_fn(y_true, proba)`` with a percentile bootstrap interval, stratified by true class.

    Returns ``{"value": float, "ci": [lo, hi]}``; the same seed gives the same interval.
    """
    return bootstrap_cis(lambda y, p: {"metric": metric_fn(y, p)}, y_true, proba,
                         n_resamples=n_resamples, seed=seed, stratified=stratified,
                         confidence=confidence)["metric"]
