"""Everything a paper reports about a prediction table, per route, as one JSON-ready dict.

``evaluate_predictions(pred)`` returns::

    {
      "classes": [str, ...], "planes": [str, ...],
      "n_bootstrap": int, "seed": int, "confidence": float,
      "routes": {
        route: {
          "n": int,                          # images evaluated (all rows, referred or not)
          "headline": {m: {"value": float, "ci": [lo, hi]}},   # m in HEADLINE_METRICS:
                                             # accuracy, balanced_accuracy, macro_f1, macro_auc, micro_auc
          "per_class": [{"class", "precision", "recall", "specificity", "npv", "f1", "auc",
                         "average_precision", "support", "tp", "fp", "fn", "tn",
                         "<ratio>_ci_low", "<ratio>_ci_high" (Wilson for precision, recall,
                         specificity, npv; DeLong on the logit scale for auc, a Hanley-McNeil score
                         interval when the AUC is 0 or 1: "auc_ci_method")}, ...],
          "confusion": {"labels": [...], "counts": [[int]], "normalized": [[float]]},  # rows = truth
          "curves": {"roc": {class: {"fpr", "tpr", "auc"}},
                     "pr": {class: {"precision", "recall", "average_precision"}}},
          "calibration": {"ece": float, "brier": float,
                          "reliability": {"bin_lower", "bin_upper", "confidence", "accuracy", "count"}},
          "false_negatives": {"detection": {...}, "per_class": [...], "missed": [...],
                              "routing": {...} | None},          # see metrics.false_negatives
          "per_plane": {plane: {"n": int, "headline": {m: {"value", "ci"}}}},  # by true_plane
          "plane": None | {"n": int, "accuracy": {"value", "ci" (Wilson), "successes", "n"},
                           "confusion": {"labels", "counts", "normalized"}},  # plane classifier
          "coverage": None | {"n_referred": int, "coverage": float,
                              "accuracy_accepted": {...Wilson...}, "accuracy_referred": {...},
                              "curve": {"coverage": [...], "accuracy": [...]}},  # by top confidence
        }
      }
    }

Predictions are the arg-max of the ``prob_<class>`` columns, which must agree with ``pred_label``.
Undefined numbers (an AUC with one class present) are ``None``. Headline metrics are computed on every
row; when some rows are referred (abstention), ``coverage`` reports accuracy on the accepted ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hierarchy.fileio import to_jsonable
from hierarchy.labels import NO_TUMOR, to_indices
from hierarchy.metrics.calibration import brier_score, expected_calibration_error, reliability_curve
from hierarchy.metrics.classification import (
    HEADLINE_METRICS,
    confusion,
    headline_scores,
    per_class_table,
    pr_curves,
    predicted,
    roc_curves,
)
from hierarchy.metrics.delong import auc_interval, delong_test
from hierarchy.metrics.false_negatives import false_negative_analysis, rows_with_planes
from hierarchy.metrics.intervals import bootstrap_cis, proportion, wilson_interval
from hierarchy.metrics.paired import mcnemar_exact, paired_bootstrap_difference
from hierarchy.predictions import ROUTES, probabilities, table_classes, table_planes

COMPARED_METRICS = ("accuracy", "macro_f1", "macro_auc")
_WILSON_RATIOS = {"precision": ("tp", "fp"), "recall": ("tp", "fn"), "specificity": ("tn", "fp"),
                  "npv": ("tn", "fn")}
_CURVE_POINTS = 101


def _route_rows(pred: pd.DataFrame, route: str) -> pd.DataFrame:
    rows = pred[pred["route"] == route]
    if rows.empty:
        raise ValueError(f"route {route!r} is not in the prediction table; it has "
                         f"{sorted(pred['route'].unique())}")
    if rows["id"].duplicated().any():
        raise ValueError(f"route {route!r} has duplicated ids, e.g. "
                         f"{rows.loc[rows['id'].duplicated(), 'id'].iloc[0]!r}")
    return rows


def labels_and_probabilities(frame: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validated truth indices and probabilities of one route's rows."""
    for column in ("id", "route", "true_label", "pred_label"):
        if column not in frame.columns:
            raise KeyError(f"prediction table lacks column {column!r} (metrics need ground truth)")
    if frame["true_label"].isna().any():
        raise ValueError(f"{int(frame['true_label'].isna().sum())} rows have no true_label")
    y_true = to_indices(frame["true_label"], classes, what="true_label")
    proba = probabilities(frame, classes)
    if not np.all(np.isfinite(proba)) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("class probabilities must be finite and sum to 1 in every row")
    pred_idx = to_indices(frame["pred_label"], classes, what="pred_label")
    chosen = proba[np.arange(len(proba)), pred_idx]
    disagree = chosen < proba.max(axis=1) - 1e-9
    if disagree.any():
        raise ValueError(f"pred_label is not the most probable class in {int(disagree.sum())} rows "
                         f"(e.g. id {frame['id'].iloc[int(np.argmax(disagree))]!r})")
    # Single-precision softmax and CSV round trips leave rows a few ulps off 1 (or a value just above
    # 1), which scikit-learn's probability checks reject; renormalise within the tolerance accepted above.
    proba = np.clip(proba, 0.0, 1.0)
    return y_true, proba / proba.sum(axis=1, keepdims=True)


