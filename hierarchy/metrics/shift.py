"""Distribution shift: how well an out-of-distribution score tells two datasets apart, and what
referring the most atypical images buys.

Scores follow :mod:`hierarchy.routing.ood`: higher means more atypical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from hierarchy.metrics.intervals import bootstrap_ci, wilson_interval

DEFAULT_COVERAGES: tuple[float, ...] = tuple(np.round(np.arange(0.5, 1.001, 0.05), 2))


def _scores(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _auroc(is_out: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(is_out, scores))


def ood_auroc(scores_in: np.ndarray, scores_out: np.ndarray, *, n_bootstrap: int = 1000,
              seed: int = 0, confidence: float = 0.95) -> dict:
    """AUROC of telling ``scores_out`` (e.g. an external set) from ``scores_in`` (e.g. BRISC test)
    by their OOD scores, with a percentile bootstrap interval that resamples each set separately.

    Returns ``{"value", "ci": [lo, hi], "n_in", "n_out"}``; 1.0 means every outside image scores
    higher than every inside one, 0.5 is chance.
    """
    scores_in, scores_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    is_out = np.r_[np.zeros(len(scores_in), dtype=int), np.ones(len(scores_out), dtype=int)]
    result = bootstrap_ci(_auroc, is_out, np.r_[scores_in, scores_out], n_resamples=n_bootstrap,
                          seed=seed, confidence=confidence)
    return {**result, "n_in": len(scores_in), "n_out": len(scores_out)}


def accuracy_coverage_curve(correct: np.ndarray, ood_scores: np.ndarray,
                            coverages: Sequence[float] = DEFAULT_COVERAGES, *,
                            confidence: float = 0.95) -> dict[str, list]:
    """Accuracy of the images kept when the most atypical are referred, at each coverage.

    At coverage ``c`` the ``ceil(c * n)`` images with the lowest OOD scores are kept (ties broken by
    order of appearance). Returns JSON-ready lists ``{"coverage", "n_kept", "threshold" (highest kept
    score), "accuracy", "ci_low", "ci_high" (Wilson)}`` in the order of ``coverages``.
    """
    correct = np.asarray(correct)
    if correct.dtype != bool and not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must be boolean (or 0/1) per image")
    scores = _scores(ood_scores, "ood_scores")
    if correct.shape != scores.shape:
        raise ValueError(f"correct has shape {correct.shape} but ood_scores has {scores.shape}")
    coverages = np.asarray(coverages, dtype=float)
    if coverages.ndim != 1 or np.any((coverages <= 0) | (coverages > 1)):
        raise ValueError(f"coverages must lie in (0, 1], got {coverages.tolist()}")
    order = np.argsort(scores, kind="stable")
    hits = np.cumsum(correct[order].astype(int))
    curve = {"coverage": [], "n_kept": [], "threshold": [], "accuracy": [], "ci_low": [],
             "ci_high": []}
    for coverage in coverages:
        kept = max(1, int(np.ceil(coverage * len(scores) - 1e-9)))
        lo, hi = wilson_interval(int(hits[kept - 1]), kept, confidence)
        for key, value in (("coverage", float(coverage)), ("n_kept", kept),
                           ("threshold", float(scores[order[kept - 1]])),
                           ("accuracy", float(hits[kept - 1] / kept)), ("ci_low", lo), ("ci_high", hi)):
            curve[key].append(value)
    return curve


def risk_coverage_area(correct: np.ndarray, confidence: np.ndarray) -> float:
    """Area under the risk-coverage curve (AURC; lower is better) of selective prediction.

    Images are kept from the most to the least confident; the risk at coverage ``k / n`` is the error rate of
    the ``k`` kept, and the area is the mean risk over ``k = 1..n`` (ties in ``confidence`` share their mean
    risk, so the order of appearance does not matter).
    """
    correct = np.asarray(correct)
    if correct.dtype != bool and not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must be boolean (or 0/1) per image")
    confidence = _scores(confidence, "confidence")
    if correct.shape != confidence.shape:
        raise ValueError(f"correct has shape {correct.shape} but confidence has {confidence.shape}")
    errors = 1.0 - correct.astype(float)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, sorted_err = confidence[order], errors[order]
    # ties: every member of a tie group gets the group's mean error
    _, start, counts = np.unique(-sorted_conf, return_index=True, return_counts=True)
    for s, c in zip(start, counts, strict=True):
        if c > 1:
            sorted_err[s:s + c] = sorted_err[s:s + c].mean()
    risk = np.cumsum(sorted_err) / np.arange(1, len(sorted_err) + 1)
    return float(risk.mean())
