"""Deep nearest-neighbour out-of-distribution score (Sun et al., "Out-of-distribution detection with deep
nearest neighbors", ICML 2022): the distance from an image's L2-normalised features to its ``k``-th nearest
neighbour among the fitted rows' features; higher is more atypical.

Unlike a Mahalanobis distance it assumes no Gaussian shape, so a typical set made of training images *and*
their acquisition-shifted variants (:mod:`hierarchy.data.valid_shift`), several clusters per class, is
described as it is. Reference scores are out of fold (``cv`` folds, ``groups`` kept together so that an image's
own variants are never its neighbours), and ``threshold(q)`` is their ``q``-quantile, as for
:class:`hierarchy.routing.ood.FeatureOODScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted

from hierarchy.routing.ood import out_of_fold_splits


def _normalised(features: np.ndarray) -> np.ndarray:
    x = check_array(features, dtype=float, input_name="features")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _kth_distance(x: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each row of ``x`` to its ``k``-th nearest row of ``bank`` (unit rows both)."""
    squared = np.maximum(2.0 - 2.0 * x @ bank.T, 0.0)
    return np.sqrt(np.partition(squared, k - 1, axis=1)[:, k - 1])


class KNNOODScorer(BaseEstimator):
    """k-th nearest-neighbour distance on L2-normalised features, fitted on training features only.

    Parameters
    ----------
    k : int, default 10
        Which neighbour's distance is the score.
    cv : int, default 5
        Folds for the out-of-fold reference scores (``train_scores_``).
    """

    def __init__(self, k: int = 10, cv: int = 5) -> None:
        self.k = k
        self.cv = cv

    def fit(self, train_features: np.ndarray, train_labels: Sequence | None = None,
            groups: Sequence | None = None) -> KNNOODScorer:
        """Keep the normalised ``train_features``; ``train_labels`` only stratify the folds, ``groups`` share one."""
        if self.k < 1 or self.cv < 2:
            raise ValueError(f"k must be >= 1 and cv >= 2, got k={self.k}, cv={self.cv}")
        bank = _normalised(train_features)
        labels = np.asarray(["all"] * len(bank) if train_labels is None else [str(v) for v in train_labels])
        if len(labels) != len(bank):
            raise ValueError(f"train_labels has {len(labels)} entries for {len(bank)} feature rows")
        folds = out_of_fold_splits(self.cv, labels, groups)
        if min(len(fit_rows) for fit_rows, _ in folds) < self.k:
            raise ValueError(f"k={self.k} neighbours need more rows in every fold; got {len(bank)} rows")
        scores = np.empty(len(bank))
        for fit_rows, held_out in folds:
            scores[held_out] = _kth_distance(bank[held_out], bank[fit_rows], self.k)
        self.bank_, self.train_scores_ = bank, scores
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Atypicality of each row of ``features`` (higher is more atypical); shape ``(n,)``."""
        check_is_fitted(self, "train_scores_")
        x = _normalised(features)
        if x.shape[1] != self.bank_.shape[1]:
            raise ValueError(f"features have {x.shape[1]} dimensions but the scorer was fitted on "
                             f"{self.bank_.shape[1]}")
        return _kth_distance(x, self.bank_, self.k)

    def threshold(self, q: float) -> float:
        """The ``q``-quantile of the out-of-fold training scores: the referral threshold for ``q``."""
        check_is_fitted(self, "train_scores_")
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        return float(np.quantile(self.train_scores_, q))
