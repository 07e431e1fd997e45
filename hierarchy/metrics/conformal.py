"""Conformal prediction sets from class probabilities (split conformal, computed with ``crepes``).

Calibrated on validation rows, a :class:`ConformalSets` turns each test image's probabilities into the
set of classes that contains the true one with probability at least ``1 - alpha``, *provided the test
images are exchangeable with the calibration ones*. Under a dataset shift that guarantee may break:
empirical coverage below ``1 - alpha`` on an external set is a finding to report, not a bug.

Nonconformity is ``"hinge"`` (``1 - p(class)``) or ``"margin"`` (the best other class's probability
minus ``p(class)``), both from ``crepes.extras``. ``class_conditional=True`` calibrates one threshold per
class (Mondrian by true class), so coverage holds within each class, not only on average.
P-values are not smoothed by default: sets are deterministic and coverage is at least ``1 - alpha``.
``allow_empty=False`` puts the most probable class into any set that would be empty; sets only grow,
so the coverage guarantee still holds (sets get a little larger).

The calibration rows must be seen by nothing else: not by early stopping, temperature fitting or
ensemble weighting, or the scores on them are optimistic and coverage falls short. The experiment
carves such a split from its training rows (``ExperimentConfig.calibration_fraction``).

:func:`conformal_evaluation` takes a calibration and an evaluation prediction table (see
:mod:`hierarchy.predictions`) and returns, per route present in both::

    {"alpha": float, "score": str, "class_conditional": bool, "allow_empty": bool, "classes": [...],
     "routes": {route: {"n_calibration": int, "n": int,
                        "coverage": {"value", "ci" (Wilson), "successes", "n"},
                        "mean_set_size": float, "empty": float, "singleton": float,
                        "per_class": [{"class", "n", "coverage", "mean_set_size"}, ...]}}}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from crepes import ConformalClassifier
from crepes.extras import hinge, margin

from hierarchy.metrics.classification import check_inputs
from hierarchy.metrics.evaluate import (
    _route_rows,
    labels_and_probabilities,
    present_routes,
    to_jsonable,
)
from hierarchy.metrics.intervals import wilson_interval
from hierarchy.predictions import table_classes

NONCONFORMITY = {"hinge": hinge, "margin": margin}


class ConformalSets:
    """Split-conformal prediction sets over class probabilities.

    Parameters
    ----------
    score : {"hinge", "margin"}, default "hinge"
        Nonconformity function of ``crepes.extras``.
    class_conditional : bool, default False
        Calibrate one threshold per true class (Mondrian conformal classifier).
    smoothing : bool, default False
        Use crepes' smoothed (randomised) p-values; exact coverage, but sets depend on ``seed``.
    allow_empty : bool, default True
        False adds the most probable class to any set that would otherwise be empty.
    seed : int, default 0
        Seed of the smoothing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> proba = rng.dirichlet([1, 1, 1], size=200)
    >>> sets = ConformalSets().fit(proba, proba.argmax(axis=1)).predict(proba[:3], alpha=0.1)
    >>> sets.shape, sets.dtype
    ((3, 3), dtype('bool'))
    """

    def __init__(self, score: str = "hinge", class_conditional: bool = False,
                 smoothing: bool = False, seed: int = 0, allow_empty: bool = True):
        self.score = score
        self.class_conditional = class_conditional
        self.smoothing = smoothing
        self.seed = seed
        self.allow_empty = allow_empty

    def _nonconformity(self, proba: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        if self.score not in NONCONFORMITY:
            raise ValueError(f"score must be one of {sorted(NONCONFORMITY)}, got {self.score!r}")
        fn = NONCONFORMITY[self.score]
        return fn(proba) if y is None else fn(proba, np.arange(proba.shape[1]), y)

    def fit(self, proba: np.ndarray, y_true: np.ndarray) -> ConformalSets:
        """Calibrate on validation probabilities ``(n, k)`` and true class indices ``(n,)``."""
        y_true, proba = check_inputs(y_true, proba)
        self.n_classes_ = proba.shape[1]
        self.n_calibration_ = len(y_true)
        bins = None
        if self.class_conditional:
            absent = sorted(set(range(self.n_classes_)) - set(y_true.tolist()))
            if absent:
                raise ValueError(f"class-conditional calibration needs rows of every class; classes "
                                 f"{absent} have none")
            bins = y_true
        self.classifier_ = ConformalClassifier().fit(self._nonconformity(proba, y_true), bins=bins,
                                                     seed=self.seed)
        return self

    def predict(self, proba: np.ndarray, alpha: float = 0.1) -> np.ndarray:
        """Boolean ``(n, k)`` membership of each class in each image's set at confidence ``1 - alpha``."""
        if not hasattr(self, "classifier_"):
            raise RuntimeError("ConformalSets is not fitted; call fit(proba, y_true) first")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        proba = np.asarray(proba, dtype=float)
        if proba.ndim != 2 or proba.shape[1] != self.n_classes_:
            raise ValueError(f"proba must have shape (n, {self.n_classes_}), got {proba.shape}")
        alphas = self._nonconformity(proba)
        options = {"confidence": 1 - alpha, "smoothing": self.smoothing, "seed": self.seed}
        if not self.class_conditional:
            sets = self.classifier_.predict_set(alphas, **options).astype(bool)
        else:
            # each class is tested against its own calibration scores (as crepes' WrapClassifier does)
            sets = np.column_stack([
                self.classifier_.predict_set(alphas, bins=np.full(len(proba), k), **options)[:, k]
                for k in range(self.n_classes_)]).astype(bool)
        if not self.allow_empty:
            empty = ~sets.any(axis=1)
            sets[empty, proba[empty].argmax(axis=1)] = True
        return sets


