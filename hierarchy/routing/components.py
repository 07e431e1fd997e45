"""Scikit-learn-like image classifiers: the scan-plane classifier, the per-plane tumour experts, the flat model.

Each wraps one ``hierarchy.models`` network with its class list and preprocessing, trains it end to end
(``mode="finetune"``) or as a linear head on frozen, cached backbone features (``mode="frozen"``), and
saves to / loads from a model bundle.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from hierarchy.data import ImageDataset, PreprocessConfig, train_val_split
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.models import build_architecture, create, load_bundle, save_bundle
from hierarchy.provenance import data_fingerprint, data_hashes
from hierarchy.routing.inputs import batches, resolve_inputs
from hierarchy.routing.trunk import head_proba, trunk_features
from hierarchy.training import TrainConfig, attach_head, extract_features, fit_linear_head, train

logger = logging.getLogger(__name__)

MODES = ("finetune", "frozen")
TARGETS = ("label", "plane")
EXPERT_INITS = ("imagenet", "flat", "scratch")
PREDICT_BATCH = 32


@contextmanager
def _work_dir(out_dir: str | Path | None):
    """``out_dir`` (created), or a temporary folder removed afterwards."""
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="hierarchy-") as tmp:
        yield Path(tmp)


def refuse_test_rows(frame: pd.DataFrame, what: str) -> None:
    """Raise ``ValueError`` when a frame meant for training holds test-split rows (naming one)."""
    if "split" in frame.columns and (frame["split"] == "test").any():
        first = frame.loc[frame["split"] == "test", "path"].iloc[0] if "path" in frame.columns else "?"
        raise ValueError(f"{what} holds {int((frame['split'] == 'test').sum())} test-split rows (e.g. {first}); "
                         "training and validation must never see the test split")


class ImageClassifier:
    """One image classifier over ``classes``, predicting ``target`` (``"label"`` or ``"plane"``) of a row.

    ``weights``: ``"imagenet"`` (offline), ``None`` (random initialisation, logged) or a weights path.
    ``mode``: ``"finetune"`` trains the whole network with ``hierarchy.training.train``; ``"frozen"`` keeps
    the backbone fixed and fits a linear head on its cached features. ``init_from``: a fitted component
    with the same backbone whose trunk (everything but the classifier) this one starts from instead of
    ``weights``; in frozen mode several components then share that trunk and one forward pass.
    """

    kind = "image"

    def __init__(self, backbone: str, classes: Sequence[str], *, target: str = "label",
                 preprocess: PreprocessConfig | None = None, weights: str | Path | None = "imagenet",
                 train_config: TrainConfig | None = None, mode: str = "finetune",
                 init_from: ImageClassifier | None = None) -> None:
        classes = tuple(str(c) for c in classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be at least two distinct names, got {list(classes)}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.backbone = backbone
        self.classes = classes
        self.target = target
        self.preprocess = preprocess or PreprocessConfig()
        self.weights = weights
        self.train_config = train_config or TrainConfig()
        self.mode = mode
        self.init_from = init_from
        self.model_: nn.Module | None = None
        self.trained_on_: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "fitted" if self.model_ is not None else "not fitted"
        return f"{type(self).__name__}({self.backbone!r}, classes={list(self.classes)}, mode={self.mode!r}, {state})"

    # -- which rows a component trains on ------------------------------------------------------
    def row_mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows of a dataset index this component trains on."""
        return np.ones(len(frame), dtype=bool)

    def _training_rows(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{what} must be a dataset-index DataFrame (hierarchy.data.index_dataset), "
                            f"got {type(frame).__name__}")
        missing = [c for c in ("path", self.target) if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lacks columns {missing}")
        refuse_test_rows(frame, what)
        rows = frame[self.row_mask(frame)].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"{what} holds no rows for {self!r}")
        unknown = rows[~rows[self.target].isin(self.classes)]
        if not unknown.empty:
            raise ValueError(f"{what}: {self.target} values {sorted(map(str, unknown[self.target].unique()))} "
                             f"(e.g. {unknown['path'].iloc[0]}) are not among the classes {list(self.classes)}")
        return rows

    # -- building and training -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A fresh network with this component's starting weights (random ones drawn from the config's seed,
        so components with the same backbone and seed start from the same trunk), or ``init_from``'s trunk."""
        if self.init_from is not None:
            return self._copy_trunk(self.init_from)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config.seed)
            return create(self.backbone, len(self.classes), weights=self.weights)

    def _copy_trunk(self, source: ImageClassifier) -> nn.Module:
        if source.model_ is None:
            raise NotFittedError(f"{self!r}: the component to start from ({source!r}) is not fitted yet")
        if source.backbone != self.backbone:
            raise ValueError(f"{self!r} cannot start from a {source.backbone} model: backbones differ")
        model = build_architecture(self.backbone, len(source.classes))
        model.load_state_dict(source.model_.state_dict())
        model.reset_classifier(len(self.classes))
        model.weights_origin = (f"trunk of the trained {source.kind} model "
                                f"({getattr(source.model_, 'weights_origin', 'trained')}, then trained)")
        return model

    def dataset(self, frame: pd.DataFrame, *, train: bool = False, labelled: bool = True) -> ImageDataset:
        """The frame's images as this component's dataset (augmented when ``train``)."""
        return ImageDataset(frame, self.preprocess, target=self.target if labelled else None,
                            classes=self.classes if labelled else None, train=train)

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """Class indices of the frame's ``target`` column."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[v] for v in frame[self.target]], dtype=int)

    def fit(self, train_frame: pd.DataFrame, val_frame: pd.DataFrame | None = None, *,
            out_dir: str | Path | None = None, resume: bool = False) -> ImageClassifier:
        """Train on the rows of ``train_frame`` this component uses; select on ``val_frame``.

        Without ``val_frame`` a stratified validation set is carved from the training rows. ``out_dir`` keeps
        the training log, checkpoints (for ``resume``) and the frozen-feature cache; a temporary folder
        is used when it is None. Test-split rows are refused.
        """
        train_rows = self._training_rows(train_frame, "train_frame")
        if val_frame is None:
            train_rows, val_rows = train_val_split(train_rows, seed=self.train_config.seed)
        else:
            val_rows = self._training_rows(val_frame, "val_frame")
        model = self.build_model()
        with _work_dir(out_dir) as work:
            if self.mode == "finetune":
                key = {"component": self.kind, "backbone": self.backbone, "classes": list(self.classes),
                       "preprocess": self.preprocess.fingerprint(),
                       "data": data_hashes({"train": train_rows, "val": val_rows})}
                train(model, self.dataset(train_rows, train=True), self.dataset(val_rows), self.train_config,
                      work, resume=resume, data_key=key)
                self._set_fitted(model, train_rows, val_rows)
                return self
            features = [self.extract(model, rows, work / "features") for rows in (train_rows, val_rows)]
        return self.fit_features(model, train_rows, val_rows, *features)

    def extract(self, model: nn.Module, frame: pd.DataFrame, cache_dir: Path, *, view: int = 0) -> np.ndarray:
        """Frozen mode: the backbone's pre-logit features of every row of ``frame`` (cached on disk).

        ``view`` 0 is the evaluation pipeline; ``view`` k > 0 is the k-th pass through the training
        augmentation, its randomness fixed by the training seed and k.
        """
        key = {"backbone": self.backbone, "weights": str(getattr(model, "weights_origin", self.weights)),
               "preprocess": self.preprocess.fingerprint(), "data": data_fingerprint(frame),
               "view": view, "seed": self.train_config.seed if view else None}
        dataset = self.dataset(frame, train=view > 0, labelled=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config.seed * 1000 + view)
            return extract_features(model, dataset, cache_dir=cache_dir, key=key,
                                    num_workers=0 if view else self.train_config.num_workers)

    def fit_features(self, model: nn.Module, train_frame: pd.DataFrame, val_frame: pd.DataFrame,
                     train_features: np.ndarray, val_features: np.ndarray) -> ImageClassifier:
        """Frozen mode: fit a linear head on backbone features of every row of the frames, attach it to
        ``model`` (whose backbone produced them) and keep ``model``. Rows this component does not use are
        dropped, so several components can share one feature extraction."""
        train_rows = self._training_rows(train_frame, "train_frame")
        val_rows = self._training_rows(val_frame, "val_frame")
        train_features = np.asarray(train_features)[self.row_mask(train_frame)]
        val_features = np.asarray(val_features)[self.row_mask(val_frame)]
        for param in model.parameters():
            param.requires_grad_(False)
        head = fit_linear_head(train_features, self.targets(train_rows), len(self.classes),
                               class_balanced=self.train_config.class_balanced,
                               val=(val_features, self.targets(val_rows)))
        self._set_fitted(attach_head(model, head), train_rows, val_rows)
        return self

    def _set_fitted(self, model: nn.Module, train_rows: pd.DataFrame, val_rows: pd.DataFrame) -> None:
        self.model_ = model.cpu().eval()
        self.trained_on_ = data_hashes({"train": train_rows, "val": val_rows})

    # -- prediction ----------------------------------------------------------------------------
    def check_fitted(self) -> nn.Module:
        """The fitted network; ``NotFittedError`` before ``fit`` or ``load``."""
        if self.model_ is None:
            raise NotFittedError(f"{self!r} is not fitted yet; call fit() or load() first")
        return self.model_

    @torch.no_grad()
    def proba_from_batch(self, x: torch.Tensor) -> np.ndarray:
        """Class probabilities of an already preprocessed (n, 1, S, S) batch."""
        model = self.check_fitted()
        return head_proba(model, trunk_features(model, x))

    def predict_proba(self, inputs: Any, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """(n, len(classes)) probabilities for paths, a folder, images, arrays, tensors or an index frame."""
        self.check_fitted()
        resolved = resolve_inputs(inputs)
        parts = [self.proba_from_batch(x) for _, x in batches(resolved, self.preprocess, batch_size)]
        return np.concatenate(parts)

    def predict(self, inputs: Any, *, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The most probable class name per image."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(inputs, batch_size=batch_size).argmax(1)]

    # -- persistence ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Everything needed to rebuild this component, as JSON-ready values."""
        return {"component": self.kind, "backbone": self.backbone, "classes": list(self.classes),
                "target": self.target, "mode": self.mode,
                "weights": None if self.weights is None else str(self.weights),
                "preprocess": self.preprocess.to_dict(), "training": self.train_config.to_dict(),
                "data_hashes": self.trained_on_}

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> ImageClassifier:
        return cls(config["backbone"], config["classes"], target=config["target"], **_common(config))

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted component as a model bundle; an existing bundle is kept unless ``overwrite``."""
        save_bundle(self.check_fitted(), directory, self.get_config(), overwrite=overwrite)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> ImageClassifier:
        """Load a component bundle written by ``save``; the bundle's kind must match ``cls``."""
        model, config = load_bundle(directory)
        kind = config.get("component")
        component_cls = COMPONENTS.get(kind)
        if component_cls is None or not issubclass(component_cls, cls):
            raise ValueError(f"{directory}: bundle holds a {kind!r} component, not a {cls.kind!r} one")
        component = component_cls._from_config(config)
        component.model_ = model.eval()
        component.trained_on_ = config.get("data_hashes", {})
        return component


