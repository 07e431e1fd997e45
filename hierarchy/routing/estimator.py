"""``Router``: a parent-group classifier, one expert per group and a flat baseline, as a scikit-learn estimator."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from hierarchy.data import PreprocessConfig
from hierarchy.data.tta import tta_views
from hierarchy.data.valid_shift import valid_shifts
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.predictions import (
    HEADER_ROUTE,
    ROUTES,
    label_indices,
    prediction_table,
    probabilities,
)
from hierarchy.progress import progress_bar
from hierarchy.provenance import run_record
from hierarchy.routing.components import (
    Component,
    ImageClassifier,
    Task,
    UntrustedCodeError,
    load_component,
    refuse_test_rows,
    untrusted_code,
    untrusted_message,
)
from hierarchy.routing.config import FIELDS, RouterConfig, tta_names
from hierarchy.routing.depth_features import predict_depth_inputs
from hierarchy.routing.fitting import (
    choose_ood_trunk,
    feature_array,
    fit_components,
    fit_ood_scorer,
    ood_component,
    split_validation,
    training_frame,
)
from hierarchy.routing.inputs import Inputs, Skipped, batches, decode_workers, resolve_inputs
from hierarchy.routing.ood import DEPTH_KINDS, FeatureOODScorer, MultiDepthOODScorer
from hierarchy.routing.persistence import (
    FORMAT_VERSION,
    ROUTER_FILE,
    RouterError,
    load_part,
    locked_for_reading,
    read_manifest,
    save_folder,
)
from hierarchy.routing.routes import (
    RouteProbabilities,
    apply_rejection,
    choose_ensemble_weight,
    combine_routes,
)
from hierarchy.temperature import apply_temperature, fit_temperature
from hierarchy.training import TrainConfig, resolve_runtime

logger = logging.getLogger(__name__)

OOD_DIR = "ood"
DEPTH_OOD_DIR = "depth_ood"
_OOD = ".ood"  # key of the OOD scores among the per-component outputs (no parent group starts with '.')
CALIBRATED_ROUTES = ("flat", "hierarchical", "soft", "ensemble")  # oracle borrows the hierarchical temperature
_TINY = np.finfo(float).tiny  # a probability of exactly 0 would give an infinite logit


_DEFAULTS = RouterConfig()


def _ordered(values: pd.Series, default: Sequence[str]) -> tuple[str, ...]:
    """The distinct values, in ``default``'s order when they are all in it, else sorted."""
    found = {str(v) for v in values.dropna().unique()}
    return tuple(v for v in default if v in found) if found <= set(default) else tuple(sorted(found))


def _header_planes(frame: pd.DataFrame | None) -> list[str | None] | None:
    """The header plane of each row where the geometry gives one (not oblique), else None; None for a frame
    without any (no DICOM/NIfTI slices)."""
    if frame is None or "header_plane" not in frame.columns or "plane_source" not in frame.columns:
        return None
    usable = (frame["plane_source"] == "header").to_numpy()
    if not usable.any():
        return None
    return [p if ok else None for p, ok in zip(frame["header_plane"], usable, strict=True)]


