"""Component adapters: a user's ``nn.Module`` (``ModuleClassifier``) and any scikit-learn classifier fitted on
a backbone's frozen features (``SklearnClassifier``).

Saving stays safe to load: a module is stored as tensors (safetensors) plus the importable
``"package.module:qualname"`` factory that rebuilds it, which loading imports and calls only when the caller
lists it in ``trusted``; a scikit-learn head is stored with ``skops.io`` and loaded only if every type in it
is trusted by skops, listed in ``TRUSTED_TYPES`` or in the caller's ``trusted``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from torch import nn

from hierarchy.data import PreprocessConfig
from hierarchy.fileio import atomic_write_bytes, write_json
from hierarchy.models import load_bundle, save_bundle
from hierarchy.models.bundle import CONFIG_FILE
from hierarchy.routing.components import (
    Component,
    ImageClassifier,
    Task,
    register_component,
    settings_from_saved,
    work_dir,
)
from hierarchy.training import TrainConfig, train

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.skops"
# Types trusted on top of skops' own defaults (scikit-learn estimators, numpy and scipy containers).
TRUSTED_TYPES: tuple[str, ...] = ()


def _factory_path(factory: Callable[..., nn.Module] | str) -> str:
    """``"module:qualname"`` of a factory, checked to import back to the same object."""
    if isinstance(factory, str):
        path = factory
    else:
        module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
        if module is None or module == "__main__" or "<" in qualname:
            raise ValueError(f"cannot save a ModuleClassifier built by {factory!r}: its factory must be a "
                             "module-level function or class in an importable module (not __main__, a lambda "
                             "or a local function), so that load() can rebuild the network")
        path = f"{module}:{qualname}"
    resolve_factory(path)
    return path


def resolve_factory(path: str) -> Callable[..., nn.Module]:
    """Import ``"package.module:qualname"``; a clear ``ValueError`` when it cannot be found."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"module factory {path!r} is not of the form 'package.module:qualname'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import the module factory {path!r}: {err}") from err
    return target


