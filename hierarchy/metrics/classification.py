"""Classification metrics for one set of predictions, computed with ``sklearn.metrics``.

Inputs are integer labels ``y_true`` (indices into the class list) and an ``(n, k)`` probability
matrix ``proba``; the predicted class is the arg-max of ``proba``. Every function taking ``(y_true,
proba)`` and returning a float can be passed to the bootstrap in :mod:`hierarchy.metrics.intervals`.

The ``batch_*`` functions compute the headline metrics of many bootstrap resamples at once, without
scikit-learn: ``y_true`` is ``(r, n)`` and ``proba`` ``(r, n, k)`` (one resample per row) and they
return ``(r,)`` arrays equal to the scikit-learn-based functions row by row (to rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn import metrics as skm

# Lives beside the prediction table (below routing and metrics); metrics modules import it from here too.
from hierarchy.predictions import check_inputs as check_inputs


def predicted(proba: np.ndarray) -> np.ndarray:
    """Predicted class indices: the arg-max of each probability row."""
    return np.asarray(proba).argmax(axis=1)


def one_hot(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    """The ``(n, n_classes)`` 0/1 indicator matrix of ``y_true``."""
    return np.eye(n_classes, dtype=int)[np.asarray(y_true)]


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Fraction of arg-max predictions equal to the truth."""
    return float(skm.accuracy_score(y_true, predicted(proba)))


def balanced_accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    return float(skm.balanced_accuracy_score(y_true, predicted(proba)))


def macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in the truth or the predictions (a class
    neither present nor predicted, e.g. in a per-plane subset, is left out rather than scored 0)."""
    return float(skm.f1_score(y_true, predicted(proba), average="macro", zero_division=0))


def class_auc(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """One-vs-rest ROC AUC of class ``k``; NaN when ``y_true`` lacks positives or negatives."""
    positive = np.asarray(y_true) == k
    if positive.all() or not positive.any():
        return float("nan")
    return float(skm.roc_auc_score(positive, np.asarray(proba)[:, k]))


def class_aucs(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC of every class (NaN where undefined)."""
    return np.array([class_auc(y_true, proba, k) for k in range(np.asarray(proba).shape[1])])