class Router(BaseEstimator):
    """Two-stage classifier: a parent-group classifier (the scan plane, by default) routes each image to its
    group's expert; a flat model classifies every image directly.

    ``__init__`` only stores the parameters (so ``get_params``, ``set_params`` and ``sklearn.base.clone``
    work); ``fit`` learns the class and group lists from the training frame and trains the components.

    Parameters
    ----------
    plane, experts, flat : str or Component
        A backbone name (``simple_cnn`` or any ``timm.list_models()`` name, trained as ``mode`` says) or an
        unfitted component (``ModuleClassifier``, ``SklearnClassifier``, ``ImageClassifier``) that the Router
        clones for each job; ``flat=None`` trains no flat model (no ``flat`` and ``ensemble`` routes).
    mode, weights, expert_init, parent, preprocess, train, plane_epochs, expert_epochs, val_fraction, \
feature_views, head_neutral_weight, expert_anchor_weight, seed, ood
        As in ``RouterConfig``, which holds their defaults and checks them (``train=None`` and
        ``preprocess=None``: the defaults; ``seed`` is also every component's training seed).
    tta : bool, str, sequence of str or None
        Default test-time augmentation of ``predict_routes`` (and of the validation predictions ``fit``
        calibrates on): as ``RouterConfig.tta``, or True (``DEFAULT_TTA``) or a sequence of view names.

    Attributes
    ----------
    classes_ : tuple of str
        Tumour classes learned from the training frame (BRISC's order when they are BRISC's).
    planes_ : tuple of str
        Parent groups learned from the training frame's ``parent`` column.
    plane_model_, experts_, flat_model_ : Component, dict, Component or None
        The fitted components; ``components_`` maps ``"plane"``, each group and ``"flat"`` to them.
    ensemble_weight_ : float or None
        Share of the flat model in the ``ensemble`` route, chosen on validation data.
    temperatures_ : dict
        Temperature per route, fitted on validation data by ``calibrate``.
    record_ : dict
        Provenance: settings, seed, data hashes, software versions.
    ood_scorer_ : FeatureOODScorer or None
        Out-of-distribution scorer fitted on the training rows' trunk features (None with ``ood=False``,
        when no component has a trunk, or for a Router saved without one).
    ood_trunk_ : {"shared", "flat", "plane"} or None
        Whose trunk ``ood_scorer_`` reads: the one every component shares, else the flat model's, else the
        parent-group classifier's.
    depth_ood_scorer_ : MultiDepthOODScorer or None
        Mahalanobis over several depths of the shared trunk, set by ``fit_depth_ood`` (None until then) and
        saved with the Router; ``depth_ood_kind_`` says which features it reads (``DEPTH_KINDS``) and
        ``depth_ood_shifts_`` whether its typical set holds valid acquisition shifts of the training rows.

    Routes (``hierarchy.predictions.ROUTES``): ``flat``, ``hierarchical`` (the most probable group's expert),
    ``soft`` (experts mixed by group probability), ``ensemble`` (``w * flat + (1 - w) * soft``) and
    ``oracle`` (the expert of the true group; index-frame inputs only), and for DICOM/NIfTI slices ``header``
    (the expert of the plane from the file's geometry where the slice has one, else as ``hierarchical``).

    Examples
    --------
    >>> from hierarchy import Router
    >>> router = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", mode="frozen",
    ...                 weights=None, expert_init="scratch")
    >>> router.get_params()["mode"]
    'frozen'
    """

    def __init__(self, plane: str | Component = _DEFAULTS.plane, experts: str | Component = _DEFAULTS.experts,
                 flat: str | Component | None = _DEFAULTS.flat, *, mode: str = _DEFAULTS.mode,
                 weights: str | None = _DEFAULTS.weights, expert_init: str = _DEFAULTS.expert_init,
                 parent: str = _DEFAULTS.parent, preprocess: PreprocessConfig | None = None,
                 train: TrainConfig | None = None, plane_epochs: int | None = _DEFAULTS.plane_epochs,
                 expert_epochs: int | None = _DEFAULTS.expert_epochs, val_fraction: float = _DEFAULTS.val_fraction,
                 feature_views: int = _DEFAULTS.feature_views,
                 head_neutral_weight: float = _DEFAULTS.head_neutral_weight,
                 expert_anchor_weight: float = _DEFAULTS.expert_anchor_weight, seed: int = _DEFAULTS.seed,
                 ood: bool = _DEFAULTS.ood,
                 tta: bool | str | Sequence[str] | None = _DEFAULTS.tta) -> None:
        self.plane = plane
        self.experts = experts
        self.flat = flat
        self.mode = mode
        self.weights = weights
        self.expert_init = expert_init
        self.parent = parent
        self.preprocess = preprocess
        self.train = train
        self.plane_epochs = plane_epochs
        self.expert_epochs = expert_epochs
        self.val_fraction = val_fraction
        self.feature_views = feature_views
        self.head_neutral_weight = head_neutral_weight
        self.expert_anchor_weight = expert_anchor_weight
        self.seed = seed
        self.ood = ood
        self.tta = tta

    # -- configuration -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RouterConfig) -> Router:
        """An unfitted Router with ``config``'s settings."""
        return cls(**{name: getattr(config, name) for name in FIELDS})

    def _settings(self) -> RouterConfig:
        """This Router's parameters as a ``RouterConfig`` (component objects kept as they are): defaults filled
        in and every setting checked, in one place."""
        return RouterConfig(**{**{name: getattr(self, name) for name in FIELDS},
                               "preprocess": self.preprocess or PreprocessConfig(),
                               "train": self.train or TrainConfig(), "tta": self._tta_setting()})

    @property
    def config(self) -> RouterConfig:
        """This Router's settings as a ``RouterConfig``; only for components given by backbone names."""
        objects = [n for n in ("plane", "experts", "flat") if isinstance(getattr(self, n), Component)]
        if objects:
            raise TypeError(f"{objects} are component objects, not backbone names, so this Router has no "
                            "RouterConfig; save() stores its components")
        return self._settings()

    def _tta_setting(self) -> str | None:
        """``tta`` as ``RouterConfig`` stores it: comma-separated view names, or None."""
        return ",".join(tta_names(self.tta)) or None

    def settings(self) -> dict[str, Any]:
        """``config.to_dict()``, with component objects replaced by their ``describe()``; JSON-ready."""
        config = self._settings()
        resolved = {name: getattr(config, name) for name in FIELDS}
        for name in ("plane", "experts", "flat"):
            if isinstance(resolved[name], Component):
                resolved[name] = resolved[name].describe()
        resolved["preprocess"], resolved["train"] = config.preprocess.to_dict(), config.train.to_dict()
        return resolved

    # -- training ------------------------------------------------------------------------------
    def _component(self, template: str | Component, task: Task, job: str,
                   init_from: Component | None = None, aux_task: Task | None = None) -> Component:
        settings = self._settings()
        train_config = settings.train_config(job)
        if isinstance(template, Component):
            return clone(template).set_params(task=task, preprocess=settings.preprocess,
                                              train_config=template.train_config or train_config)
        if not isinstance(template, str):
            raise TypeError(f"{job}: expected a backbone name or a Component, got {type(template).__name__}")
        shared = self.mode in ("shared", "joint")  # every head on the flat model's trunk
        if job == "expert":
            init = "flat" if shared else self.expert_init
            weights = {"imagenet": "imagenet", "scratch": None, "flat": None}[init]
            init_from = init_from if init == "flat" else None
        else:
            weights = self.weights
        if not shared:
            mode = self.mode
        elif job == "flat":
            mode = "joint" if self.mode == "joint" else "finetune"
        else:
            mode = "aux" if self.mode == "joint" and job == "plane" else "frozen"
        return ImageClassifier(template, task, preprocess=settings.preprocess, weights=weights,
                               train_config=train_config, mode=mode, init_from=init_from,
                               aux_task=aux_task if mode == "joint" else None)

    def fit(self, frame: pd.DataFrame | str | Path, val_frame: pd.DataFrame | str | Path | None = None, *,
            out_dir: str | Path | None = None, resume: bool = False) -> Router:
        """Train the parent-group classifier, one expert per group and (unless ``flat`` is None) the flat model.

        Parameters
        ----------
        frame, val_frame : DataFrame or path
            Dataset-index frames (columns ``path``, ``label`` and the ``parent`` column) or a dataset root
            (its test split left out); frames holding test-split rows are refused. Without ``val_frame``
            about ``val_fraction`` of ``frame`` is held out (stratified, duplicates kept together, ``seed``).
            Rows without a parent group train the flat model only.
        out_dir : path, optional
            Keeps per-component training logs, checkpoints (``resume``) and the frozen-feature cache.

        Returns
        -------
        self
            Fitted: with ``ood``, the OOD scorer on one trunk's features of the training rows (never the
            validation rows); the ensemble weight is chosen on the validation rows, then every route's
            temperature.
        """
        self._settings()  # refuses settings that cannot train, before anything trains
        train = training_frame(frame, "frame")
        if self.parent not in train.columns:
            raise ValueError(f"the training frame has no {self.parent!r} column (parent={self.parent!r}); "
                             f"its columns are {list(train.columns)}")
        if val_frame is None:
            train, val = split_validation(train, parent=self.parent, val_fraction=self.val_fraction, seed=self.seed)
        else:
            val = training_frame(val_frame, "val_frame")
        both = pd.concat([train, val], ignore_index=True)
        classes = _ordered(both["label"], TUMOR_CLASSES)
        planes = _ordered(both[self.parent], PLANES)
        clash = {"plane", "flat"} & set(planes)
        if clash or any("/" in p or p.startswith(".") for p in planes):
            raise ValueError(f"parent groups {list(planes)}: a group may not be named 'plane' or 'flat', contain "
                             "'/' or start with '.'")
        ordered = self.build_components(classes, planes)
        flat, plane_model = ordered.get("flat"), ordered["plane"]
        experts = {p: ordered[p] for p in planes}
        extracted = fit_components(ordered, train, val, Path(out_dir) / "training" if out_dir is not None else None,
                                   resume=resume, feature_views=self.feature_views,
                                   head_neutral_weight=self.head_neutral_weight,
                                   expert_anchor_weight=self.expert_anchor_weight)
        self._set_fitted(classes, planes, plane_model, experts, flat)
        if self.ood:
            self._fit_ood(train, extracted)
        if flat is not None:
            self.ensemble_weight_ = self._choose_ensemble_weight(val)
        self.calibrate(val, routes=CALIBRATED_ROUTES if flat is not None else ("hierarchical", "soft"))
        self.record_ = run_record({**self.settings(), "classes": list(classes), "planes": list(planes),
                                   "ensemble_weight": self.ensemble_weight_, "temperatures": self.temperatures_},
                                  runtime=resolve_runtime().describe(), seed=self.seed,
                                  frames={"train": train, "val": val})
        return self

    def build_components(self, classes: Sequence[str], planes: Sequence[str]) -> dict[str, Component]:
        """The unfitted components ``fit`` trains for these label sets, in training order (``"flat"`` when
        there is one, ``"plane"``, then one expert per group), each with its backbone, starting weights, mode
        and training settings; combinations that cannot train are refused here, before any training."""
        self._settings()
        classes, planes = tuple(classes), tuple(planes)
        flat = (self._component(self.flat, Task("label", classes), "flat", aux_task=Task(self.parent, planes))
                if self.flat is not None else None)
        if self.expert_init == "flat" and not isinstance(flat, ImageClassifier):
            raise ValueError("expert_init='flat' needs the flat model to be a backbone name")
        plane_model = self._component(self.plane, Task(self.parent, planes), "plane",
                                      init_from=flat if self.mode in ("shared", "joint") else None)
        experts = {p: self._component(self.experts, Task("label", classes, column=self.parent, value=p), "expert",
                                      init_from=flat) for p in planes}
        return {**({"flat": flat} if flat is not None else {}), "plane": plane_model, **experts}

    def _set_fitted(self, classes: tuple[str, ...], planes: tuple[str, ...], plane_model: Component,
                    experts: dict[str, Component], flat: Component | None) -> None:
        self.classes_, self.planes_ = classes, planes
        self.plane_model_, self.experts_, self.flat_model_ = plane_model, experts, flat
        self.components_: dict[str, Component] = {"plane": plane_model, **experts,
                                                  **({"flat": flat} if flat is not None else {})}
        self.ensemble_weight_: float | None = None
        self.temperatures_: dict[str, float] = {}
        self.record_: dict[str, Any] = {}
        self._trunks = {name: c.trunk_key() for name, c in self.components_.items()}
        self.ood_scorer_: FeatureOODScorer | None = None
        self.ood_trunk_: str | None = None
        self.depth_ood_scorer_: MultiDepthOODScorer | None = None
        self.depth_ood_kind_: str | None = None
        self.depth_ood_shifts_ = False

    def _fit_ood(self, train: pd.DataFrame, extracted: dict[str, np.ndarray]) -> None:
        """Fit ``ood_scorer_`` on the training rows' features of the trunk ``choose_ood_trunk`` picks."""
        self.ood_trunk_ = choose_ood_trunk(self._trunks)
        if self.ood_trunk_ is None:
            logger.warning("no component has a shareable trunk, so this Router has no out-of-distribution score")
            return
        self.ood_scorer_ = fit_ood_scorer(self.components_[ood_component(self.ood_trunk_)], train, extracted)
        logger.info("OOD scorer fitted on the %s trunk's features of %d training images", self.ood_trunk_,
                    len(train))

    def fit_depth_ood(self, frame: pd.DataFrame | str | Path, kind: str = "depth_means", *, shifts: bool = False,
                      seed: int = 0, batch_size: int = 32) -> Router:
        """Fit ``depth_ood_scorer_`` (a ``MultiDepthOODScorer``, reference scores out of fold) on the ``kind``
        features (``DEPTH_KINDS``) of the shared trunk for ``frame``, which must be training rows (test-split
        rows are refused; labels from its ``label`` column). Needs one trunk shared by every component (mode
        ``joint``, or ``frozen`` on one backbone). Returns self.

        ``shifts``: the typical set also holds one valid acquisition shift of each row
        (:func:`hierarchy.data.valid_shift.valid_shifts`, drawn with ``seed``; an image and its shift share a
        fold of the reference scores), so that a healthy brain from another scanner is not referred for its
        acquisition alone. ``depth_means`` with shifts is the scorer the OOD suite's declared rule chose on two
        folds' validation rows (``reports/benchmarks/ood_suite_fold1``)."""
        check_is_fitted(self)
        if kind not in DEPTH_KINDS:
            raise ValueError(f"unknown multi-depth kind {kind!r}; choose from {DEPTH_KINDS}")
        train = training_frame(frame, "frame")
        features = predict_depth_inputs(self, train, kind, batch_size=batch_size)
        labels = train["label"].astype(str).to_numpy()
        groups = None
        if shifts:
            references = train["path"].sample(min(16, len(train)), random_state=seed).tolist()  # histograms
            shifted = predict_depth_inputs(self, valid_shifts(train["path"].tolist(), seed, references), kind,
                                           batch_size=batch_size)
            features = [np.concatenate(pair) for pair in zip(features, shifted, strict=True)]
            labels, groups = np.r_[labels, labels], np.r_[np.arange(len(train)), np.arange(len(train))]
        self.depth_ood_scorer_ = MultiDepthOODScorer().fit(features, labels, groups)
        self.depth_ood_kind_, self.depth_ood_shifts_ = kind, shifts
        return self

    def depth_ood_scores(self, inputs: Any, *, batch_size: int = 32) -> np.ndarray:
        """The multi-depth OOD score (higher: more atypical) of each image of ``inputs``, in input order; its
        referral threshold for ``q`` is ``depth_ood_scorer_.threshold(q)``."""
        if self.depth_ood_scorer_ is None:
            raise ValueError("this Router has no multi-depth OOD scorer; call fit_depth_ood(training_rows) first")
        return self.depth_ood_scorer_.score(predict_depth_inputs(self, inputs, self.depth_ood_kind_,
                                                                 batch_size=batch_size))

    def _choose_ensemble_weight(self, val: pd.DataFrame) -> float:
        found = self._route_probabilities(resolve_inputs(val), ("flat", "soft"), batch_size=32, progress=False,
                                          tta=tta_names(self.tta))
        weight = choose_ensemble_weight(label_indices(val["label"], self.classes_), found.routes["flat"],
                                        found.routes["soft"])
        logger.info("ensemble weight of the flat model, chosen on %d validation images: %.2f", len(val), weight)
        return weight

    def calibrate(self, val_frame: pd.DataFrame, routes: Sequence[str] = CALIBRATED_ROUTES) -> Router:
        """Fit one temperature per route on validation rows (their log-probabilities as logits), replacing
        any earlier ``temperatures_``; a frame with test-split rows is refused. Returns ``self``."""
        check_is_fitted(self)
        if {"oracle", HEADER_ROUTE} & set(routes):
            raise ValueError("the oracle and header routes are not calibrated; they use the hierarchical "
                             "route's temperature")
        refuse_test_rows(val_frame, "val_frame")
        table = self.predict_routes(val_frame, routes, progress=False)
        y_val = label_indices(val_frame["label"], self.classes_)
        self.temperatures_ = {
            route: fit_temperature(np.log(np.maximum(probabilities(table[table["route"] == route], self.classes_),
                                                     _TINY)), y_val)
            for route in routes}
        logger.info("temperatures fitted on %d validation images: %s", len(val_frame),
                    ", ".join(f"{r} {t:.3f}" for r, t in self.temperatures_.items()))
        return self

    def temperature(self, route: str) -> float:
        """The temperature ``calibrate`` fitted for ``route`` (the oracle and header routes use the hierarchical
        one)."""
        check_is_fitted(self)
        if not self.temperatures_:
            raise ValueError("this Router has no temperatures; fit them on validation data with "
                             "Router.calibrate (Router.fit does) before asking for calibrated output")
        fitted = "hierarchical" if route in ("oracle", HEADER_ROUTE) else route
        if fitted not in self.temperatures_:
            raise ValueError(f"this Router has no temperature for the {fitted!r} route "
                             f"(it has {sorted(self.temperatures_)}); calibrate that route first")
        return self.temperatures_[fitted]

    # -- prediction ----------------------------------------------------------------------------
    def available_routes(self, inputs: Any) -> tuple[str, ...]:
        """The routes ``inputs`` allow: ``oracle`` only for an index frame with every true group known, ``flat``
        and ``ensemble`` only with a flat model, ``header`` only for DICOM/NIfTI slices with a header plane."""
        check_is_fitted(self)
        resolved = resolve_inputs(inputs)
        routes = [r for r in ROUTES if self.flat_model_ is not None or r not in ("flat", "ensemble")]
        frame = resolved.frame
        if frame is None or self.parent not in frame.columns or not frame[self.parent].isin(self.planes_).all():
            routes.remove("oracle")
        if _header_planes(frame) is not None:
            routes.append(HEADER_ROUTE)
        return tuple(routes)

    def _check_routes(self, routes: Sequence[str], inputs: Inputs) -> None:
        unknown = [r for r in routes if r not in (*ROUTES, HEADER_ROUTE)]
        if unknown or not routes:
            raise ValueError(f"unknown routes {unknown or list(routes)}; choose from {[*ROUTES, HEADER_ROUTE]}")
        if self.flat_model_ is None and {"flat", "ensemble"} & set(routes):
            raise ValueError("this Router has no flat model, so it has no 'flat' or 'ensemble' route")
        if "ensemble" in routes and self.ensemble_weight_ is None:
            raise ValueError("this Router has no ensemble weight; it is chosen on validation data by Router.fit")
        if HEADER_ROUTE in routes and _header_planes(inputs.frame) is None:
            raise ValueError("the header route needs DICOM or NIfTI slices whose geometry gives their plane "
                             "(index them with hierarchy.data.index_dataset or pass the files)")
        if "oracle" in routes:
            if inputs.frame is None or self.parent not in inputs.frame.columns:
                raise ValueError(f"the oracle route needs the true {self.parent} of each image: pass a "
                                 "dataset-index frame")
            unknown_group = inputs.frame[~inputs.frame[self.parent].isin(self.planes_)]
            if not unknown_group.empty:
                raise ValueError(f"the oracle route needs a known {self.parent} for every image; "
                                 f"{unknown_group['path'].iloc[0]} has {unknown_group[self.parent].iloc[0]!r}")

    def _batch_proba(self, x: torch.Tensor, routes: Sequence[str], *,
                     every_expert: bool = False) -> dict[str, np.ndarray]:
        """Probabilities of the components ``routes`` need on one decoded batch, and the OOD scores (key
        ``_OOD``), each trunk run once; for the hierarchical route alone (unless ``every_expert``) each
        expert sees only the images routed to it."""
        features: dict[str, torch.Tensor] = {}

        def trunk_output(name: str) -> torch.Tensor:
            trunk = self._trunks[name]
            if trunk not in features:
                features[trunk] = self.components_[name].features_from_batch(x)
            return features[trunk]

        def proba(name: str, rows: np.ndarray | None = None) -> np.ndarray:
            component, trunk = self.components_[name], self._trunks[name]
            if trunk is None or (trunk not in features and list(self._trunks.values()).count(trunk) < 2):
                return component.proba_from_batch(x if rows is None else x[torch.from_numpy(rows)])
            shared = trunk_output(name)
            return component.proba_from_features(shared if rows is None else shared[torch.from_numpy(rows)])

        found: dict[str, np.ndarray] = {}
        if self.ood_scorer_ is not None:
            found[_OOD] = self.ood_scorer_.score(feature_array(trunk_output(ood_component(self.ood_trunk_))))
        if any(r != "flat" for r in routes):
            found["plane"] = proba("plane")
            chosen = found["plane"].argmax(axis=1)
            every_expert = every_expert or bool({"soft", "ensemble", "oracle", HEADER_ROUTE} & set(routes))
            uniform = np.full(len(self.classes_), 1.0 / len(self.classes_))
            for i, plane in enumerate(self.planes_):
                if every_expert:
                    found[plane] = proba(plane)
                else:
                    found[plane] = np.tile(uniform, (len(x), 1))
                    if (chosen == i).any():
                        found[plane][chosen == i] = proba(plane, rows=chosen == i)
        if {"flat", "ensemble"} & set(routes):
            found["flat"] = proba("flat")
        return found

    def _route_probabilities(self, inputs: Inputs, routes: Sequence[str], *, batch_size: int, progress: bool | None,
                             perturbation: str | None = None, tta: Sequence[str] = (),
                             skipped: list[Skipped] | None = None, num_workers: int = 0) -> RouteProbabilities:
        """Decode once, run each needed component once per batch (and TTA view), combine into the routes.

        With several ``tta`` views each component's probabilities and the OOD score are averaged over the
        views before the routes combine them (so every expert sees every image). Undecodable images are
        appended to ``skipped`` when it is given (see ``batches``)."""
        parts: dict[str, list[np.ndarray]] = {}
        with progress_bar(total=len(inputs), desc="predicting", unit="img", enabled=progress) as bar:
            for _, x in batches(inputs, self.plane_model_.preprocess_, batch_size, perturbation=perturbation,
                                skipped=skipped, num_workers=num_workers):
                views = tta_views(x, tta) if tta else [x]
                per_view = [self._batch_proba(view, routes, every_expert=len(views) > 1) for view in views]
                for key in per_view[0]:
                    parts.setdefault(key, []).append(np.mean([found[key] for found in per_view], axis=0))
                bar.update(len(x))
        got = {key: np.concatenate(values) for key, values in parts.items()}
        experts = {p: got[p] for p in self.planes_ if p in got}
        combined = combine_routes(routes, planes=self.planes_, plane_proba=got.get("plane"),
                                  expert_proba=experts or None, flat_proba=got.get("flat"),
                                  ensemble_weight=self.ensemble_weight_,
                                  true_planes=inputs.frame[self.parent].tolist() if "oracle" in routes else None,
                                  header_planes=(_header_planes(inputs.frame) if HEADER_ROUTE in routes
                                                 else None))
        return replace(combined, ood_score=got.get(_OOD))

    def predict_routes(self, inputs: Any, routes: Sequence[str] | None = None, *,
                       reject_below: float | None = None, refer_atypical: float | None = None,
                       tta: bool | str | Sequence[str] | None = None, batch_size: int = 32,
                       progress: bool | None = False, perturbation: str | None = None, calibrated: bool = False,
                       skip_bad: bool = False, num_workers: int | None = None) -> pd.DataFrame:
        """Prediction table (``hierarchy.predictions`` schema), one row per (image, route), every route from
        one decode and one pass per component (and TTA view).

        With an OOD scorer (``ood_scorer_``) the table has an ``ood_score`` column (higher: more atypical),
        computed from the same trunk pass as the probabilities.

        Parameters
        ----------
        inputs : paths, a folder, PIL images, arrays, tensors or a dataset-index frame
        routes : sequence of str, optional
            Default: every route the inputs allow (``available_routes``); ``oracle`` needs an index frame.
        reject_below : float, optional
            Images whose top probability is below it are marked ``referred``.
        refer_atypical : float in [0, 1], optional
            Images whose ``ood_score`` exceeds the ``refer_atypical``-quantile of the training images' scores
            are marked ``referred`` too, and ``atypical`` in a column of their own.
        tta : bool, str, sequence of str or None
            Test-time augmentation: view names of ``hierarchy.data.tta.TTA_VIEWS`` (or True for
            ``DEFAULT_TTA``, False for none) whose component probabilities and OOD scores are averaged;
            None: the Router's ``tta`` setting.
        perturbation : str, optional
            A name in ``hierarchy.data.PERTURBATIONS`` applied to every decoded image (robustness tests).
        calibrated : bool
            Temperature-scale each route's probabilities (the oracle with the hierarchical temperature)
            before rejection; ``pred_label`` is unchanged.
        skip_bad : bool
            Leave out images that cannot be decoded, log a warning and list them in the table's
            ``attrs["skipped"]`` (dicts with ``id`` and ``error``); by default the first one raises
            ``hierarchy.data.ImageReadError`` naming the file.
        progress : bool or None
            Show a progress bar; None: only when standard error is a terminal.
        num_workers : int or None
            Processes that decode images ahead of the models (0: decode in this process); None: the Router's
            ``train.num_workers`` when the models run on a GPU, 0 on a CPU (``decode_workers``).
        """
        check_is_fitted(self)
        if num_workers is None:
            num_workers = decode_workers(self._settings().train.num_workers)
        resolved = resolve_inputs(inputs)
        routes = self.available_routes(resolved) if routes is None else tuple(routes)
        self._check_routes(routes, resolved)
        if reject_below is not None and not 0.0 <= reject_below <= 1.0:
            raise ValueError(f"reject_below must lie in [0, 1], got {reject_below}")
        if refer_atypical is not None:
            if self.ood_scorer_ is None:
                raise ValueError("refer_atypical needs an out-of-distribution score, and this Router has none "
                                 "(fitted with ood=False, without a component trunk, or saved without one); "
                                 "refit it with ood=True")
            threshold = self.ood_scorer_.threshold(refer_atypical)
        temperatures = {route: self.temperature(route) for route in routes} if calibrated else {}
        skipped: list[Skipped] | None = [] if skip_bad else None
        found = self._route_probabilities(resolved, routes, batch_size=batch_size, progress=progress,
                                          perturbation=perturbation,
                                          tta=tta_names(self.tta if tta is None else tta), skipped=skipped,
                                          num_workers=num_workers)
        atypical = found.ood_score > threshold if refer_atypical is not None else None
        keep = np.setdiff1d(np.arange(len(resolved)), [s.row for s in skipped or []])
        tables = []
        for route in routes:
            proba = found.routes[route]
            if calibrated:
                proba = apply_temperature(proba, temperatures[route], are_probabilities=True)
            expert = (resolved.frame[self.parent].to_numpy() if route == "oracle"
                      else found.header_expert if route == HEADER_ROUTE else found.expert_used)
            referred = apply_rejection(proba, reject_below)
            table = prediction_table(resolved.ids, route, proba, classes=self.classes_, planes=self.planes_,
                                     plane_proba=None if route == "flat" else found.plane, expert=expert,
                                     referred=referred if atypical is None else referred | atypical,
                                     truth=resolved.frame, parent=self.parent)
            if found.ood_score is not None:
                table["ood_score"] = found.ood_score
            if atypical is not None:
                table["atypical"] = atypical
            tables.append(table.iloc[keep])
        table = pd.concat(tables, ignore_index=True)
        if skipped is not None:
            table.attrs["skipped"] = [{"id": s.id, "error": s.error} for s in skipped]
            for s in skipped:
                logger.warning("skipped an image that cannot be decoded: %s", s.error)
        return table

    def predict(self, inputs: Any, route: str = "hierarchical", **kwargs: Any) -> pd.DataFrame:
        """Prediction table of one route (keyword arguments as in ``predict_routes``)."""
        return self.predict_routes(inputs, (route,), **kwargs)

    def predict_proba(self, inputs: Any, route: str = "hierarchical", **kwargs: Any) -> np.ndarray:
        """(n, len(classes_)) probabilities of one route, columns in ``classes_`` order."""
        return probabilities(self.predict(inputs, route, **kwargs), self.classes_)

    # -- persistence ---------------------------------------------------------------------------
    def _layout(self) -> dict[str, str]:
        return {"plane": "plane", **{p: f"experts/{p}" for p in self.planes_},
                **({"flat": "flat"} if self.flat_model_ is not None else {})}

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write every component, the OOD scorers and ``router.json`` (settings, label sets, ensemble weight,
        temperatures, layout, record, OOD scorer folder, and the sha256 of every file written) to ``directory``,
        all at once: the Router is staged in a sibling folder and its parts moved in under the folder's lock
        (``hierarchy.routing.persistence``), journaled, so that a save killed at any point is finished by the
        next save or load. Other entries of ``directory`` stay where they are; an existing Router there is
        refused unless ``overwrite``."""
        check_is_fitted(self)

        def write(staging: Path) -> dict[str, Any]:
            layout = self._layout()
            for name, sub in layout.items():
                self.components_[name].save(staging / sub)
            if self.ood_scorer_ is not None:
                self.ood_scorer_.save(staging / OOD_DIR)
            if self.depth_ood_scorer_ is not None:
                self.depth_ood_scorer_.save(staging / DEPTH_OOD_DIR)
            depth_ood = (None if self.depth_ood_scorer_ is None
                         else {"directory": DEPTH_OOD_DIR, "kind": self.depth_ood_kind_,
                               "shifts": self.depth_ood_shifts_})
            return {"format_version": FORMAT_VERSION, "config": self.settings(), "classes": list(self.classes_),
                    "planes": list(self.planes_), "ensemble_weight": self.ensemble_weight_,
                    "temperatures": self.temperatures_, "components": layout, "record": self.record_,
                    "ood": None if self.ood_scorer_ is None else {"directory": OOD_DIR, "trunk": self.ood_trunk_},
                    "depth_ood": depth_ood}

        return save_folder(directory, write, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, *, trusted: Sequence[str] = ()) -> Router:
        """Load a Router written by ``save``.

        Nothing the folder names is imported or called unless the library vouches for it (timm and
        ``simple_cnn`` architectures, tensors in safetensors, scikit-learn heads skops trusts) or ``trusted``
        lists it, as ``skops.io.load(trusted=...)`` does: a ``ModuleClassifier``'s factory by its
        ``"package.module:qualname"``, a scikit-learn head's other types by their skops names.

        Raises
        ------
        FileNotFoundError
            ``directory`` holds no ``router.json``.
        UntrustedCodeError
            Loading would import or call code that ``trusted`` does not list; the message names all of it.
        RouterError
            A file ``router.json`` records is missing, changed or from another save; a path leads out of the
            folder; ``router.json`` is malformed, edited or of another format version; a component does not
            load or predicts other classes than ``router.json`` lists. The message names the file.
        """
        directory = Path(directory)
        with locked_for_reading(directory):  # no save swaps parts in while they are read
            return cls._load_unlocked(directory, trusted)

    @classmethod
    def _load_unlocked(cls, directory: Path, trusted: Sequence[str]) -> Router:
        manifest = read_manifest(directory)
        source = directory / ROUTER_FILE
        classes, planes = tuple(manifest["classes"]), tuple(manifest["planes"])
        untrusted = sorted({code for name, sub in manifest["components"].items() for code in
                            load_part(directory / sub, lambda d: untrusted_code(d, trusted),
                                      f"{name} component of the Router in {directory}")})
        if untrusted:
            raise UntrustedCodeError(untrusted_message(directory, untrusted))
        loaded: dict[str, Component] = {}
        for name, sub in manifest["components"].items():
            loaded[name] = load_part(directory / sub, lambda d: load_component(d, trusted=trusted),
                                     f"{name} component of the Router in {directory}")
            expected = planes if name == "plane" else classes
            if loaded[name].classes != expected:
                raise RouterError(f"{directory / sub}: the {name} component predicts {list(loaded[name].classes)}, "
                                  f"but {source} lists {list(expected)}")
        settings = dict(manifest["config"])
        for name, key in (("plane", "plane"), ("experts", planes[0]), ("flat", "flat")):
            if isinstance(settings.get(name), dict):  # a component object: the loaded one stands for it
                settings[name] = loaded.get(key)

        def build(_: Path) -> Router:
            router = cls(**{**settings, "preprocess": PreprocessConfig.from_dict(settings["preprocess"]),
                            "train": TrainConfig.from_dict(settings["train"])})
            router._settings()
            return router

        router = load_part(source, build, "Router settings in 'config'")
        router._set_fitted(classes, planes, loaded["plane"], {p: loaded[p] for p in planes}, loaded.get("flat"))
        router.ensemble_weight_ = manifest.get("ensemble_weight")
        router.temperatures_ = {r: float(t) for r, t in manifest["temperatures"].items()}
        router.record_ = manifest["record"]
        if manifest.get("ood"):
            router.ood_scorer_ = load_part(directory / manifest["ood"]["directory"], FeatureOODScorer.load,
                                           f"OOD scorer of the Router in {directory}")
            router.ood_trunk_ = manifest["ood"]["trunk"]
        if manifest.get("depth_ood"):
            router.depth_ood_scorer_ = load_part(directory / manifest["depth_ood"]["directory"],
                                                 MultiDepthOODScorer.load,
                                                 f"multi-depth OOD scorer of the Router in {directory}")
            router.depth_ood_kind_ = manifest["depth_ood"]["kind"]
            router.depth_ood_shifts_ = bool(manifest["depth_ood"].get("shifts", False))  # absent before shifts
        return router