def set_summary(sets: np.ndarray, y_true: np.ndarray, classes: Sequence[str],
                confidence: float = 0.95) -> dict:
    """Empirical coverage (with a Wilson interval), mean set size, empty and singleton fractions of
    prediction ``sets`` (boolean ``(n, k)``), overall and per true class."""
    sets, y_true = np.asarray(sets, dtype=bool), np.asarray(y_true)
    if sets.shape != (len(y_true), len(classes)):
        raise ValueError(f"sets must have shape ({len(y_true)}, {len(classes)}), got {sets.shape}")
    covered = sets[np.arange(len(y_true)), y_true]
    sizes = sets.sum(axis=1)
    hits = int(covered.sum())
    per_class = [{"class": name, "n": int(np.sum(y_true == k)),
                  "coverage": float(covered[y_true == k].mean()) if np.any(y_true == k) else None,
                  "mean_set_size": float(sizes[y_true == k].mean()) if np.any(y_true == k) else None}
                 for k, name in enumerate(classes)]
    return {"n": len(y_true),
            "coverage": {"value": hits / len(y_true),
                         "ci": list(wilson_interval(hits, len(y_true), confidence)),
                         "successes": hits, "n": len(y_true)},
            "mean_set_size": float(sizes.mean()), "empty": float(np.mean(sizes == 0)),
            "singleton": float(np.mean(sizes == 1)), "per_class": per_class}


def conformal_evaluation(calibration: pd.DataFrame, evaluation: pd.DataFrame, *, alpha: float = 0.1,
                         classes: Sequence[str] | None = None, routes: Sequence[str] | None = None,
                         score: str = "hinge", class_conditional: bool = False, allow_empty: bool = True,
                         confidence: float = 0.95) -> dict:
    """Calibrate each route on ``calibration`` rows (a split nothing else has seen), evaluate its prediction
    sets on ``evaluation`` rows (BRISC test or an external set); the structure is in the module
    docstring. ``classes`` defaults to the evaluation table's ``prob_<class>`` columns, ``routes`` to every route
    present in both tables."""
    shared = [r for r in present_routes(calibration) if r in set(present_routes(evaluation))]
    chosen = shared if routes is None else list(routes)
    missing = [r for r in chosen if r not in shared]
    if missing or not chosen:
        raise ValueError(f"routes {missing or chosen} are not in both the calibration and the "
                         f"evaluation table (both have {shared})")
    classes = table_classes(evaluation) if classes is None else list(classes)
    results = {}
    for route in chosen:
        y_cal, proba_cal = labels_and_probabilities(_route_rows(calibration, route), classes)
        y_eval, proba_eval = labels_and_probabilities(_route_rows(evaluation, route), classes)
        conformal = ConformalSets(score=score, class_conditional=class_conditional,
                                  allow_empty=allow_empty).fit(proba_cal, y_cal)
        results[route] = {"n_calibration": len(y_cal),
                          **set_summary(conformal.predict(proba_eval, alpha), y_eval, classes,
                                        confidence)}
    return to_jsonable({"alpha": alpha, "score": score, "class_conditional": class_conditional,
                        "allow_empty": allow_empty, "classes": list(classes), "routes": results})