def _mean_defined(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN (as ``np.nanmean``); NaN where every value is NaN."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=-1)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes for which it is defined (NaN if none)."""
    return float(_mean_defined(class_aucs(y_true, proba)))


def micro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of all (image, class) pairs pooled; NaN when ``y_true`` holds a single class."""
    proba = np.asarray(proba)
    indicator = one_hot(y_true, proba.shape[1])
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(indicator, proba, average="micro"))


HEADLINE_METRICS = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "macro_f1": macro_f1,
    "macro_auc": macro_auc,
    "micro_auc": micro_auc,
}


def headline_scores(y_true: np.ndarray, proba: np.ndarray,
                    classes: Sequence[str] | None = None) -> dict[str, float]:
    """Every ``HEADLINE_METRICS`` value, plus ``auc_<class>`` per class when ``classes`` is given.

    Same numbers as the separate functions; the per-class AUCs are computed once and shared.
    """
    aucs = class_aucs(y_true, proba)
    scores = {"accuracy": accuracy(y_true, proba),
              "balanced_accuracy": balanced_accuracy(y_true, proba),
              "macro_f1": macro_f1(y_true, proba), "macro_auc": float(_mean_defined(aucs)),
              "micro_auc": micro_auc(y_true, proba)}
    if classes is not None:
        scores.update({f"auc_{c}": float(a) for c, a in zip(classes, aucs, strict=True)})
    return scores


def _batch_confusion(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``(r, k, k)`` confusion counts (rows: truth, columns: arg-max prediction) of each resample."""
    r, _, k = proba.shape
    cells = (np.arange(r)[:, None] * k + y_true) * k + proba.argmax(axis=2)
    return np.bincount(cells.ravel(), minlength=r * k * k).reshape(r, k, k)


def _ratio_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0."""
    out = np.full(np.shape(numerator), np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def batch_accuracy(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """:func:`accuracy` of each resample."""
    counts = _batch_confusion(y_true, proba)
    return np.trace(counts, axis1=1, axis2=2) / y_true.shape[1]


def batch_balanced_accuracy(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """:func:`balanced_accuracy` of each resample: mean recall over the classes present."""
    counts = _batch_confusion(y_true, proba)
    recall = _ratio_or_nan(np.diagonal(counts, axis1=1, axis2=2), counts.sum(axis=2))
    return _mean_defined(recall)


def batch_macro_f1(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """:func:`macro_f1` of each resample: mean ``2 tp / (support + predicted)`` over the classes
    present or predicted."""
    counts = _batch_confusion(y_true, proba)
    f1 = _ratio_or_nan(2 * np.diagonal(counts, axis1=1, axis2=2),
                       counts.sum(axis=2) + counts.sum(axis=1))
    return _mean_defined(f1)


def _rank_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC along axis 1 as the Mann-Whitney U statistic with average ranks for ties (what
    ``roc_auc_score`` computes); NaN where there are no positives or no negatives."""
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    rank_sum = np.where(positive, rankdata(scores, axis=1), 0.0).sum(axis=1)
    return _ratio_or_nan(rank_sum - n_pos * (n_pos + 1) / 2, n_pos * n_neg)


def _batch_one_hot(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    return y_true[..., None] == np.arange(n_classes)


def batch_class_aucs(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``(r, k)`` :func:`class_aucs` of each resample."""
    return _rank_auc(_batch_one_hot(y_true, proba.shape[2]), proba)


def batch_macro_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """:func:`macro_auc` of each resample."""
    return _mean_defined(batch_class_aucs(y_true, proba))


def batch_micro_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """:func:`micro_auc` of each resample: the AUC of the flattened one-hot truth vs scores."""
    r, n, k = proba.shape
    indicator = _batch_one_hot(y_true, k)
    auc = _rank_auc(indicator.reshape(r, n * k), proba.reshape(r, n * k))
    return np.where(indicator.any(axis=1).sum(axis=1) >= 2, auc, np.nan)


def batch_headline_scores(y_true: np.ndarray, proba: np.ndarray,
                          classes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`headline_scores` of each resample, as ``{name: (r,) array}``."""
    aucs = batch_class_aucs(y_true, proba)
    scores = {"accuracy": batch_accuracy(y_true, proba),
              "balanced_accuracy": batch_balanced_accuracy(y_true, proba),
              "macro_f1": batch_macro_f1(y_true, proba), "macro_auc": _mean_defined(aucs),
              "micro_auc": batch_micro_auc(y_true, proba)}
    if classes is not None:
        scores.update({f"auc_{c}": aucs[:, k] for k, c in enumerate(classes)})
    return scores


_BATCHED: dict[Callable, Callable] = {
    accuracy: batch_accuracy,
    balanced_accuracy: batch_balanced_accuracy,
    macro_f1: batch_macro_f1,
    macro_auc: batch_macro_auc,
    micro_auc: batch_micro_auc,
    headline_scores: batch_headline_scores,
}


def batched(score_fn: Callable) -> Callable | None:
    """The ``batch_*`` equivalent of a ``HEADLINE_METRICS`` function or of :func:`headline_scores`
    (also wrapped in ``functools.partial``, e.g. binding ``classes``); None for any other function."""
    if isinstance(score_fn, partial):
        fast = batched(score_fn.func)
        return None if fast is None else partial(fast, *score_fn.args, **score_fn.keywords)
    return _BATCHED.get(score_fn)


def roc_curves(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, dict]:
    """Per-class one-vs-rest ROC curves: ``{class: {"fpr", "tpr", "auc"}}`` (skips undefined ones)."""
    curves = {}
    for k, name in enumerate(classes):
        auc = class_auc(y_true, proba, k)
        if np.isnan(auc):
            continue
        fpr, tpr, _ = skm.roc_curve(np.asarray(y_true) == k, np.asarray(proba)[:, k])
        curves[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": auc}
    return curves


def pr_curves(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, dict]:
    """Per-class precision-recall curves: ``{class: {"precision", "recall", "average_precision"}}``.

    Classes absent from ``y_true`` are skipped (their precision-recall curve is undefined).
    """
    curves = {}
    for k, name in enumerate(classes):
        positive = np.asarray(y_true) == k
        if not positive.any():
            continue
        scores = np.asarray(proba)[:, k]
        precision, recall, _ = skm.precision_recall_curve(positive, scores)
        curves[name] = {"precision": precision.tolist(), "recall": recall.tolist(),
                        "average_precision": float(skm.average_precision_score(positive, scores))}
    return curves


def confusion(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, list]:
    """Confusion matrix (rows: truth, columns: prediction) as counts, normalised by true class (rows,
    ``normalized``: recall on the diagonal) and by predicted class (columns, ``normalized_by_predicted``:
    precision on the diagonal, i.e. how often a call of that class is right).

    Rows of classes absent from ``y_true`` (columns of classes never predicted) are all zero.
    """
    labels = np.arange(len(classes))
    counts = skm.confusion_matrix(y_true, predicted(proba), labels=labels)
    rows = counts.sum(axis=1, keepdims=True)
    columns = counts.sum(axis=0, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    by_predicted = np.divide(counts, columns, out=np.zeros(counts.shape, dtype=float), where=columns > 0)
    return {"labels": list(classes), "counts": counts.tolist(), "normalized": normalized.tolist(),
            "normalized_by_predicted": by_predicted.tolist()}


def per_class_table(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: precision, recall (sensitivity), specificity, NPV, F1, AUC, AP, support,
    and the tp/fp/fn/tn counts they come from. Undefined ratios (0/0) are NaN."""
    y_pred = predicted(proba)
    labels = np.arange(len(classes))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan)
    # multilabel_confusion_matrix gives per class [[tn, fp], [fn, tp]]
    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = tn / (tn + fp)
        npv = tn / (tn + fn)
    ap = pr_curves(y_true, proba, classes)
    return pd.DataFrame({
        "class": list(classes),
        "precision": precision, "recall": recall, "specificity": specificity, "npv": npv, "f1": f1,
        "auc": [class_auc(y_true, proba, k) for k in labels],
        "average_precision": [ap[c]["average_precision"] if c in ap else np.nan for c in classes],
        "support": support.astype(int), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    })
