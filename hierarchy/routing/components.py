"""Router components: what one classifier of a Router predicts (``Task``), the component protocol, and the
component built from a timm (or ``simple_cnn``) backbone name.

The protocol (``Component``) a Router relies on:

- ``fit(train_frame, val_frame, *, out_dir=None, resume=False)`` trains on the rows its ``task`` selects;
- ``proba_from_batch(x)``: (n, len(task.classes)) probabilities of a preprocessed (n, 1, S, S) batch;
- ``save(directory)`` and ``describe()``; ``load_component(directory)`` reads any component back;
- optionally a shareable trunk: ``trunk_key()`` (None: none), ``features_from_batch(x)`` and
  ``proba_from_features(features)``, so components on one trunk cost one forward pass per image; and
  ``frozen`` with ``build_model()`` and ``fit_features(...)``, so the Router extracts one trunk's training
  features once for every component on it.

Adapters for a user's ``nn.Module`` and a scikit-learn classifier on frozen features are in
``hierarchy.routing.adapters``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hierarchy.data import ImageDataset, PreprocessConfig
from hierarchy.data.counterfactual_augment import CounterfactualAugment
from hierarchy.fileio import read_json
from hierarchy.labels import NO_TUMOR, to_indices
from hierarchy.models import build_architecture, create, load_bundle, save_bundle
from hierarchy.models.bundle import CONFIG_FILE
from hierarchy.provenance import data_fingerprint, data_hashes
from hierarchy.routing.inputs import batches, decode_workers, resolve_inputs
from hierarchy.routing.trunk import head_proba, trunk_features
from hierarchy.settings import Settings
from hierarchy.training import (
    AuxTargetDataset,
    TrainConfig,
    attach_head,
    backbone_fingerprint,
    extract_features,
    fit_linear_head,
    outside_mask_features,
    train,
    train_joint,
)

logger = logging.getLogger(__name__)

PREDICT_BATCH = 32
IMAGE_MODES = ("finetune", "frozen", "joint", "aux")


@dataclass(frozen=True)
class Task(Settings):
    """What a component predicts: column ``target`` over ``classes``, on the rows where ``column == value``
    (every row whose ``target`` is known when ``column`` is None).

    The parent-group classifier is ``Task("plane", planes)``, the flat model ``Task("label", classes)``, the
    expert of parent group ``p`` ``Task("label", classes, column="plane", value=p)``.
    """

    target: str
    classes: tuple[str, ...]
    column: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"a task needs at least two distinct classes, got {list(self.classes)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Task:
        return super().from_dict({**values, "classes": tuple(values["classes"])})

    def row_mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows of a dataset index this task trains on."""
        if self.column is not None:
            return (frame[self.column] == self.value).to_numpy()
        return frame[self.target].notna().to_numpy()


def refuse_test_rows(frame: pd.DataFrame, what: str) -> None:
    """Raise ``ValueError`` when a frame meant for training holds test-split rows (naming one)."""
    if "split" in frame.columns and (frame["split"] == "test").any():
        first = frame.loc[frame["split"] == "test", "path"].iloc[0] if "path" in frame.columns else "?"
        raise ValueError(f"{what} holds {int((frame['split'] == 'test').sum())} test-split rows (e.g. {first}); "
                         "training and validation must never see the test split")


@contextmanager
def work_dir(out_dir: str | Path | None) -> Iterator[Path]:
    """``out_dir`` (created), or a temporary folder removed afterwards."""
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="hierarchy-") as tmp:
        yield Path(tmp)