@register_component
class ModuleClassifier(Component):
    """A user's ``nn.Module`` as a component, trained end to end with ``hierarchy.training.train``.

    Parameters
    ----------
    factory : callable or str
        ``factory(num_classes, **factory_kwargs)`` returns the network (input (n, 1, S, S), output logits);
        or its ``"package.module:qualname"`` path. To be saved it must be importable.
    factory_kwargs : dict, optional
        JSON-ready keyword arguments of ``factory``.

    Whatever the Router's ``mode``, this component is trained end to end.
    """

    kind = "module"

    def __init__(self, factory: Callable[..., nn.Module] | str | None = None, task: Task | None = None, *,
                 factory_kwargs: dict[str, Any] | None = None, preprocess: PreprocessConfig | None = None,
                 train_config: TrainConfig | None = None) -> None:
        super().__init__(task, preprocess=preprocess, train_config=train_config)
        self.factory = factory
        self.factory_kwargs = factory_kwargs

    def describe(self) -> dict[str, Any]:
        name = self.factory if isinstance(self.factory, str) else getattr(self.factory, "__qualname__", "?")
        return {"component": self.kind, "factory": name}

    def build_model(self) -> nn.Module:
        """A fresh network from ``factory``, its random weights drawn from the training seed."""
        if self.factory is None:
            raise ValueError("ModuleClassifier needs factory=<a callable returning an nn.Module>")
        factory = resolve_factory(self.factory) if isinstance(self.factory, str) else self.factory
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_config_.seed)
            model = factory(len(self.classes), **(self.factory_kwargs or {}))
        if not isinstance(model, nn.Module):
            raise TypeError(f"the module factory returned a {type(model).__name__}, not an nn.Module")
        if getattr(model, "num_classes", None) is None:
            model.num_classes = len(self.classes)  # what the trainer reads
        return model

    def fit(self, train_frame: pd.DataFrame, val_frame: pd.DataFrame, *, out_dir: str | Path | None = None,
            resume: bool = False) -> ModuleClassifier:
        """Train the network end to end on the task's rows of ``train_frame``, selecting on ``val_frame``."""
        train_rows = self.training_rows(train_frame, "train_frame")
        val_rows = self.training_rows(val_frame, "val_frame")
        self._refuse_mask_losses("a ModuleClassifier trains its own module")
        model = self.build_model()
        with work_dir(out_dir) as work:
            train(model, self.dataset(train_rows, train=True), self.dataset(val_rows), self.train_config_, work,
                  resume=resume)
        self.model_ = model.cpu().eval()
        self._set_trained_on(train_rows, val_rows)
        return self

    @torch.no_grad()
    def proba_from_batch(self, x: torch.Tensor) -> np.ndarray:
        check_is_fitted(self)
        return torch.softmax(self.model_(x).double(), dim=1).cpu().numpy()

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.json`` (with the factory's import path) and the tensors; an unimportable factory
        is refused here, at save time, rather than at load."""
        check_is_fitted(self)
        directory = Path(directory)
        config = {**self._saved_settings(), "factory": _factory_path(self.factory),
                  "factory_kwargs": self.factory_kwargs or {}}
        json.dumps(config)  # fails here, before anything is written, if not JSON-ready
        if directory.exists() and any(directory.iterdir()) and not overwrite:
            raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors))
        write_json(directory / CONFIG_FILE, config)
        return directory

    @classmethod
    def code_named(cls, directory: Path, config: dict[str, Any]) -> list[str]:
        """The factory that loading imports and calls."""
        if not isinstance(config.get("factory"), str):
            raise ValueError(f"{directory / CONFIG_FILE}: 'factory' must be a 'package.module:qualname' string, "
                             f"got {config.get('factory')!r}")
        return [config["factory"]]

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any], trusted: Sequence[str] = ()) -> ModuleClassifier:
        component = cls(config["factory"], factory_kwargs=config["factory_kwargs"] or None,
                        **settings_from_saved(config))
        model = component.build_model()
        try:
            model.load_state_dict(load_file(directory / WEIGHTS_FILE))
        except (OSError, RuntimeError, SafetensorError) as err:
            raise ValueError(f"{directory / WEIGHTS_FILE}: does not fit {config['factory']}: {err}") from err
        component.model_ = model.eval()
        component.trained_on_ = config.get("data_hashes", {})
        return component


@register_component
class SklearnClassifier(ImageClassifier):
    """A scikit-learn classifier (e.g. ``LogisticRegression()``) fitted on a frozen backbone's features.

    Parameters
    ----------
    estimator : sklearn classifier with ``predict_proba``
        Cloned and fitted on the pre-logit features of ``backbone`` (a ``simple_cnn`` or timm name,
        starting from ``weights``). Components on the same backbone, weights and seed share one trunk.
    """

    kind = "sklearn"

    def __init__(self, estimator: Any = None, backbone: str = "simple_cnn", task: Task | None = None, *,
                 preprocess: PreprocessConfig | None = None, weights: str | Path | None = "imagenet",
                 train_config: TrainConfig | None = None) -> None:
        super().__init__(backbone, task, preprocess=preprocess, weights=weights, train_config=train_config,
                         mode="frozen")
        self.estimator = estimator

    def __repr__(self) -> str:
        return f"SklearnClassifier({type(self.estimator).__name__} on {self.backbone!r})"

    def describe(self) -> dict[str, Any]:
        return {"component": self.kind, "backbone": self.backbone,
                "estimator": f"{type(self.estimator).__module__}.{type(self.estimator).__qualname__}"}

    def fit_features(self, model: nn.Module, train_frame: pd.DataFrame, val_frame: pd.DataFrame,
                     train_features: np.ndarray, val_features: np.ndarray, *, neutral: np.ndarray | None = None,
                     neutral_weight: float = 0.0, prior: nn.Linear | None = None,
                     prior_weight: float = 0.0) -> SklearnClassifier:
        """Fit a clone of ``estimator`` on the task's rows of the training features (validation unused); a
        scikit-learn estimator takes no neutral rows and no prior head (``neutral_weight`` or ``prior_weight``
        > 0 is refused)."""
        if self.estimator is None or not hasattr(self.estimator, "predict_proba"):
            raise TypeError(f"SklearnClassifier needs a classifier with predict_proba, got {self.estimator!r}")
        if neutral_weight > 0:
            raise ValueError(f"{self!r}: head_neutral_weight needs the Router's own linear heads; a scikit-learn "
                             "estimator has no neutrality penalty")
        if prior_weight > 0:
            raise ValueError(f"{self!r}: expert_anchor_weight needs the Router's own linear heads; a scikit-learn "
                             "estimator cannot be pulled towards the flat head")
        train_rows = self.training_rows(train_frame, "train_frame")
        val_rows = self.training_rows(val_frame, "val_frame")
        features = np.asarray(train_features)[self.task_.row_mask(train_frame)]
        self.head_ = clone(self.estimator).fit(features, self.targets(train_rows))
        self.model_ = model.cpu().eval()
        self._set_trained_on(train_rows, val_rows)
        return self

    def proba_from_features(self, features: torch.Tensor) -> np.ndarray:
        check_is_fitted(self)
        seen = self.head_.predict_proba(features.cpu().numpy().astype(np.float64))
        proba = np.zeros((len(seen), len(self.classes)))  # a class absent from training gets probability 0
        proba[:, np.asarray(self.head_.classes_, dtype=int)] = seen
        return proba

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the backbone as a model bundle and the head with ``skops.io``; a head holding a type that
        is not trusted (skops' defaults plus ``TRUSTED_TYPES``) is refused, naming the types."""
        check_is_fitted(self)
        head = sio.dumps(self.head_)
        untrusted = sorted(set(sio.get_untrusted_types(data=head)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ValueError(f"cannot save the {type(self.head_).__name__} head safely: skops does not trust "
                             f"{untrusted}; use an estimator built from scikit-learn types, or add the types to "
                             "hierarchy.routing.adapters.TRUSTED_TYPES if you trust them")
        config = {**self._saved_settings(), "classes": list(self.classes), "backbone": self.backbone,
                  "weights": None if self.weights is None else str(self.weights), **self.describe()}
        save_bundle(self.model_, directory, config, overwrite=overwrite)
        atomic_write_bytes(Path(directory) / HEAD_FILE, head)
        return Path(directory)

    @classmethod
    def code_named(cls, directory: Path, config: dict[str, Any]) -> list[str]:
        """The head's types that neither skops nor ``TRUSTED_TYPES`` trusts (read from the file's schema)."""
        path = directory / HEAD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the scikit-learn head is missing")
        try:
            found = sio.get_untrusted_types(file=path)
        except Exception as err:  # a damaged zip or schema: skops raises many kinds
            raise ValueError(f"{path}: not a readable skops file: {err}") from err
        return sorted(set(found) - set(TRUSTED_TYPES))

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any], trusted: Sequence[str] = ()) -> SklearnClassifier:
        model, _ = load_bundle(directory)
        head = sio.load(directory / HEAD_FILE, trusted=[*TRUSTED_TYPES, *trusted])
        component = cls(head, config["backbone"], weights=config["weights"], **settings_from_saved(config))
        component.head_, component.model_ = head, model.eval()
        component.trained_on_ = config.get("data_hashes", {})
        return component