def _referred(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if not column or column not in frame.columns:
        return None
    values = frame[column].map(lambda v: str(v).strip().lower())
    unknown = sorted(set(values) - {"true", "false", "1", "0", "1.0", "0.0", "nan", "none", ""})
    if unknown:
        raise ValueError(f"column {column!r} must be boolean, found {unknown}")
    return values.isin({"true", "1", "1.0"}).to_numpy()


def _per_class(y_true, proba, classes, confidence) -> list[dict]:
    table = per_class_table(y_true, proba, classes)
    for ratio, (hit, miss) in _WILSON_RATIOS.items():
        bounds = [wilson_interval(h, h + m, confidence) if h + m else (np.nan, np.nan)
                  for h, m in zip(table[hit], table[miss], strict=True)]
        table[f"{ratio}_ci_low"] = [b[0] for b in bounds]
        table[f"{ratio}_ci_high"] = [b[1] for b in bounds]
    intervals = [_class_auc_interval(y_true == k, proba[:, k], confidence) for k in range(len(classes))]
    table["auc_ci_low"] = [i["ci"][0] for i in intervals]
    table["auc_ci_high"] = [i["ci"][1] for i in intervals]
    table["auc_ci_method"] = [i["method"] for i in intervals]
    return table.to_dict(orient="records")


def _class_auc_interval(positive: np.ndarray, scores: np.ndarray, confidence: float) -> dict:
    """DeLong (logit) interval of a one-vs-rest AUC, a score interval when it is 0 or 1 (see
    ``hierarchy.metrics.delong``); no interval when the class or its complement is absent."""
    if positive.all() or not positive.any():
        return {"ci": [np.nan, np.nan], "method": None}
    return auc_interval(positive, scores, confidence=confidence)


def _ordered_planes(planes: Sequence[str], values: set) -> list[str]:
    """``planes`` followed by any other plane the rows name (sorted)."""
    return list(planes) + sorted({str(v) for v in values if isinstance(v, str) and v} - set(planes))


def _per_plane(frame, planes, y_true, proba, confidence, n_bootstrap, seed) -> dict:
    if "true_plane" not in frame.columns:
        return {}
    truth = frame["true_plane"].to_numpy()
    found = [p for p in _ordered_planes(planes, set(truth)) if p in set(truth)]
    return {p: {"n": int(np.sum(truth == p)),
                "headline": bootstrap_cis(headline_scores, y_true[truth == p], proba[truth == p],
                                          n_resamples=n_bootstrap, seed=seed, confidence=confidence)}
            for p in found}


def _plane_classifier(frame: pd.DataFrame, planes: Sequence[str], confidence: float) -> dict | None:
    known = rows_with_planes(frame)
    if known is None:
        return None
    labels = _ordered_planes(planes, set(known["true_plane"]) | set(known["pred_plane"]))
    true_idx = to_indices(known["true_plane"], labels, what="true_plane")
    pred_idx = to_indices(known["pred_plane"], labels, what="pred_plane")
    correct = int(np.sum(true_idx == pred_idx))
    return {"n": len(known),
            "accuracy": proportion(correct, len(known), confidence),
            "confusion": confusion(true_idx, np.eye(len(labels))[pred_idx], labels)}


def _coverage(y_true, proba, referred, confidence) -> dict | None:
    if referred is None or not referred.any():
        return None
    correct = predicted(proba) == y_true
    accepted = ~referred

    def accuracy_of(mask):
        return proportion(int(correct[mask].sum()), int(mask.sum()), confidence)

    order = np.argsort(-proba.max(axis=1), kind="stable")
    kept = np.arange(1, len(order) + 1)
    points = np.unique(np.linspace(0, len(order) - 1, _CURVE_POINTS).round().astype(int))
    return {"n_referred": int(referred.sum()), "coverage": float(accepted.mean()),
            "accuracy_accepted": accuracy_of(accepted), "accuracy_referred": accuracy_of(referred),
            "curve": {"coverage": (kept[points] / len(order)).tolist(),
                      "accuracy": (np.cumsum(correct[order])[points] / kept[points]).tolist()}}


def _evaluate_route(frame, classes, planes, n_bootstrap, seed, confidence, reject_column) -> dict:
    y_true, proba = labels_and_probabilities(frame, classes)
    scores = bootstrap_cis(headline_scores, y_true, proba,
                           n_resamples=n_bootstrap, seed=seed, confidence=confidence)
    return {
        "n": len(frame),
        "headline": {name: scores[name] for name in HEADLINE_METRICS},
        "per_class": _per_class(y_true, proba, classes, confidence),
        "confusion": confusion(y_true, proba, classes),
        "curves": {"roc": roc_curves(y_true, proba, classes), "pr": pr_curves(y_true, proba, classes)},
        "calibration": {"ece": expected_calibration_error(y_true, proba),
                        "brier": brier_score(y_true, proba),
                        "reliability": reliability_curve(y_true, proba)},
        "false_negatives": false_negative_analysis(frame, classes, confidence),
        "per_plane": _per_plane(frame, planes, y_true, proba, confidence, n_bootstrap, seed),
        "plane": _plane_classifier(frame, planes, confidence),
        "coverage": _coverage(y_true, proba, _referred(frame, reject_column), confidence),
    }


def present_routes(pred: pd.DataFrame) -> list[str]:
    """Routes in the table, in the order of ``hierarchy.predictions.ROUTES`` then any others."""
    if "route" not in pred.columns:
        raise KeyError("prediction table lacks column 'route'")
    found = set(pred["route"].dropna())
    return [r for r in ROUTES if r in found] + sorted(found - set(ROUTES))


def evaluate_predictions(pred: pd.DataFrame, *, classes: Sequence[str] | None = None,
                         planes: Sequence[str] | None = None, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95,
                         reject_column: str | None = "referred") -> dict:
    """Evaluate every route of a prediction table.

    Parameters
    ----------
    pred
        A prediction table (``hierarchy.predictions``) with ground truth ``true_label``.
    classes
        The tumour classes; the table's own ``prob_<class>`` columns (``table_classes``) unless given.
    planes
        The planes (parent groups); the table's own (``table_planes``) unless given. Planes the rows name
        beyond these follow them, sorted.
    n_bootstrap, seed
        Resamples and seed of the stratified percentile bootstrap; the same seed gives the same intervals.
    confidence
        Coverage of every interval, in (0, 1).
    reject_column
        Boolean column marking images referred to a human; None to ignore referral.

    Returns
    -------
    dict
        JSON-ready; its structure is in the module docstring.

    Raises
    ------
    ValueError
        The table is empty, a label is not among ``classes``, probabilities do not sum to 1, or a route
        holds an image twice.
    KeyError
        A required column is missing.
    """
    routes = present_routes(pred)
    if not routes:
        raise ValueError("prediction table has no rows")
    classes = table_classes(pred) if classes is None else list(classes)
    planes = table_planes(pred) if planes is None else list(planes)
    return to_jsonable({
        "classes": classes, "planes": planes,
        "n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence,
        "routes": {r: _evaluate_route(_route_rows(pred, r), classes, planes, n_bootstrap, seed, confidence,
                                      reject_column) for r in routes},
    })


def compare_routes(pred: pd.DataFrame, route_a: str, route_b: str, *,
                   classes: Sequence[str] | None = None, n_bootstrap: int = 1000, seed: int = 0,
                   confidence: float = 0.95, groups: Mapping[str, Any] | None = None) -> dict:
    """Paired comparison of two routes on the same images.

    Parameters
    ----------
    pred
        A prediction table holding both routes.
    route_a, route_b
        The routes to compare; differences are B minus A.
    classes, n_bootstrap, seed, confidence
        As for ``evaluate_predictions``.
    groups
        Duplicate-group id per image id: the paired bootstrap then resamples whole groups (cluster
        bootstrap), as images of one group are not independent. Every compared id must have one.

    Returns
    -------
    dict
        ``{"route_a", "route_b", "n", "n_groups", "mcnemar": {"b", "c", "p_value", "mid_p"}, m: {"difference",
        "ci", "p_value"} for m in accuracy, macro_f1, macro_auc, "tumour_auc": delong_test of the
        tumour-vs-normal score 1 - p(no_tumor) or None}``; ``b`` counts images only A got right; each
        interval and its p-value come from one procedure and agree.

    Raises
    ------
    ValueError
        The two routes were not run on the same images, or either is missing from ``pred``.
    """
    classes = table_classes(pred) if classes is None else list(classes)
    a = _route_rows(pred, route_a).set_index("id")
    b = _route_rows(pred, route_b).set_index("id")
    if set(a.index) != set(b.index):
        raise ValueError(f"routes {route_a!r} and {route_b!r} were not run on the same images "
                         f"({len(set(a.index) ^ set(b.index))} ids differ)")
    b = b.loc[a.index]
    if (a["true_label"] != b["true_label"]).any():
        raise ValueError(f"routes {route_a!r} and {route_b!r} disagree on true_label for some ids")
    y_true, proba_a = labels_and_probabilities(a.reset_index(), classes)
    _, proba_b = labels_and_probabilities(b.reset_index(), classes)
    cluster = None
    if groups is not None:
        cluster = a.index.map(lambda i: groups.get(i)).to_numpy(dtype=object)
        if pd.isna(cluster).any():
            raise ValueError(f"{int(pd.isna(cluster).sum())} compared images have no duplicate group")
        cluster = pd.factorize(cluster)[0]
    result = {"route_a": route_a, "route_b": route_b, "n": len(y_true),
              "n_groups": None if cluster is None else int(len(np.unique(cluster))),
              "mcnemar": mcnemar_exact(predicted(proba_a) == y_true, predicted(proba_b) == y_true)}
    for name in COMPARED_METRICS:
        result[name] = paired_bootstrap_difference(
            y_true, proba_a, proba_b, HEADLINE_METRICS[name], n_resamples=n_bootstrap, seed=seed,
            confidence=confidence, groups=cluster)
    result["tumour_auc"] = _tumour_auc_test(y_true, proba_a, proba_b, classes, confidence)
    return to_jsonable(result)


def _tumour_auc_test(y_true, proba_a, proba_b, classes, confidence) -> dict | None:
    """DeLong test of the tumour-vs-normal AUC (score ``1 - p(no_tumor)``); None without both kinds of image."""
    if NO_TUMOR not in classes:
        return None
    normal = y_true == list(classes).index(NO_TUMOR)
    if normal.all() or not normal.any():
        return None
    k = list(classes).index(NO_TUMOR)
    return delong_test(~normal, 1 - proba_a[:, k], 1 - proba_b[:, k], confidence=confidence)


def aggregate_seeds(results: list[dict]) -> dict:
    """Mean, sample standard deviation and per-seed values of the headline numbers over runs.

    ``results`` are ``evaluate_predictions`` dicts from runs that differ only in seed. Returns
    ``{"n_seeds": int, "routes": {route: {metric: {"mean", "std", "values": [...]}}}}`` for the
    routes every run has; ``std`` is None with a single run.
    """
    if not results:
        raise ValueError("aggregate_seeds needs at least one evaluate_predictions result")
    routes = [r for r in results[0]["routes"] if all(r in res["routes"] for res in results)]
    if not routes:
        raise ValueError("no route is present in every result")
    summary = {}
    for route in routes:
        summary[route] = {}
        for metric in HEADLINE_METRICS:
            values = [res["routes"][route]["headline"][metric]["value"] for res in results]
            numbers = np.array([np.nan if v is None else v for v in values], dtype=float)
            summary[route][metric] = {
                "mean": float(np.nanmean(numbers)) if not np.all(np.isnan(numbers)) else None,
                "std": float(np.nanstd(numbers, ddof=1)) if np.sum(~np.isnan(numbers)) > 1 else None,
                "values": values}
    return {"n_seeds": len(results), "routes": summary}
