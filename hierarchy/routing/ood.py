"""Out-of-distribution scores from trunk features: how atypical an image is next to the training images.

A :class:`FeatureOODScorer` is fitted on the features of the *training* rows (and their labels) and
scores any feature matrix; higher scores are more atypical. ``threshold(q)`` is the ``q``-quantile of
the training rows' own scores, so ``is_atypical(features, q)`` refers about ``1 - q`` of images drawn
like the training ones.

The score is the squared Mahalanobis distance to the nearest class mean under one shared covariance,
estimated with Ledoit-Wolf shrinkage from the within-class residuals (Lee et al., 2018; shrinkage keeps
it invertible with more feature dimensions than images). It sees every feature direction, so a
contrast shift the classifier head ignores still raises it. :func:`energy_score` (Liu et al., 2020)
scores a head's logits instead, and sees only the directions the head uses.

Scored on the rows it was fitted on, a Mahalanobis distance is smaller than on fresh rows drawn the
same way (badly so with fewer rows than feature dimensions), so ``cv=k`` takes the training rows'
reference scores out of fold: each fold scored by a scorer fitted on the other folds. The thresholds
then refer about ``1 - q`` of fresh training-like images, not almost all of them.

Features are first L2-normalised (``normalize="l2"``), standardised with the training mean and
standard deviation (``"standard"``) or used as they are (``None``). The fitted state is plain arrays:
``save(dir)`` writes ``ood.json`` (settings, classes) and ``ood.safetensors`` (arrays), no pickle; a
:class:`MultiDepthOODScorer` writes ``depth_ood.json`` and ``depth_ood.safetensors`` beside one such pair per
depth (``depth_<k>/``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_array, check_is_fitted

from hierarchy.fileio import read_json, write_json

NORMALIZATIONS: tuple[str | None, ...] = ("l2", "standard", None)
CONFIG_FILE = "ood.json"
ARRAYS_FILE = "ood.safetensors"
_METHOD = "mahalanobis"
_FORMAT_VERSION = 1
_SCORER_ARRAYS = ("means_", "precision_", "train_scores_")
_NORMALIZER_ARRAYS = {"l2": (), "standard": ("center_", "scale_"), None: ()}
DEPTH_CONFIG_FILE = "depth_ood.json"
DEPTH_ARRAYS_FILE = "depth_ood.safetensors"
_DEPTH_METHOD = "multi_depth_mahalanobis"
_DEPTH_ARRAYS = ("log_center_", "log_scale_", "train_scores_")
DEPTH_KINDS = ("depth_means", "depth_stats")  # what a MultiDepthOODScorer reads (hierarchy.routing.depth_features)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the safetensors file ``path``; a missing or unreadable file is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"no OOD scorer file {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001  (safetensors raises its own error type for a corrupt header)
        raise ValueError(f"OOD scorer file {path} is not a readable safetensors file: {err}") from err


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass overwrite=True to replace them")


def energy_score(logits: np.ndarray, T: float = 1.0) -> np.ndarray:  # noqa: N803  (T as in the paper)
    """Energy ``-T * logsumexp(logits / T)`` of each row of ``(n, k)`` logits; higher is more atypical.

    Parameters
    ----------
    logits : array of shape (n, k)
        Unnormalised class scores (before softmax).
    T : float, default 1.0
        Temperature; must be positive.
    """
    if T <= 0:
        raise ValueError(f"temperature T must be positive, got {T}")
    logits = check_array(logits, dtype=float, input_name="logits")
    return -T * logsumexp(logits / T, axis=1)


def out_of_fold_splits(cv: int, labels: np.ndarray, groups: Sequence | None = None) -> list:
    """``cv`` (fit rows, held-out rows) index pairs over ``labels``: stratified by label where every class has
    ``cv`` rows, and keeping each of ``groups`` in one fold when given."""
    if len(labels) < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} training rows, got {len(labels)}")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} entries for {len(labels)} rows")
    if groups is not None and len(set(groups)) < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} groups, got {len(set(groups))}")
    stratify = np.unique(labels, return_counts=True)[1].min() >= cv
    if groups is None:
        folds = StratifiedKFold(cv, shuffle=True, random_state=0) if stratify else KFold(cv, shuffle=True,
                                                                                         random_state=0)
        return list(folds.split(labels, labels))
    folds = StratifiedGroupKFold(cv, shuffle=True, random_state=0) if stratify else GroupKFold(cv)
    return list(folds.split(labels, labels, np.asarray(groups)))


def _squared_mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``(n, k)`` squared Mahalanobis distances of rows of ``x`` to each row of ``means``."""
    xp = x @ precision
    own = np.einsum("ij,ij->i", xp, x)[:, None]
    centre = np.einsum("ij,jk,ik->i", means, precision, means)[None, :]
    # x'Px - 2x'Pm + m'Pm loses a few ulps when x is next to m; distances are never negative
    return np.maximum(own - 2 * xp @ means.T + centre, 0.0)


