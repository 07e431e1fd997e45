"""Confidence intervals: Wilson score for proportions, stratified percentile bootstrap for any metric.

Images that are not independent (near-duplicate slices of one scan, found by
``hierarchy.data.duplicate_groups``) are resampled together when ``groups`` is given: a cluster bootstrap
draws whole groups with replacement, so an interval on a subset holding duplicate groups is not made
narrower by counting one scan several times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import islice

import numpy as np
from scipy.stats import binomtest, norm

from hierarchy.metrics.classification import batched

MetricFn = Callable[[np.ndarray, np.ndarray], float]
ScoreFn = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]
# resampled probabilities (resamples x images x classes) held in memory at once
_BATCH_ELEMENTS = 1 << 22


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for the proportion ``successes / n``.

    Parameters
    ----------
    successes, n
        Successes out of ``n`` trials.
    confidence
        Coverage of the interval, in (0, 1).

    Returns
    -------
    tuple of float
        ``(low, high)``, within [0, 1].

    Raises
    ------
    ValueError
        ``n`` is not positive, ``successes`` is outside [0, n], or ``confidence`` outside (0, 1).
        Use ``proportion`` where an empty group is possible.
    """
    if n <= 0:
        raise ValueError(f"a proportion needs n > 0 trials, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    _check_confidence(confidence)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    p = successes / n
    # Rounding can put a bound a few ulps past p (e.g. above 0 when successes == 0); keep p inside.
    return float(max(0.0, min(p, ci.low))), float(min(1.0, max(p, ci.high)))


def proportion(successes: int, n: int, confidence: float = 0.95) -> dict:
    """A proportion as ``{"value", "ci" (Wilson), "successes", "n"}``.

    An empty group (``n == 0``) has no proportion: its value and both bounds are None, so a report
    shows a gap rather than a made-up number.
    """
    if n == 0:
        return {"value": None, "ci": [None, None], "successes": 0, "n": 0}
    return {"value": successes / n, "ci": list(wilson_interval(successes, n, confidence)),
            "successes": int(successes), "n": int(n)}


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


def cluster_bootstrap_indices(y_true: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int,
                              stratified: bool = True) -> Iterator[np.ndarray]:
    """Yield ``n_resamples`` index arrays of a cluster bootstrap: whole ``groups`` drawn with replacement.

    ``groups`` holds one group id per image (e.g. ``hierarchy.data.duplicate_groups``); every image of a
    drawn group enters the resample, so resamples vary in length. ``stratified`` draws groups within each
    class of their first image, keeping the number of groups per class.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    y_true, groups = np.asarray(y_true), np.asarray(groups)
    if groups.shape != y_true.shape:
        raise ValueError(f"groups must give one group per image: shape {groups.shape}, y_true {y_true.shape}")
    ids, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    strata = ([np.flatnonzero(y_true[first] == c) for c in np.unique(y_true[first])] if stratified
              else [np.arange(len(ids))])
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        drawn = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata])
        yield np.concatenate([members[g] for g in drawn])


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> list[float]:
    """The central ``confidence`` percentile interval of bootstrap samples (NaN samples ignored)."""
    _check_confidence(confidence)
    samples = np.asarray(samples, dtype=float)
    if np.all(np.isnan(samples)):
        return [float("nan"), float("nan")]
    tail = 50 * (1 - confidence)
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _looped(fn: MetricFn | ScoreFn) -> Callable:
    """Run ``fn`` once per row of a batch of resamples, stacking the results like a ``batch_*``."""
    def run(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        values = [fn(y, p) for y, p in zip(y_true, proba, strict=True)]
        if isinstance(values[0], Mapping):
            return {name: np.array([v[name] for v in values], dtype=float) for name in values[0]}
        return np.array(values, dtype=float)
    return run


def bootstrap_samples(fn: MetricFn | ScoreFn, y_true: np.ndarray, proba: np.ndarray, *,
                      n_resamples: int = 1000, seed: int = 0, stratified: bool = True,
                      groups: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """``fn(y_true[i], proba[i])`` for every ``i`` of :func:`bootstrap_indices`: an
    ``(n_resamples,)`` array for a metric, ``{name: array}`` for a function returning scores.

    ``HEADLINE_METRICS`` functions and ``headline_scores`` are computed on many resamples at once by
    their vectorised ``batch_*`` equivalents; any other function is called once per resample.
    With ``groups`` the resamples are those of :func:`cluster_bootstrap_indices` (one at a time, as
    their lengths differ).
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    score = batched(fn) or _looped(fn)
    if groups is not None:
        values = [score(y_true[rows][None], proba[rows][None])
                  for rows in cluster_bootstrap_indices(y_true, groups, n_resamples, seed, stratified)]
        if isinstance(values[0], Mapping):
            return {name: np.concatenate([v[name] for v in values]) for name in values[0]}
        return np.concatenate(values)
    indices = bootstrap_indices(y_true, n_resamples, seed, stratified)
    per_batch = max(1, _BATCH_ELEMENTS // max(1, proba.size))
    chunks = []
    while batch := list(islice(indices, per_batch)):
        rows = np.stack(batch)
        chunks.append(score(y_true[rows], proba[rows]))
    if isinstance(chunks[0], Mapping):
        return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    return np.concatenate(chunks)


def bootstrap_cis(score_fn: ScoreFn, y_true: np.ndarray, proba: np.ndarray, *,
                  n_resamples: int = 1000, seed: int = 0, stratified: bool = True,
                  confidence: float = 0.95, groups: np.ndarray | None = None) -> dict[str, dict]:
    """Several metrics, returned together by ``score_fn(y_true, proba) -> {name: value}``, with
    percentile bootstrap intervals from the same resamples.

    Parameters
    ----------
    score_fn
        Maps ``(y_true, proba)`` to ``{name: value}``.
    y_true, proba
        Class indices ``(n,)`` and probabilities ``(n, n_classes)``.
    n_resamples, seed
        Bootstrap resamples and their seed; the same seed gives the same intervals.
    stratified
        Resample within each true class, keeping the class counts.
    confidence
        Coverage of the intervals, in (0, 1).
    groups
        One group id per image (duplicate groups): resample whole groups (cluster bootstrap).

    Returns
    -------
    dict
        ``{name: {"value": metric on all data, "ci": [lo, hi]}}``.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    point = dict(score_fn(y_true, proba))
    samples = bootstrap_samples(score_fn, y_true, proba, n_resamples=n_resamples, seed=seed,
                                stratified=stratified, groups=groups)
    return {name: {"value": float(value), "ci": percentile_interval(samples[name], confidence)}
            for name, value in point.items()}


def bootstrap_ci(metric_fn: MetricFn, y_true: np.ndarray, proba: np.ndarray, *,
                 n_resamples: int = 1000, seed: int = 0, stratified: bool = True,
                 confidence: float = 0.95, groups: np.ndarray | None = None) -> dict:
    """``metric_fn(y_true, proba)`` with a percentile bootstrap interval, stratified by true class.

    Parameters
    ----------
    metric_fn
        Maps ``(y_true, proba)`` to a number.
    y_true, proba, n_resamples, seed, stratified, confidence, groups
        As for ``bootstrap_cis``.

    Returns
    -------
    dict
        ``{"value": float, "ci": [lo, hi]}``; the same seed gives the same interval.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    samples = bootstrap_samples(metric_fn, y_true, proba, n_resamples=n_resamples, seed=seed,
                                stratified=stratified, groups=groups)
    return {"value": float(metric_fn(y_true, proba)),
            "ci": percentile_interval(samples, confidence)}


def combined_interval(estimates: np.ndarray, within_variances: np.ndarray, confidence: float = 0.95) -> dict:
    """A normal interval for the mean of one metric over several models (folds or seeds) evaluated on one test
    set, combining how the models differ with how the test set was sampled.

    Total variance = between-model variance of ``estimates`` (sample variance, ``ddof=1``) + the mean of
    ``within_variances`` (each model's bootstrap variance over test images); the interval is
    ``mean ± z * sqrt(total)`` and ``p_value`` the two-sided normal test of "mean = 0" (for a difference), so
    the interval excludes 0 exactly when ``p_value < 1 - confidence``.

    Returns
    -------
    dict
        ``{"k", "mean", "sd" (between models), "between_variance", "within_variance", "total_variance",
        "ci": [lo, hi], "p_value"}``.

    Raises
    ------
    ValueError
        Fewer than two models, unpaired inputs, or a negative or non-finite value.
    """
    _check_confidence(confidence)
    estimates = np.asarray(estimates, dtype=float)
    within = np.asarray(within_variances, dtype=float)
    if estimates.ndim != 1 or estimates.shape != within.shape or len(estimates) < 2:
        raise ValueError(f"need one estimate and one within-model variance per model, at least two models; got "
                         f"shapes {estimates.shape} and {within.shape}")
    if not (np.isfinite(estimates).all() and np.isfinite(within).all() and (within >= 0).all()):
        raise ValueError("estimates and within-model variances must be finite, variances >= 0")
    mean, between, mean_within = float(estimates.mean()), float(estimates.var(ddof=1)), float(within.mean())
    total = between + mean_within
    half = float(norm.ppf(0.5 + confidence / 2) * np.sqrt(total))
    p_value = 1.0 if total == 0 and mean == 0 else (
        0.0 if total == 0 else float(2 * norm.sf(abs(mean) / np.sqrt(total))))
    return {"k": len(estimates), "mean": mean, "sd": float(np.sqrt(between)), "between_variance": between,
            "within_variance": mean_within, "total_variance": total, "ci": [float(mean - half), float(mean + half)],
            "p_value": p_value}