class Component(BaseEstimator):
    """Base of every Router component: a classifier of preprocessed images for one ``Task``.

    Subclasses set ``kind`` (the name ``load_component`` dispatches on), store their ``__init__`` arguments
    unchanged (so ``get_params`` and ``sklearn.base.clone`` work) and implement ``fit``,
    ``proba_from_batch``, ``save`` and ``_from_saved``.
    """

    kind: ClassVar[str] = ""
    frozen: ClassVar[bool] = False  # True: fitted by fit_features on features the Router extracts once

    def __init__(self, task: Task | None = None, *, preprocess: PreprocessConfig | None = None,
                 train_config: TrainConfig | None = None) -> None:
        self.task = task
        self.preprocess = preprocess
        self.train_config = train_config

    # -- settings with defaults ----------------------------------------------------------------
    @property
    def task_(self) -> Task:
        if self.task is None:
            raise ValueError(f"{type(self).__name__} has no task; a Router gives each component one")
        return self.task

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes this component predicts, in probability-column order."""
        return self.task_.classes

    @property
    def preprocess_(self) -> PreprocessConfig:
        return self.preprocess or PreprocessConfig()

    @property
    def train_config_(self) -> TrainConfig:
        return self.train_config or TrainConfig()

    # -- rows and targets ----------------------------------------------------------------------
    def training_rows(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        """The rows of ``frame`` this component trains on; bad frames and unknown classes raise."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{what} must be a dataset-index DataFrame (hierarchy.data.index_dataset), "
                            f"got {type(frame).__name__}")
        task = self.task_
        missing = [c for c in ("path", task.target, task.column) if c is not None and c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lacks columns {missing}")
        refuse_test_rows(frame, what)
        rows = frame[task.row_mask(frame)].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"{what} holds no rows for {self!r}")
        unknown = rows[~rows[task.target].isin(task.classes)]
        if not unknown.empty:
            raise ValueError(f"{what}: {task.target} values {sorted(map(str, unknown[task.target].unique()))} "
                             f"(e.g. {unknown['path'].iloc[0]}) are not among the classes {list(task.classes)}")
        return rows

    def targets(self, rows: pd.DataFrame) -> np.ndarray:
        """Class indices of the rows' target column."""
        return to_indices(rows[self.task_.target], self.classes, what=self.task_.target,
                          sources=rows["path"].tolist() if "path" in rows.columns else None)

    def dataset(self, frame: pd.DataFrame, *, train: bool = False, labelled: bool = True) -> ImageDataset:
        """The frame's images as this component's dataset (augmented when ``train``). A training dataset of the
        tumour label gets the counterfactual augmentation and the tumour masks that ``train_config`` asks for."""
        config, on_label = self.train_config_, labelled and self.task_.target == "label"
        counterfactual = (CounterfactualAugment(frame, self.classes, **config.counterfactual_switches)
                          if train and on_label and config.counterfactual else None)
        masks = train and on_label and config.needs_masks
        if masks and not ("mask_path" in frame.columns and frame["mask_path"].notna().any()):
            raise ValueError(f"{self!r}: a mask loss (mask_weight, evidence_weight or neutral_weight > 0) needs "
                             "tumour masks (a mask_path column, as index_dataset gives for BRISC 2025), and no "
                             "training row has one")
        return ImageDataset(frame, self.preprocess_, target=self.task_.target if labelled else None,
                            classes=self.classes if labelled else None, train=train,
                            counterfactual=counterfactual, return_masks=masks)

    def _refuse_mask_losses(self, why: str) -> None:
        """Raise when ``train_config`` asks for a mask loss (``mask_weight``, ``evidence_weight``,
        ``neutral_weight``) for a component that cannot use it."""
        if self.train_config_.needs_masks and self.task_.target == "label":
            raise ValueError(f"{self!r}: the mask losses (mask_weight, evidence_weight, neutral_weight) need a "
                             f"jointly trained timm model (mode='joint'); {why}")

    # -- protocol ------------------------------------------------------------------------------
    def fit(self, train_frame: pd.DataFrame, val_frame: pd.DataFrame, *, out_dir: str | Path | None = None,
            resume: bool = False) -> Component:
        raise NotImplementedError

    def proba_from_batch(self, x: torch.Tensor) -> np.ndarray:
        """Class probabilities of a preprocessed (n, 1, S, S) batch."""
        raise NotImplementedError

    def trunk_key(self) -> str | None:
        """Identifier of a trunk that components may share (None: this component has none)."""
        return None

    def features_from_batch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no shareable trunk")

    def proba_from_features(self, features: torch.Tensor) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no shareable trunk")

    def predict_proba(self, inputs: Any, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """(n, len(classes)) probabilities for paths, a folder, images, arrays, tensors or an index frame."""
        check_is_fitted(self)
        resolved = resolve_inputs(inputs)
        return np.concatenate([self.proba_from_batch(x) for _, x in
                               batches(resolved, self.preprocess_, batch_size,
                                       num_workers=decode_workers(self.train_config_.num_workers))])

    def predict(self, inputs: Any, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The most probable class name per image."""
        proba = self.predict_proba(inputs, batch_size=batch_size)
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]

    def describe(self) -> dict[str, Any]:
        """A short JSON-ready description (kind and what it is built from), for manifests and reprs."""
        return {"component": self.kind}

    def _saved_settings(self) -> dict[str, Any]:
        return {"component": self.kind, "task": self.task_.to_dict(), "preprocess": self.preprocess_.to_dict(),
                "training": self.train_config_.to_dict(), "data_hashes": getattr(self, "trained_on_", {})}

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        raise NotImplementedError

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any], trusted: Sequence[str] = ()) -> Component:
        raise NotImplementedError

    @classmethod
    def code_named(cls, directory: Path, config: dict[str, Any]) -> list[str]:
        """What loading the component saved in ``directory`` would import or run beyond the library's own
        trusted code (e.g. a module factory's ``"package.module:qualname"``), found without running any of it."""
        return []

    def _set_trained_on(self, train_rows: pd.DataFrame, val_rows: pd.DataFrame) -> None:
        self.trained_on_ = data_hashes({"train": train_rows, "val": val_rows})


def settings_from_saved(config: dict[str, Any]) -> dict[str, Any]:
    """The ``Component`` keyword arguments stored by ``_saved_settings``."""
    return {"task": Task.from_dict(config["task"]), "preprocess": PreprocessConfig.from_dict(config["preprocess"]),
            "train_config": TrainConfig.from_dict(config["training"])}


class ImageClassifier(Component):
    """A component built from a backbone name: ``simple_cnn`` or any ``timm.list_models()`` name.

    ``weights``: ``"imagenet"`` (offline), ``None`` (random initialisation, logged) or a weights path.
    ``mode``: ``"finetune"`` trains the whole network with ``hierarchy.training.train``; ``"frozen"`` keeps
    the backbone fixed and fits a linear head on its cached features; ``"joint"`` trains the whole network
    on its task and on ``aux_task`` at once (``hierarchy.training.train_joint``, the auxiliary loss weighted
    by ``TrainConfig.aux_weight``; rows outside ``aux_task``'s classes give the main loss only) and keeps the
    auxiliary head as ``aux_head_``; ``"aux"`` trains nothing: it is ``init_from``'s network with
    ``init_from.aux_head_`` as classifier (its task must be ``init_from``'s ``aux_task``). ``init_from``: a
    fitted ``ImageClassifier`` with the same backbone whose trunk (everything but the classifier) this one
    starts from instead of ``weights``.
    """

    kind = "timm"

    def __init__(self, backbone: str = "simple_cnn", task: Task | None = None, *,
                 preprocess: PreprocessConfig | None = None, weights: str | Path | None = "imagenet",
                 train_config: TrainConfig | None = None, mode: str = "finetune",
                 init_from: ImageClassifier | None = None, aux_task: Task | None = None) -> None:
        super().__init__(task, preprocess=preprocess, train_config=train_config)
        self.backbone = backbone
        self.weights = weights
        self.mode = mode
        self.init_from = init_from
        self.aux_task = aux_task

    @property
    def frozen(self) -> bool:  # type: ignore[override]
        return self.mode == "frozen"

    def __repr__(self) -> str:
        state = "fitted" if hasattr(self, "model_") else "not fitted"
        task = f", {self.task.target}" + (f" where {self.task.column}={self.task.value}" if self.task.column else "") \
            if self.task else ""
        return f"ImageClassifier({self.backbone!r}{task}, mode={self.mode!r}, {state})"

    def describe(self) -> dict[str, Any]:
        return {"component": self.kind, "backbone": self.backbone}

    # -- building and training -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A fresh network with this component's starting weights (random ones drawn from the training seed,
        so components with the same backbone and seed start from the same trunk), or ``init_from``'s trunk."""
        if self.mode not in IMAGE_MODES:
            raise ValueError(f"mode must be one of {IMAGE_MODES}, got {self.mode!r}")
        if self.mode == "joint" and self.aux_task is None:
            raise ValueError(f"{self!r}: mode='joint' needs an aux_task")
        if self.mode == "aux" and self.init_from is None:
            raise ValueError(f"{self!r}: mode='aux' takes its network from init_from; give one")
        if self.init_from is not None:
            return self._copy_trunk(self.init_from)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config_.seed)
            return create(self.backbone, len(self.classes), weights=self.weights)

    def _copy_trunk(self, source: ImageClassifier) -> nn.Module:
        if not hasattr(source, "model_"):
            raise NotFittedError(f"{self!r}: the component to start from ({source!r}) is not fitted yet")
        if source.backbone != self.backbone:
            raise ValueError(f"{self!r} cannot start from a {source.backbone} model: backbones differ")
        model = build_architecture(self.backbone, len(source.classes))
        model.load_state_dict(source.model_.state_dict())
        model.reset_classifier(len(self.classes))
        model.weights_origin = (f"trunk of the trained flat model "
                                f"({getattr(source.model_, 'weights_origin', 'trained')}, then trained)")
        return model

    def fit(self, train_frame: pd.DataFrame, val_frame: pd.DataFrame, *, out_dir: str | Path | None = None,
            resume: bool = False) -> ImageClassifier:
        """Train on the rows of ``train_frame`` this component's task selects; select on ``val_frame``.

        ``out_dir`` keeps the training log, checkpoints (for ``resume``) and the frozen-feature cache; a
        temporary folder is used when it is None. Test-split rows are refused.
        """
        train_rows = self.training_rows(train_frame, "train_frame")
        val_rows = self.training_rows(val_frame, "val_frame")
        model = self.build_model()
        if self.mode == "aux":
            return self._fit_aux(model, train_rows, val_rows)
        if self.mode == "finetune":
            self._refuse_mask_losses("this component fine-tunes without a segmentation head")
        with work_dir(out_dir) as work:
            if self.mode in ("finetune", "joint"):
                key = {"component": self.task_.to_dict(), "backbone": self.backbone,
                       "preprocess": self.preprocess_.fingerprint(),
                       "data": data_hashes({"train": train_rows, "val": val_rows})}
                train_data, val_data = self.dataset(train_rows, train=True), self.dataset(val_rows)
                if self.mode == "finetune":
                    train(model, train_data, val_data, self.train_config_, work, resume=resume, data_key=key)
                else:
                    result = train_joint(model, AuxTargetDataset(train_data, self._aux_targets(train_rows)),
                                         AuxTargetDataset(val_data, self._aux_targets(val_rows)),
                                         self.train_config_, work, aux_classes=len(self.aux_task.classes),
                                         resume=resume, data_key={**key, "aux": self.aux_task.to_dict()})
                    self.aux_head_ = result.aux_head.cpu().eval()
                self._set_fitted(model, train_rows, val_rows)
                return self
            features = [self.extract(model, rows, work / "features") for rows in (train_rows, val_rows)]
        return self.fit_features(model, train_rows, val_rows, *features)

    def _aux_targets(self, rows: pd.DataFrame) -> np.ndarray:
        """Index of each row's ``aux_task`` target among its classes; -1 where unknown (main loss only)."""
        lookup = {c: i for i, c in enumerate(self.aux_task.classes)}
        column = rows[self.aux_task.target] if self.aux_task.target in rows.columns else pd.Series(index=rows.index)
        return np.array([lookup.get(str(v), -1) if pd.notna(v) else -1 for v in column], dtype=np.int64)

    def _fit_aux(self, model: nn.Module, train_rows: pd.DataFrame, val_rows: pd.DataFrame) -> ImageClassifier:
        source = self.init_from
        if getattr(source, "aux_head_", None) is None or source.aux_task.classes != self.classes:
            raise ValueError(f"{self!r}: {source!r} has no jointly trained head for {list(self.classes)}")
        self._set_fitted(attach_head(model, source.aux_head_), train_rows, val_rows)
        return self

    def extract(self, model: nn.Module, frame: pd.DataFrame, cache_dir: Path, *, view: int = 0) -> np.ndarray:
        """The backbone's pre-logit features of every row of ``frame`` (cached on disk).

        ``view`` 0 is the evaluation pipeline; ``view`` k > 0 is the k-th pass through the training
        augmentation, its randomness fixed by the training seed and k.
        """
        key = {"backbone": self.backbone, "weights": str(getattr(model, "weights_origin", self.weights)),
               "preprocess": self.preprocess_.fingerprint() if view else self.preprocess_.eval_fingerprint(),
               "data": data_fingerprint(frame),
               "view": view, "seed": self.train_config_.seed if view else None}
        dataset = ImageDataset(frame, self.preprocess_, target=None, train=view > 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config_.seed * 1000 + view)
            return extract_features(model, dataset, cache_dir=cache_dir, key=key,
                                    num_workers=0 if view else self.train_config_.num_workers)

    def extract_outside(self, model: nn.Module, frame: pd.DataFrame, cache_dir: Path) -> np.ndarray:
        """Every row's features pooled outside its tumour mask, evaluation pipeline (cached; NaN rows where the
        mask is unknown or empty): see :func:`hierarchy.training.outside_mask_features`. Only the tumour rows
        with a mask are decoded and passed through the network."""
        masked = (frame["label"].astype(str) != NO_TUMOR) & frame["mask_path"].notna() \
            if "mask_path" in frame.columns else pd.Series(False, index=frame.index)
        if not masked.any():
            raise ValueError(f"{self!r}: head_neutral_weight > 0 needs tumour masks (a mask_path column, as "
                             "index_dataset gives for BRISC 2025), and no training row has one")
        rows = frame[masked]
        key = {"backbone": self.backbone, "weights": str(getattr(model, "weights_origin", self.weights)),
               "preprocess": self.preprocess_.eval_fingerprint(), "data": data_fingerprint(rows),
               "masks": [str(p) for p in rows["mask_path"]], "view": "outside_mask"}
        dataset = ImageDataset(rows, self.preprocess_, target="label",
                               classes=tuple(sorted(rows["label"].astype(str).unique())), train=False,
                               return_masks=True)
        features = outside_mask_features(model, dataset, cache_dir=cache_dir, key=key)
        full = np.full((len(frame), features.shape[1]), np.nan, dtype=features.dtype)
        full[masked.to_numpy()] = features
        return full

    def extract_view(self, model: nn.Module, frame: pd.DataFrame, cache_dir: Path, *,
                     view: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`extract`, plus the tumour label each view's image carries (None when ``frame`` has none).

        With counterfactual augmentation in ``train_config`` (``paste_p``, ``removal_p``, ``style_swap_p``), an
        augmented view (``view`` > 0) also pastes in, removes and restyles tumours, and a pasted or removed
        tumour changes the label: heads fitted on such views learn what the fine-tuned trunk was taught,
        instead of relearning the image source from clean features.
        """
        config = self.train_config_
        if view == 0 or not config.counterfactual or "label" not in frame.columns:
            labels = frame["label"].to_numpy() if "label" in frame.columns else None
            return self.extract(model, frame, cache_dir, view=view), labels
        classes = tuple(sorted(frame["label"].astype(str).unique()))
        switches = config.counterfactual_switches
        key = {"backbone": self.backbone, "weights": str(getattr(model, "weights_origin", self.weights)),
               "preprocess": self.preprocess_.fingerprint(), "data": data_fingerprint(frame), "view": view,
               "seed": config.seed, "counterfactual": switches, "classes": list(classes)}
        dataset = ImageDataset(frame, self.preprocess_, target="label", classes=classes, train=True,
                               seed=config.seed * 1000 + view,
                               counterfactual=CounterfactualAugment(frame, classes, **switches))
        features, targets = extract_features(model, dataset, cache_dir=cache_dir, key=key, num_workers=0,
                                             with_targets=True)
        return features, np.asarray(classes, dtype=object)[targets]

    def fit_features(self, model: nn.Module, train_frame: pd.DataFrame, val_frame: pd.DataFrame,
                     train_features: np.ndarray, val_features: np.ndarray, *, neutral: np.ndarray | None = None,
                     neutral_weight: float = 0.0, prior: nn.Linear | None = None,
                     prior_weight: float = 0.0) -> ImageClassifier:
        """Fit a linear head on backbone features of every row of the frames and attach it to ``model``
        (whose backbone produced them). Rows the task does not use are dropped, so several components can
        share one feature extraction. ``neutral`` rows (features pooled outside tumour masks) must get no
        class from the head, with weight ``neutral_weight``; with ``prior_weight`` > 0 the head is pulled
        towards ``prior``, a head on the same features (:func:`hierarchy.training.fit_linear_head`)."""
        train_rows = self.training_rows(train_frame, "train_frame")
        val_rows = self.training_rows(val_frame, "val_frame")
        train_features = np.asarray(train_features)[self.task_.row_mask(train_frame)]
        val_features = np.asarray(val_features)[self.task_.row_mask(val_frame)]
        for param in model.parameters():
            param.requires_grad_(False)
        head = fit_linear_head(train_features, self.targets(train_rows), len(self.classes),
                               class_balanced=self.train_config_.class_balanced,
                               val=(val_features, self.targets(val_rows)), neutral=neutral,
                               neutral_weight=neutral_weight, prior=prior, prior_weight=prior_weight)
        self._set_fitted(attach_head(model, head), train_rows, val_rows)
        return self

    def _set_fitted(self, model: nn.Module, train_rows: pd.DataFrame, val_rows: pd.DataFrame) -> None:
        self.model_ = model.cpu().eval()
        self._set_trained_on(train_rows, val_rows)

    # -- prediction ----------------------------------------------------------------------------
    def check_fitted(self) -> nn.Module:
        """The fitted network; ``NotFittedError`` before ``fit`` or ``load_component``."""
        check_is_fitted(self)
        return self.model_

    def trunk_key(self) -> str:
        return backbone_fingerprint(self.check_fitted())

    def features_from_batch(self, x: torch.Tensor) -> torch.Tensor:
        return trunk_features(self.check_fitted(), x)

    def proba_from_features(self, features: torch.Tensor) -> np.ndarray:
        return head_proba(self.check_fitted(), features)

    def proba_from_batch(self, x: torch.Tensor) -> np.ndarray:
        return self.proba_from_features(self.features_from_batch(x))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted component as a model bundle; an existing bundle is kept unless ``overwrite``."""
        config = {**self._saved_settings(), "classes": list(self.classes), "backbone": self.backbone,
                  "mode": self.mode, "weights": None if self.weights is None else str(self.weights)}
        save_bundle(self.check_fitted(), directory, config, overwrite=overwrite)
        return Path(directory)

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any], trusted: Sequence[str] = ()) -> ImageClassifier:
        model, _ = load_bundle(directory)
        component = cls(config["backbone"], weights=config["weights"], mode=config["mode"],
                        **settings_from_saved(config))
        component.model_ = model.eval()
        component.trained_on_ = config.get("data_hashes", {})
        return component