def _common(config: dict[str, Any]) -> dict[str, Any]:
    return {"preprocess": PreprocessConfig.from_dict(config["preprocess"]), "weights": config["weights"],
            "train_config": TrainConfig.from_dict(config["training"]), "mode": config["mode"]}


class PlaneClassifier(ImageClassifier):
    """Predicts the scan plane; trains only on rows whose plane is known."""

    kind = "plane"

    def __init__(self, backbone: str, planes: Sequence[str] = PLANES, **kwargs: Any) -> None:
        super().__init__(backbone, planes, target="plane", **kwargs)

    def row_mask(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["plane"].notna().to_numpy()

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> PlaneClassifier:
        return cls(config["backbone"], config["classes"], **_common(config))


class FlatClassifier(ImageClassifier):
    """The single-model baseline: tumour class from any row, plane or not."""

    kind = "flat"

    def __init__(self, backbone: str, classes: Sequence[str] = TUMOR_CLASSES, **kwargs: Any) -> None:
        super().__init__(backbone, classes, target="label", **kwargs)

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> FlatClassifier:
        return cls(config["backbone"], config["classes"], **_common(config))


class TumorExpert(ImageClassifier):
    """The tumour classifier of one scan plane; trains only on rows of that plane.

    ``init``: ``"imagenet"`` (offline ImageNet weights), ``"scratch"`` (random, logged) or ``"flat"``
    (start from ``init_from``, a fitted ``FlatClassifier`` with the same backbone and classes, then train).
    """

    kind = "expert"

    def __init__(self, plane: str, backbone: str, classes: Sequence[str] = TUMOR_CLASSES, *,
                 init: str = "imagenet", init_from: FlatClassifier | None = None, **kwargs: Any) -> None:
        if plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
        if init not in EXPERT_INITS:
            raise ValueError(f"expert init must be one of {EXPERT_INITS}, got {init!r}")
        if init_from is not None and init != "flat":
            raise ValueError(f"{plane} expert: init_from=<a FlatClassifier> goes with init='flat' only")
        if "weights" in kwargs:
            raise TypeError("TumorExpert takes init= ('imagenet', 'flat', 'scratch'), not weights=")
        super().__init__(backbone, classes, target="label",
                         weights={"imagenet": "imagenet", "scratch": None, "flat": None}[init],
                         init_from=init_from, **kwargs)
        self.plane = plane
        self.init = init

    def row_mask(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["plane"] == self.plane).to_numpy()

    def build_model(self) -> nn.Module:
        # A loaded expert has init='flat' but no flat model to hand: it needs none unless it is trained again.
        if self.init == "flat" and self.init_from is None:
            raise ValueError(f"{self.plane} expert: init='flat' needs init_from=<the fitted FlatClassifier> to train")
        return super().build_model()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "plane": self.plane, "init": self.init}

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> TumorExpert:
        common = _common(config)
        del common["weights"]
        return cls(config["plane"], config["backbone"], config["classes"], init=config["init"], **common)


COMPONENTS: dict[str, type[ImageClassifier]] = {c.kind: c for c in (ImageClassifier, PlaneClassifier,
                                                                    FlatClassifier, TumorExpert)}