def _gaussians(x: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Class means of ``x`` and the precision of their shared, Ledoit-Wolf-shrunk within-class covariance."""
    member = labels[:, None] == np.array(classes)[None, :]
    means = (member.T @ x) / member.sum(axis=0)[:, None]
    residuals = x - means[member.argmax(axis=1)]
    return means, LedoitWolf(assume_centered=True).fit(residuals).precision_


class FeatureOODScorer(BaseEstimator):
    """Class-conditional Mahalanobis out-of-distribution score, fitted on training features only.

    Parameters
    ----------
    normalize : {"l2", "standard", None}, default "l2"
        Feature normalisation applied before fitting and scoring.
    cv : int or None, default None
        Number of folds (stratified by label) for out-of-fold ``train_scores_``; None scores the training
        rows with the scorer fitted on all of them.

    Attributes
    ----------
    classes_ : list of str
        Class labels seen in ``fit`` (one pseudo-class ``"all"`` when no labels were given).
    n_features_in_ : int
        Feature dimension.
    n_train_ : int
        Number of training rows the scorer was fitted on.
    means_ : ndarray of shape (n_classes, n_features_in_)
        Class means of the normalised training features.
    precision_ : ndarray of shape (n_features_in_, n_features_in_)
        Inverse of the shared, shrunk within-class covariance.
    train_scores_ : ndarray of shape (n_train_,)
        Scores of the training rows (out of fold with ``cv``), whose quantiles are the referral thresholds.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scorer = FeatureOODScorer().fit(rng.normal(size=(200, 8)) + 3, np.repeat(["a", "b"], 100))
    >>> bool(scorer.is_atypical(rng.normal(size=(5, 8)) - 3, q=0.95).all())
    True
    """

    def __init__(self, normalize: str | None = "l2", cv: int | None = None):
        self.normalize = normalize
        self.cv = cv

    def _check_params(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.cv is not None and (not isinstance(self.cv, int) or self.cv < 2):
            raise ValueError(f"cv must be None or an integer >= 2, got {self.cv!r}")

    def _features(self, features: np.ndarray, *, fitting: bool = False) -> np.ndarray:
        x = check_array(features, dtype=float, input_name="features")
        if not fitting and x.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {x.shape[1]} dimensions but the scorer was fitted on "
                             f"{self.n_features_in_}")
        if self.normalize == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.normalize == "standard":
            if fitting:
                std = x.std(axis=0)
                self.center_, self.scale_ = x.mean(axis=0), np.where(std > 1e-12, std, 1.0)
            return (x - self.center_) / self.scale_
        return x

    def fit(self, train_features: np.ndarray, train_labels: Sequence | None = None,
            groups: Sequence | None = None) -> FeatureOODScorer:
        """Fit on the features of the training rows (and their labels), nothing else.

        Parameters
        ----------
        train_features : array of shape (n, d)
            Trunk features of the training images.
        train_labels : sequence of length n, optional
            Their classes; without labels one Gaussian is fitted to all rows.
        groups : sequence of length n, optional
            Rows that must share a fold for the out-of-fold scores (e.g. an image and its augmented
            variants, so that a variant's reference score is not lowered by its own source image).

        Returns
        -------
        self
        """
        self._check_params()
        x = self._features(train_features, fitting=True)
        if len(x) < 2:
            raise ValueError(f"fitting needs at least 2 training rows, got {len(x)}")
        labels = (np.full(len(x), "all") if train_labels is None
                  else np.asarray([str(v) for v in train_labels]))
        if labels.shape != (len(x),):
            raise ValueError(f"train_labels has {len(labels)} entries for {len(x)} feature rows")
        self.classes_ = sorted(set(labels))
        self.n_features_in_ = x.shape[1]
        self.n_train_ = len(x)
        self.means_, self.precision_ = _gaussians(x, labels, self.classes_)
        self.train_scores_ = self._score(x) if self.cv is None else self._out_of_fold_scores(x, labels, groups)
        return self

    def _out_of_fold_scores(self, x: np.ndarray, labels: np.ndarray, groups: Sequence | None) -> np.ndarray:
        folds = out_of_fold_splits(self.cv, labels, groups)
        scores = np.empty(len(x))
        for fit_rows, held_out in folds:
            classes = sorted(set(labels[fit_rows]))
            means, precision = _gaussians(x[fit_rows], labels[fit_rows], classes)
            scores[held_out] = _squared_mahalanobis(x[held_out], means, precision).min(axis=1)
        return scores

    def _score(self, x: np.ndarray) -> np.ndarray:
        return _squared_mahalanobis(x, self.means_, self.precision_).min(axis=1)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Atypicality of each row of ``features`` (higher is more atypical); shape ``(n,)``."""
        check_is_fitted(self, "train_scores_")
        return self._score(self._features(features))

    def threshold(self, q: float) -> float:
        """The ``q``-quantile of the training rows' scores: the referral threshold for ``q``."""
        check_is_fitted(self, "train_scores_")
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        return float(np.quantile(self.train_scores_, q))

    def is_atypical(self, features: np.ndarray, q: float) -> np.ndarray:
        """True where a row scores above ``threshold(q)`` (about ``1 - q`` of training-like rows)."""
        return self.score(features) > self.threshold(q)

    def _array_names(self) -> tuple[str, ...]:
        return (*_SCORER_ARRAYS, *_NORMALIZER_ARRAYS[self.normalize])

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays, by attribute name without the trailing ``_``."""
        check_is_fitted(self, "train_scores_")
        return {name.rstrip("_"): np.ascontiguousarray(getattr(self, name), dtype=np.float64)
                for name in self._array_names()}

    def config(self) -> dict:
        """Settings and fitted non-array state, JSON-ready."""
        check_is_fitted(self, "train_scores_")
        return {"format_version": _FORMAT_VERSION, "method": _METHOD, "normalize": self.normalize, "cv": self.cv,
                "classes": list(self.classes_), "n_features_in": int(self.n_features_in_),
                "n_train": int(self.n_train_)}

    def to_dict(self) -> dict:
        """Everything needed to rebuild the scorer as plain JSON types (arrays as nested lists)."""
        return {**self.config(),
                "arrays": {name: array.tolist() for name, array in self.state_arrays().items()}}

    @classmethod
    def from_state(cls, config: Mapping, arrays: Mapping[str, np.ndarray],
                   source: str = "the state") -> FeatureOODScorer:
        """Rebuild a fitted scorer from :meth:`config` and :meth:`state_arrays` output."""
        if config.get("format_version") != _FORMAT_VERSION or config.get("method") != _METHOD:
            raise ValueError(f"{source} holds a {config.get('method')!r} OOD scorer of format version "
                             f"{config.get('format_version')!r}; this library reads {_METHOD!r} "
                             f"version {_FORMAT_VERSION}")
        scorer = cls(normalize=config["normalize"], cv=config.get("cv"))
        scorer._check_params()
        missing = [n.rstrip("_") for n in scorer._array_names() if n.rstrip("_") not in arrays]
        if missing:
            raise ValueError(f"{source} lacks the OOD scorer arrays {missing}")
        for name in scorer._array_names():
            setattr(scorer, name, np.asarray(arrays[name.rstrip("_")], dtype=np.float64))
        scorer.classes_ = list(config["classes"])
        scorer.n_features_in_ = int(config["n_features_in"])
        scorer.n_train_ = int(config["n_train"])
        return scorer

    @classmethod
    def from_dict(cls, state: Mapping) -> FeatureOODScorer:
        """Inverse of :meth:`to_dict`."""
        return cls.from_state(state, state.get("arrays", {}))

    def save(self, directory: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write ``ood.json`` and ``ood.safetensors`` under ``directory``; returns their paths.

        Raises ``FileExistsError`` when either exists, unless ``overwrite``.
        """
        directory = Path(directory)
        paths = [directory / CONFIG_FILE, directory / ARRAYS_FILE]
        _refuse_existing(paths, overwrite)
        config, arrays = self.config(), self.state_arrays()
        directory.mkdir(parents=True, exist_ok=True)
        write_json(paths[0], config)
        save_file(arrays, str(paths[1]))
        return paths

    @classmethod
    def load(cls, directory: str | Path) -> FeatureOODScorer:
        """Read a scorer written by :meth:`save`."""
        directory = Path(directory)
        config_path, arrays_path = directory / CONFIG_FILE, directory / ARRAYS_FILE
        config = read_json(config_path, what="OOD scorer settings")
        if not isinstance(config, dict):
            raise ValueError(f"OOD scorer settings {config_path} must be a JSON object")
        return cls.from_state(config, _read_arrays(arrays_path), source=str(config_path))


class MultiDepthOODScorer(BaseEstimator):
    """Class-conditional Mahalanobis scores at several network depths, combined into one score.

    Each depth gets its own :class:`FeatureOODScorer` (fitted on the training rows' features of that depth,
    reference scores out of fold); a row's score at a depth is turned into a z-score, ``(log s - m) / sd``
    with ``m`` and ``sd`` of the log reference scores, and the z-scores are summed. Early layers see
    texture and intensity statistics that the last layer has pooled away (a phase map, a CT window, noise),
    the last layer sees anatomy; the sum needs no weights to choose. Pass per-depth channel means, or means
    and standard deviations side by side (feature statistics). Thresholds are quantiles of the combined
    out-of-fold training scores, as for :class:`FeatureOODScorer`.

    Parameters
    ----------
    normalize : {"l2", "standard", None}, default "standard"
        Normalisation of each depth's features (see :class:`FeatureOODScorer`).
    cv : int, default 5
        Folds for the out-of-fold reference scores of each depth.
    """

    def __init__(self, normalize: str | None = "standard", cv: int = 5):
        self.normalize = normalize
        self.cv = cv

    def fit(self, depth_features: Sequence[np.ndarray], train_labels: Sequence | None = None,
            groups: Sequence | None = None) -> MultiDepthOODScorer:
        """Fit one scorer per depth on the training rows' features (a list of (n, d_k) arrays); ``groups`` as
        in :meth:`FeatureOODScorer.fit`."""
        if not len(depth_features):
            raise ValueError("depth_features is empty: pass one (n, d) feature array per depth")
        self.scorers_ = [FeatureOODScorer(self.normalize, self.cv).fit(f, train_labels, groups)
                         for f in depth_features]
        logs = [np.log(np.maximum(s.train_scores_, 1e-12)) for s in self.scorers_]
        self.log_center_ = np.array([x.mean() for x in logs])
        self.log_scale_ = np.array([max(x.std(), 1e-12) for x in logs])
        self.train_scores_ = self._combine(logs)
        return self

    def _combine(self, logs: Sequence[np.ndarray]) -> np.ndarray:
        return np.sum([(x - c) / s for x, c, s in zip(logs, self.log_center_, self.log_scale_, strict=True)], axis=0)

    def depth_scores(self, depth_features: Sequence[np.ndarray]) -> np.ndarray:
        """(n, n_depths) z-scores of each row at each depth."""
        check_is_fitted(self, "train_scores_")
        if len(depth_features) != len(self.scorers_):
            raise ValueError(f"got features of {len(depth_features)} depths; the scorer was fitted on "
                             f"{len(self.scorers_)}")
        logs = [np.log(np.maximum(s.score(f), 1e-12)) for s, f in zip(self.scorers_, depth_features, strict=True)]
        return np.stack([(x - c) / s for x, c, s in zip(logs, self.log_center_, self.log_scale_, strict=True)],
                        axis=1)

    def score(self, depth_features: Sequence[np.ndarray]) -> np.ndarray:
        """Atypicality of each row (higher is more atypical); shape ``(n,)``."""
        return self.depth_scores(depth_features).sum(axis=1)

    def threshold(self, q: float) -> float:
        """The ``q``-quantile of the combined out-of-fold training scores."""
        check_is_fitted(self, "train_scores_")
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q}")
        return float(np.quantile(self.train_scores_, q))

    def is_atypical(self, depth_features: Sequence[np.ndarray], q: float) -> np.ndarray:
        """True where a row scores above ``threshold(q)``."""
        return self.score(depth_features) > self.threshold(q)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write ``depth_ood.json`` (settings), ``depth_ood.safetensors`` (the z-score centres and scales and
        the combined training scores) and each depth's scorer under ``depth_<k>/``; returns every path written.

        Raises ``FileExistsError`` when ``depth_ood.json`` or ``depth_ood.safetensors`` exists, unless ``overwrite``.
        """
        check_is_fitted(self, "train_scores_")
        directory = Path(directory)
        paths = [directory / DEPTH_CONFIG_FILE, directory / DEPTH_ARRAYS_FILE]
        _refuse_existing(paths, overwrite)
        directory.mkdir(parents=True, exist_ok=True)
        written = [p for k, s in enumerate(self.scorers_) for p in s.save(directory / f"depth_{k}", overwrite=overwrite)]
        write_json(paths[0], {"format_version": _FORMAT_VERSION, "method": _DEPTH_METHOD, "normalize": self.normalize,
                              "cv": self.cv, "n_depths": len(self.scorers_)})
        save_file({name.rstrip("_"): np.ascontiguousarray(getattr(self, name), dtype=np.float64)
                   for name in _DEPTH_ARRAYS}, str(paths[1]))
        return [*paths, *written]

    @classmethod
    def load(cls, directory: str | Path) -> MultiDepthOODScorer:
        """Read a scorer written by :meth:`save`; a missing, malformed or inconsistent file is an error naming it."""
        directory = Path(directory)
        config_path = directory / DEPTH_CONFIG_FILE
        config = read_json(config_path, what="multi-depth OOD scorer settings")
        if (not isinstance(config, dict) or config.get("format_version") != _FORMAT_VERSION
                or config.get("method") != _DEPTH_METHOD):
            raise ValueError(f"{config_path} is not a {_DEPTH_METHOD!r} OOD scorer of format version "
                             f"{_FORMAT_VERSION}")
        n_depths = config.get("n_depths")
        if not isinstance(n_depths, int) or isinstance(n_depths, bool) or n_depths < 1:
            raise ValueError(f"{config_path}: 'n_depths' must be a positive integer, got {n_depths!r}")
        arrays_path = directory / DEPTH_ARRAYS_FILE
        arrays = _read_arrays(arrays_path)
        scorer = cls(normalize=config.get("normalize"), cv=config.get("cv"))
        for name in _DEPTH_ARRAYS:
            if name.rstrip("_") not in arrays:
                raise ValueError(f"{arrays_path} lacks the array {name.rstrip('_')!r}")
            setattr(scorer, name, np.asarray(arrays[name.rstrip("_")], dtype=np.float64))
        if scorer.log_center_.shape != (n_depths,) or scorer.log_scale_.shape != (n_depths,):
            raise ValueError(f"{arrays_path} holds z-score centres and scales for {scorer.log_center_.shape} "
                             f"depths; {config_path} says {n_depths}")
        scorer.scorers_ = [FeatureOODScorer.load(directory / f"depth_{k}") for k in range(n_depths)]
        return scorer
