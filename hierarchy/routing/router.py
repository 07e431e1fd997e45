"""``Router``: the scan-plane classifier, one tumour expert per plane and the flat baseline, behind every route."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics.calibration import apply_temperature, fit_temperature
from hierarchy.predictions import (
    ROUTES,
    label_indices,
    plane_prob_column,
    prob_column,
    probabilities,
)
from hierarchy.provenance import run_record
from hierarchy.routing.components import (
    FlatClassifier,
    ImageClassifier,
    PlaneClassifier,
    TumorExpert,
    refuse_test_rows,
)
from hierarchy.routing.inputs import Inputs, batches, resolve_inputs
from hierarchy.routing.routes import (
    apply_rejection,
    choose_ensemble_weight,
    ensemble_route,
    hard_route,
    oracle_route,
    soft_route,
)
from hierarchy.routing.trunk import head_proba, trunk_features
from hierarchy.training import TrainConfig
from hierarchy.training.features import backbone_fingerprint

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ROUTER_MODES = ("finetune", "frozen", "shared")
ROUTER_FILE = "router.json"
PLANE_DIR = "plane"
FLAT_DIR = "flat"
EXPERTS_DIR = "experts"
CALIBRATED_ROUTES = ("flat", "hierarchical", "soft", "ensemble")  # oracle borrows the hierarchical temperature


def _training_frame(data: pd.DataFrame | str | Path, what: str) -> pd.DataFrame:
    """A frame is used as given (test rows refused); a root path is indexed and its non-test rows kept."""
    if isinstance(data, (str, Path)):
        frame = index_dataset(data)
        dropped = int((frame["split"] == "test").sum())
        if dropped:
            logger.info("%s: leaving out the %d test-split images of %s", what, dropped, data)
        return frame[frame["split"] != "test"].reset_index(drop=True)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{what} must be a dataset-index DataFrame or a dataset root, got {type(data).__name__}")
    refuse_test_rows(data, what)
    return data.reset_index(drop=True)


def _train_configs(train_config: TrainConfig | Mapping[str, TrainConfig] | None, seed: int) -> dict[str, TrainConfig]:
    """One training configuration per kind of component (``flat``, ``plane``, ``expert``)."""
    if train_config is None:
        train_config = TrainConfig(seed=seed)
    if isinstance(train_config, TrainConfig):
        return dict.fromkeys(("flat", "plane", "expert"), train_config)
    missing = {"flat", "plane", "expert"} - set(train_config)
    if missing:
        raise ValueError(f"train_config mapping lacks {sorted(missing)}; give flat, plane and expert")
    return {k: train_config[k] for k in ("flat", "plane", "expert")}


class _BatchRunner:
    """Runs components on one decoded batch, computing each shared trunk's features once."""

    def __init__(self, router: Router, x: torch.Tensor) -> None:
        self.router, self.x = router, x
        self.features: dict[str, torch.Tensor] = {}

    def proba(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        model = self.router.components[name].check_fitted()
        trunk = self.router.trunk_of(name)
        if trunk in self.router.shared_trunks:
            if trunk not in self.features:
                self.features[trunk] = trunk_features(model, self.x)
            features = self.features[trunk] if rows is None else self.features[trunk][torch.from_numpy(rows)]
        else:
            features = trunk_features(model, self.x if rows is None else self.x[torch.from_numpy(rows)])
        return head_proba(model, features)


class Router:
    """Two-stage classifier: a plane classifier routes each image to its plane's tumour expert.

    Routes (see ``hierarchy.predictions.ROUTES``): ``flat`` (the baseline alone), ``hierarchical`` (hard
    routing to the most probable plane's expert), ``soft`` (experts mixed by plane probability),
    ``ensemble`` (``ensemble_weight * flat + (1 - ensemble_weight) * soft``, the weight chosen on
    validation data) and ``oracle`` (the expert of the true plane; index-frame inputs only).
    ``temperatures``: one temperature-scaling temperature per route, fitted on validation data by
    ``calibrate`` and used by ``predict_routes(..., calibrated=True)``.
    """

    classes: tuple[str, ...] = TUMOR_CLASSES
    planes: tuple[str, ...] = PLANES

    def __init__(self, plane_model: PlaneClassifier, experts: Mapping[str, TumorExpert],
                 flat: FlatClassifier | None = None, *, ensemble_weight: float | None = None,
                 temperatures: Mapping[str, float] | None = None, record: dict[str, Any] | None = None) -> None:
        if set(experts) != set(self.planes):
            raise ValueError(f"need one expert per plane {list(self.planes)}, got {sorted(experts)}")
        if tuple(plane_model.classes) != self.planes:
            raise ValueError(f"plane classifier classes {list(plane_model.classes)} != {list(self.planes)}")
        for plane, expert in experts.items():
            if expert.plane != plane or tuple(expert.classes) != self.classes:
                raise ValueError(f"expert for {plane} is a {expert.plane} expert over {list(expert.classes)}; "
                                 f"expected a {plane} expert over {list(self.classes)}")
        if flat is not None and tuple(flat.classes) != self.classes:
            raise ValueError(f"flat model classes {list(flat.classes)} != {list(self.classes)}")
        self.plane_model = plane_model
        self.experts = {p: experts[p] for p in self.planes}
        self.flat = flat
        self.components: dict[str, ImageClassifier] = {"plane": plane_model, **self.experts}
        if flat is not None:
            self.components["flat"] = flat
        fingerprints = {c.preprocess.fingerprint() for c in self.components.values()}
        if len(fingerprints) != 1:
            raise ValueError("all components must share one preprocessing configuration (images are decoded once)")
        self.preprocess: PreprocessConfig = plane_model.preprocess
        self.ensemble_weight = ensemble_weight
        self.temperatures: dict[str, float] = {r: float(t) for r, t in (temperatures or {}).items()}
        self.record = record or {}
        self._trunks: dict[str, str] | None = None

    def __repr__(self) -> str:
        flat = self.flat.backbone if self.flat else None
        return (f"Router(plane={self.plane_model.backbone!r}, expert={self.experts[self.planes[0]].backbone!r}, "
                f"flat={flat!r}, ensemble_weight={self.ensemble_weight})")

    # -- shared trunks -------------------------------------------------------------------------
    def trunk_of(self, name: str) -> str:
        """Fingerprint of a component's trunk (backbone without classifier)."""
        if self._trunks is None:
            self._trunks = {n: backbone_fingerprint(c.check_fitted()) for n, c in self.components.items()}
        return self._trunks[name]

    @property
    def shared_trunks(self) -> set[str]:
        """Trunks used by more than one component: computed once per image, then every head applied."""
        counts = pd.Series([self.trunk_of(n) for n in self.components]).value_counts()
        return set(counts[counts > 1].index)

    # -- training ------------------------------------------------------------------------------
    @classmethod
    def fit(cls, train_data: pd.DataFrame | str | Path, val_data: pd.DataFrame | str | Path | None = None, *,
            plane_backbone: str = "tf_efficientnet_lite0", expert_backbone: str = "tf_efficientnet_lite0",
            flat_backbone: str | None = "inception_resnet_v2", weights: str | Path | None = "imagenet",
            expert_init: str = "imagenet", mode: str = "finetune", preprocess: PreprocessConfig | None = None,
            train_config: TrainConfig | Mapping[str, TrainConfig] | None = None,
            out_dir: str | Path | None = None, resume: bool = False, seed: int = 0,
            val_fraction: float = 0.15, feature_views: int = 1) -> Router:
        """Train the plane classifier, the three experts and (unless ``flat_backbone`` is None) the flat model.

        ``train_data``/``val_data``: dataset-index frames or a dataset root (whose test split is left out); a
        frame holding test-split rows is refused. Without ``val_data``, ``train_val_split`` holds out about
        ``val_fraction`` of the training rows (stratified, duplicates kept together, ``seed``). Rows without
        a plane train the flat model only. ``weights`` starts the plane and flat models; ``expert_init``
        (``imagenet``, ``flat``, ``scratch``) the experts. ``mode``: ``finetune`` trains every component end
        to end; ``frozen`` fits linear heads on frozen backbones; ``shared`` fine-tunes the flat model end to
        end, then fits the plane and expert heads on its frozen trunk, so every route costs one trunk pass
        (the shared-trunk variant; ``plane_backbone`` and ``expert_backbone`` must equal ``flat_backbone``).
        ``train_config`` defaults to ``TrainConfig(seed=seed)``; a mapping with keys ``flat``, ``plane`` and
        ``expert`` gives each kind of component its own. ``feature_views`` (frozen mode): the training
        rows' features are extracted once clean and ``feature_views - 1`` more times through the
        training augmentation, so the heads see re-encoded, shifted images too. ``out_dir`` keeps per-component training
        logs, checkpoints (``resume``) and the frozen-feature cache. The ensemble weight is chosen on the
        validation rows (maximum log-likelihood), then every route's temperature is fitted on them (``calibrate``).
        """
        train = _training_frame(train_data, "train_data")
        if val_data is None:
            train, val = train_val_split(train, val_fraction=val_fraction, seed=seed)
        else:
            val = _training_frame(val_data, "val_data")
        if expert_init == "flat" and flat_backbone is None:
            raise ValueError("expert_init='flat' needs a flat model; give flat_backbone")
        if mode not in ROUTER_MODES:
            raise ValueError(f"mode must be one of {ROUTER_MODES}, got {mode!r}")
        if mode == "shared" and not flat_backbone == plane_backbone == expert_backbone:
            raise ValueError("mode='shared' puts every head on the flat model's trunk: plane_backbone, "
                             f"expert_backbone and flat_backbone must agree (got {plane_backbone}, "
                             f"{expert_backbone}, {flat_backbone})")
        configs = _train_configs(train_config, seed)
        shared = mode == "shared"
        preprocess = preprocess or PreprocessConfig()
        heads_mode = "frozen" if shared else mode
        flat = (FlatClassifier(flat_backbone, weights=weights, train_config=configs["flat"], preprocess=preprocess,
                               mode="finetune" if shared else mode) if flat_backbone else None)
        plane_model = PlaneClassifier(plane_backbone, weights=weights, train_config=configs["plane"],
                                      preprocess=preprocess, mode=heads_mode, init_from=flat if shared else None)
        expert_init = "flat" if shared else expert_init
        experts = {p: TumorExpert(p, expert_backbone, init=expert_init, train_config=configs["expert"],
                                  init_from=flat if expert_init == "flat" else None, preprocess=preprocess,
                                  mode=heads_mode) for p in PLANES}
        order = {**({"flat": flat} if flat else {}), "plane": plane_model, **experts}
        work = Path(out_dir) / "training" if out_dir is not None else None
        if shared:
            logger.info("training the flat model (%s) end to end; its trunk then serves every head", flat_backbone)
            flat.fit(train, val, out_dir=None if work is None else work / "flat", resume=resume)
            cls._fit_frozen({n: c for n, c in order.items() if n != "flat"}, train, val, work,
                            feature_views=feature_views)
        elif mode == "frozen":
            cls._fit_frozen(order, train, val, work, feature_views=feature_views)
        else:
            for name, component in order.items():
                logger.info("training the %s model (%s)", name, component.backbone)
                component.fit(train, val, out_dir=None if work is None else work / name, resume=resume)
        router = cls(plane_model, experts, flat)
        if flat is not None:
            router.ensemble_weight = router._choose_ensemble_weight(val)
        router.calibrate(val, routes=CALIBRATED_ROUTES if flat is not None else ("hierarchical", "soft"))
        config = {"plane_backbone": plane_backbone, "expert_backbone": expert_backbone,
                  "flat_backbone": flat_backbone, "weights": None if weights is None else str(weights),
                  "expert_init": expert_init, "mode": mode, "preprocess": preprocess.to_dict(),
                  "train_config": {k: c.to_dict() for k, c in configs.items()},
                  "val_fraction": None if val_data is not None else val_fraction, "feature_views": feature_views,
                  "ensemble_weight": router.ensemble_weight, "temperatures": router.temperatures}
        router.record = run_record(config, seed=seed, frames={"train": train, "val": val})
        return router

    @staticmethod
    def _fit_frozen(components: Mapping[str, ImageClassifier], train: pd.DataFrame, val: pd.DataFrame,
                    work: Path | None, *, feature_views: int = 1) -> None:
        """Frozen mode: extract each distinct trunk's features for all rows once (training rows also in
        ``feature_views - 1`` augmented views), then fit every head."""
        if feature_views < 1:
            raise ValueError(f"feature_views must be >= 1, got {feature_views}")
        train_views = pd.concat([train] * feature_views, ignore_index=True)
        with tempfile.TemporaryDirectory(prefix="hierarchy-features-") as tmp:
            cache_dir = (work or Path(tmp)) / "features"
            extracted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name, component in components.items():
                model = component.build_model()
                trunk = backbone_fingerprint(model)
                if trunk not in extracted:
                    logger.info("extracting %s features for %d images", component.backbone, len(train) + len(val))
                    views = [component.extract(model, train, cache_dir, view=v) for v in range(feature_views)]
                    extracted[trunk] = (np.concatenate(views), component.extract(model, val, cache_dir))
                logger.info("fitting the %s head", name)
                component.fit_features(model, train_views, val, *extracted[trunk])

    def _choose_ensemble_weight(self, val: pd.DataFrame) -> float:
        proba = self._route_probabilities(resolve_inputs(val), ("flat", "soft"), batch_size=32, progress=False)
        weight = choose_ensemble_weight(label_indices(val["label"], self.classes), proba["flat"], proba["soft"])
        logger.info("ensemble weight of the flat model, chosen on %d validation images: %.2f", len(val), weight)
        return weight

    def calibrate(self, val_data: pd.DataFrame, routes: Sequence[str] = CALIBRATED_ROUTES) -> Router:
        """Fit one temperature per route on validation rows (their log-probabilities as logits), replacing
        any earlier ``temperatures``; a frame with test-split rows is refused. Returns ``self``."""
        if "oracle" in routes:
            raise ValueError("the oracle route is not calibrated; it uses the hierarchical route's temperature")
        refuse_test_rows(val_data, "val_data")
        table = self.predict_routes(val_data, routes, progress=False)
        y_val = label_indices(val_data["label"], self.classes)
        tiny = np.finfo(float).tiny  # a probability of exactly 0 would give an infinite logit
        self.temperatures = {
            route: fit_temperature(np.log(np.maximum(probabilities(table[table["route"] == route], self.classes),
                                                     tiny)), y_val)
            for route in routes}
        logger.info("temperatures fitted on %d validation images: %s", len(val_data),
                    ", ".join(f"{r} {t:.3f}" for r, t in self.temperatures.items()))
        return self

    # -- prediction ----------------------------------------------------------------------------
    def _check_routes(self, routes: Sequence[str], inputs: Inputs) -> None:
        unknown = [r for r in routes if r not in ROUTES]
        if unknown or not routes:
            raise ValueError(f"unknown routes {unknown or list(routes)}; choose from {list(ROUTES)}")
        if self.flat is None and {"flat", "ensemble"} & set(routes):
            raise ValueError("this Router has no flat model, so it has no 'flat' or 'ensemble' route")
        if "ensemble" in routes and self.ensemble_weight is None:
            raise ValueError("this Router has no ensemble weight; it is chosen on validation data by Router.fit")
        if "oracle" in routes:
            if inputs.frame is None or "plane" not in inputs.frame.columns:
                raise ValueError("the oracle route needs the true planes: pass a dataset-index frame")
            unknown_plane = inputs.frame[~inputs.frame["plane"].isin(self.planes)]
            if not unknown_plane.empty:
                raise ValueError(f"the oracle route needs a known plane for every image; "
                                 f"{unknown_plane['path'].iloc[0]} has {unknown_plane['plane'].iloc[0]!r}")

    def _route_probabilities(self, inputs: Inputs, routes: Sequence[str], *, batch_size: int,
                             progress: bool, perturbation: str | None = None) -> dict[str, np.ndarray]:
        """Decode once, run each needed model once per batch, and return every route's probabilities
        (plus ``plane`` and ``expert_used``)."""
        needs_plane = any(r != "flat" for r in routes)
        all_experts = bool({"soft", "ensemble", "oracle"} & set(routes))
        needs_flat = bool({"flat", "ensemble"} & set(routes))
        uniform = np.full(len(self.classes), 1.0 / len(self.classes))
        parts: dict[str, list[np.ndarray]] = {}
        with tqdm(total=len(inputs), desc="predicting", unit="img", disable=not progress) as bar:
            for _, x in batches(inputs, self.preprocess, batch_size, perturbation=perturbation):
                runner = _BatchRunner(self, x)
                found: dict[str, np.ndarray] = {}
                if needs_plane:
                    found["plane"] = runner.proba("plane")
                    chosen = found["plane"].argmax(axis=1)
                    for i, plane in enumerate(self.planes):
                        if all_experts:
                            found[plane] = runner.proba(plane)
                        else:  # hard routing alone: each expert sees only the images routed to it
                            found[plane] = np.tile(uniform, (len(x), 1))
                            if (chosen == i).any():
                                found[plane][chosen == i] = runner.proba(plane, rows=chosen == i)
                if needs_flat:
                    found["flat"] = runner.proba("flat")
                for key, value in found.items():
                    parts.setdefault(key, []).append(value)
                bar.update(len(x))
        got = {key: np.concatenate(values) for key, values in parts.items()}
        experts = {p: got[p] for p in self.planes if p in got}
        out: dict[str, np.ndarray] = {}
        if needs_plane:
            out["plane"] = got["plane"]
            out["hierarchical"], out["expert_used"] = hard_route(got["plane"], experts, planes=self.planes)
        if all_experts:
            out["soft"] = soft_route(got["plane"], experts, planes=self.planes)
        if needs_flat:
            out["flat"] = got["flat"]
        if "ensemble" in routes:
            out["ensemble"] = ensemble_route(got["flat"], out["soft"], self.ensemble_weight)
        if "oracle" in routes:
            out["oracle"] = oracle_route(inputs.frame["plane"].tolist(), experts, planes=self.planes)
        return out

    def _table(self, inputs: Inputs, route: str, proba: np.ndarray, found: dict[str, np.ndarray],
               reject_below: float | None) -> pd.DataFrame:
        n = len(inputs)
        table = pd.DataFrame({"id": inputs.ids, "route": route})
        table["pred_label"] = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        for i, label in enumerate(self.classes):
            table[prob_column(label)] = proba[:, i]
        plane_proba = found["plane"] if route != "flat" else np.full((n, len(self.planes)), np.nan)
        table["pred_plane"] = (np.asarray(self.planes, dtype=object)[plane_proba.argmax(axis=1)]
                               if route != "flat" else None)
        for i, plane in enumerate(self.planes):
            table[plane_prob_column(plane)] = plane_proba[:, i]
        expert = {"flat": "flat", "soft": "mixture", "ensemble": "mixture"}.get(route)
        if route == "hierarchical":
            table["expert"] = found["expert_used"]
        elif route == "oracle":
            table["expert"] = inputs.frame["plane"].to_numpy()
        else:
            table["expert"] = expert
        table["referred"] = apply_rejection(proba, reject_below)
        if inputs.frame is not None:
            for column, source in (("true_label", "label"), ("true_plane", "plane"), ("path", "path")):
                if source in inputs.frame.columns:
                    table[column] = inputs.frame[source].to_numpy()
        return table

    def temperature(self, route: str) -> float:
        """The temperature ``calibrate`` fitted for ``route`` (the oracle uses the hierarchical one)."""
        if not self.temperatures:
            raise ValueError("this Router has no temperatures; fit them on validation data with "
                             "Router.calibrate (Router.fit does) before asking for calibrated output")
        fitted = "hierarchical" if route == "oracle" else route
        if fitted not in self.temperatures:
            raise ValueError(f"this Router has no temperature for the {fitted!r} route "
                             f"(it has {sorted(self.temperatures)}); calibrate that route first")
        return self.temperatures[fitted]

    def predict_routes(self, inputs: Any, routes: Sequence[str] = ROUTES, *, reject_below: float | None = None,
                       batch_size: int = 32, progress: bool = True, perturbation: str | None = None,
                       calibrated: bool = False) -> pd.DataFrame:
        """Prediction table (``hierarchy.predictions`` schema) with one row per (image, route), every route
        from one decode and one pass per model. ``oracle`` needs a dataset-index frame as ``inputs``; its
        ``pred_plane`` is still the plane classifier's, while ``expert`` is the true plane.
        ``perturbation`` (a name in ``hierarchy.data.PERTURBATIONS``) re-encodes every decoded image
        first, for robustness tests. ``calibrated``: each route's probabilities are temperature-scaled with
        its temperature from ``calibrate`` (the oracle with the hierarchical route's), before rejection;
        ``pred_label`` is unchanged, as temperature never changes the arg-max."""
        routes = tuple(routes)
        resolved = resolve_inputs(inputs)
        self._check_routes(routes, resolved)
        if reject_below is not None and not 0.0 <= reject_below <= 1.0:
            raise ValueError(f"reject_below must lie in [0, 1], got {reject_below}")
        temperatures = {route: self.temperature(route) for route in routes} if calibrated else {}
        found = self._route_probabilities(resolved, routes, batch_size=batch_size, progress=progress,
                                          perturbation=perturbation)
        proba = {route: apply_temperature(found[route], temperatures[route], are_probabilities=True)
                 if calibrated else found[route] for route in routes}
        tables = [self._table(resolved, route, proba[route], found, reject_below) for route in routes]
        return pd.concat(tables, ignore_index=True)

    def predict(self, inputs: Any, route: str = "hierarchical", *, reject_below: float | None = None,
                batch_size: int = 32, progress: bool = True, perturbation: str | None = None,
                calibrated: bool = False) -> pd.DataFrame:
        """Prediction table of one route for paths, a folder, PIL images, arrays, tensors or an index frame.

        ``reject_below``: images whose top probability is below it are marked ``referred``. ``calibrated``:
        temperature-scaled probabilities (see ``predict_routes``).
        """
        return self.predict_routes(inputs, (route,), reject_below=reject_below, batch_size=batch_size,
                                   progress=progress, perturbation=perturbation, calibrated=calibrated)

    # -- persistence ---------------------------------------------------------------------------
    def _expert_dir(self, plane: str) -> str:
        return f"{EXPERTS_DIR}/{plane}"

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``router.json`` and one bundle per component under ``directory``.

        An existing router there is refused unless ``overwrite``.
        """
        directory = Path(directory)
        if (directory / ROUTER_FILE).exists() and not overwrite:
            raise FileExistsError(f"{directory / ROUTER_FILE} exists; pass overwrite=True to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        layout = {"plane": PLANE_DIR, **{p: self._expert_dir(p) for p in self.planes}}
        if self.flat is not None:
            layout["flat"] = FLAT_DIR
        for name, sub in layout.items():
            self.components[name].save(directory / sub, overwrite=overwrite)
        expert = self.experts[self.planes[0]]
        manifest = {
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "planes": list(self.planes),
            "backbones": {"plane": self.plane_model.backbone, "expert": expert.backbone,
                          "flat": self.flat.backbone if self.flat else None},
            "expert_init": expert.init,
            "mode": self.record.get("config", {}).get("mode", expert.mode),
            "ensemble_weight": self.ensemble_weight,
            "temperatures": self.temperatures,
            "preprocess": self.preprocess.to_dict(),
            "components": layout,
            "record": self.record,
        }
        tmp = directory / f".{ROUTER_FILE}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        tmp.replace(directory / ROUTER_FILE)  # written last, so a half-saved router never loads
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        """Load a router written by ``save``; a missing component, a class or plane list other than this
        version's, or another format version is refused with an error naming the path. A manifest without
        ``temperatures`` (saved before calibration existed) loads as a Router without temperatures."""
        directory = Path(directory)
        path = directory / ROUTER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; is {directory} a saved Router (hierarchy train --out)?")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: router format version {manifest.get('format_version')!r}, "
                             f"this version of hierarchy reads version {FORMAT_VERSION}")
        for key, expected in (("classes", cls.classes), ("planes", cls.planes)):
            if tuple(manifest.get(key, ())) != expected:
                raise ValueError(f"{path}: {key} {manifest.get(key)} differ from {list(expected)}")
        layout = manifest.get("components", {})
        missing = [n for n in ("plane", *cls.planes) if n not in layout]
        if missing:
            raise ValueError(f"{path}: no component entry for {missing}")
        loaded: dict[str, ImageClassifier] = {}
        kinds = {"plane": PlaneClassifier, "flat": FlatClassifier, **{p: TumorExpert for p in cls.planes}}
        for name, sub in layout.items():
            where = directory / sub
            if not where.is_dir():
                raise FileNotFoundError(f"{where}: the {name} component of the router in {directory} is missing")
            loaded[name] = kinds[name].load(where)
        try:
            return cls(loaded["plane"], {p: loaded[p] for p in cls.planes}, loaded.get("flat"),
                       ensemble_weight=manifest.get("ensemble_weight"), temperatures=manifest.get("temperatures"),
                       record=manifest.get("record", {}))
        except ValueError as err:
            raise ValueError(f"{directory}: {err}") from err