COMPONENT_KINDS: dict[str, type[Component]] = {}


def register_component(cls: type[Component]) -> type[Component]:
    """Make ``load_component`` read components of ``cls.kind``."""
    COMPONENT_KINDS[cls.kind] = cls
    return cls


register_component(ImageClassifier)


class UntrustedCodeError(ValueError):
    """Loading would import or call code that the saved files name and the caller did not trust."""


def _saved_kind(directory: Path) -> tuple[type[Component], dict[str, Any]]:
    config = read_json(directory / CONFIG_FILE, what="component config")
    if not isinstance(config, dict):
        raise ValueError(f"{directory / CONFIG_FILE}: expected a JSON object, found a JSON {type(config).__name__}")
    kind = config.get("component")
    if kind not in COMPONENT_KINDS:
        raise ValueError(f"{directory / CONFIG_FILE}: unknown component kind {kind!r}; "
                         f"known: {sorted(COMPONENT_KINDS)}")
    return COMPONENT_KINDS[kind], config


def untrusted_code(directory: str | Path, trusted: Sequence[str] = ()) -> list[str]:
    """The names of code that loading the component in ``directory`` would import or call and that neither
    the library nor ``trusted`` vouches for; nothing is imported or run to find them."""
    kind, config = _saved_kind(Path(directory))
    return _untrusted(kind, Path(directory), config, trusted)


def _untrusted(kind: type[Component], directory: Path, config: dict[str, Any], trusted: Sequence[str]) -> list[str]:
    return sorted(set(kind.code_named(directory, config)) - set(trusted))


def untrusted_message(where: str | Path, names: Sequence[str]) -> str:
    """The refusal for ``names``: what would have run and how to allow it."""
    return (f"{where}: loading would import and run code named in the saved files: {sorted(names)}; "
            "nothing was loaded. If you trust the folder's author, pass trusted=[...] with these names "
            "(command line: --trust NAME)")


def load_component(directory: str | Path, *, trusted: Sequence[str] = ()) -> Component:
    """Read a component written by its ``save``; the folder's ``config.json`` names its kind.

    Code the files name beyond the library's own (a module factory, a scikit-learn head's non-standard types)
    is imported only when listed in ``trusted``, mirroring ``skops.io.load(trusted=...)``; otherwise
    ``UntrustedCodeError`` names it, before anything is imported.
    """
    directory = Path(directory)
    kind, config = _saved_kind(directory)
    untrusted = _untrusted(kind, directory, config, trusted)
    if untrusted:
        raise UntrustedCodeError(untrusted_message(directory, untrusted))
    return kind._from_saved(directory, config, tuple(trusted))
