"""How a Router's training data is prepared and its components are fitted.

Components are fitted in order (flat first, so experts and shared heads can start from it). A component
that trains on frozen features (``component.frozen``) is fitted on features extracted once per distinct
trunk; every other component trains itself (``component.fit``). The out-of-distribution scorer is fitted
last, on one trunk's features of the training rows (reusing the frozen-feature extraction when it has one).

Under ``torchrun`` every rank fits (the training calls need all ranks), but feature extraction is not
distributed: rank 0 extracts into the cache under ``work``, every other rank extracts the same features into
a temporary cache of its own, so only rank 0 writes files and no rank waits for another.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from hierarchy.data import index_dataset, train_val_split
from hierarchy.fileio import sha256_file
from hierarchy.routing.components import Component, ImageClassifier, refuse_test_rows
from hierarchy.routing.inputs import batches, decode_workers, resolve_inputs
from hierarchy.routing.ood import FeatureOODScorer
from hierarchy.training import backbone_fingerprint
from hierarchy.training.distributed import is_main_process

logger = logging.getLogger(__name__)

OOD_FOLDS = 5


def training_frame(data: pd.DataFrame | str | Path, what: str) -> pd.DataFrame:
    """A frame is used as given (test rows refused); a root path is indexed and its non-test rows kept."""
    if isinstance(data, (str, Path)):
        frame = index_dataset(data)
        dropped = int((frame["split"] == "test").sum())
        if dropped:
            logger.info("%s: leaving out the %d test-split images of %s", what, dropped, data)
        return frame[frame["split"] != "test"].reset_index(drop=True)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{what} must be a dataset-index DataFrame or a dataset root, got {type(data).__name__}")
    missing = [c for c in ("path", "label") if c not in data.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it needs path, label and the parent column")
    refuse_test_rows(data, what)
    return data.reset_index(drop=True)


def split_validation(frame: pd.DataFrame, *, parent: str, val_fraction: float,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``hierarchy.data.train_val_split`` (stratified by label x parent group, duplicates kept together) for
    any parent column; a frame without ``sha256`` or ``split`` columns gets them (files hashed)."""
    stand_in = frame.reset_index(drop=True)
    if parent != "plane":
        stand_in = stand_in.assign(plane=stand_in[parent])
    if "sha256" not in stand_in.columns:
        stand_in = stand_in.assign(sha256=[sha256_file(p) for p in stand_in["path"]])
    if "split" not in stand_in.columns:
        stand_in = stand_in.assign(split="train")
    train, val = train_val_split(stand_in, val_fraction=val_fraction, seed=seed)
    original = frame.reset_index(drop=True)
    return original.loc[train.index].reset_index(drop=True), original.loc[val.index].reset_index(drop=True)


def fit_components(components: Mapping[str, Component], train: pd.DataFrame, val: pd.DataFrame,
                   work: Path | None, *, resume: bool = False, feature_views: int = 1,
                   head_neutral_weight: float = 0.0, expert_anchor_weight: float = 0.0,
                   anchor: Component | None = None) -> dict[str, np.ndarray]:
    """Fit every component in order; frozen ones share one feature extraction per trunk.

    Frozen components see the training rows' features clean and in ``feature_views - 1`` augmented views (with
    counterfactual augmentation, each view's rows carry the labels its images were given: see
    ``ImageClassifier.extract_view``).
    With ``head_neutral_weight`` > 0, every frozen tumour head also gets its training rows' features pooled
    outside their tumour masks (clean view), on which it must favour no class (``fit_linear_head``'s
    ``neutral``): the tissue around a tumour cannot speak for the class.
    With ``expert_anchor_weight`` > 0, every frozen tumour head other than ``"flat"`` is pulled towards the flat
    model's head (``fit_linear_head``'s ``prior``): ``components["flat"]``, fitted first, or the fitted
    ``anchor`` when ``components`` holds no flat model; on the same trunk.
    ``work`` keeps per-component training logs (``work/<name>``) and the feature cache (``work/features``,
    rank 0's only: other ``torchrun`` ranks cache in a temporary folder).
    Returns the clean training-row features of every trunk extracted, by ``backbone_fingerprint``, so
    later steps (the OOD scorer) need no second pass.
    """
    if feature_views < 1:
        raise ValueError(f"feature_views must be >= 1, got {feature_views}")
    extracted: dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]] = {}
    outside: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="hierarchy-features-") as tmp:
        cache_dir = (work if work is not None and is_main_process() else Path(tmp)) / "features"
        for name, component in components.items():
            if not component.frozen:
                logger.info("training the %s model (%r)", name, component)
                component.fit(train, val, out_dir=None if work is None else work / name, resume=resume)
                continue
            model = component.build_model()
            trunk = backbone_fingerprint(model)
            if trunk not in extracted:
                logger.info("extracting %s features for %d images", component.backbone, len(train) + len(val))
                views = [component.extract_view(model, train, cache_dir, view=v) for v in range(feature_views)]
                train_views = pd.concat([train if labels is None else train.assign(label=labels)
                                         for _, labels in views], ignore_index=True)
                extracted[trunk] = (np.concatenate([features for features, _ in views]),
                                    component.extract(model, val, cache_dir), train_views)
            train_features, val_features, train_views = extracted[trunk]
            neutral = None
            if head_neutral_weight > 0 and component.task_.target == "label":
                if trunk not in outside:
                    logger.info("pooling %s features outside the tumour masks of %d images", component.backbone,
                                len(train))
                    outside[trunk] = component.extract_outside(model, train, cache_dir)
                rows = outside[trunk][component.task_.row_mask(train)]
                neutral = rows[np.isfinite(rows).all(1)]
            prior = (_flat_head(anchor or components.get("flat"), trunk, name)
                     if expert_anchor_weight > 0 and name != "flat" and component.task_.target == "label" else None)
            logger.info("fitting the %s head (%r)", name, component)
            component.fit_features(model, train_views, val, train_features, val_features, neutral=neutral,
                                   neutral_weight=head_neutral_weight if neutral is not None else 0.0,
                                   prior=prior, prior_weight=expert_anchor_weight if prior is not None else 0.0)
    return {trunk: train_features[:len(train)] for trunk, (train_features, _, _) in extracted.items()}


def _flat_head(flat: Component | None, trunk: str, name: str) -> nn.Linear:
    """The fitted flat model's head, for the expert ``name`` on ``trunk`` to be pulled towards."""
    model = getattr(flat, "model_", None) if isinstance(flat, ImageClassifier) else None
    if model is None or backbone_fingerprint(model) != trunk:
        raise ValueError(f"expert_anchor_weight > 0 pulls the {name!r} expert towards the flat model's head, which "
                         "needs a flat model fitted before it on the same trunk (mode 'joint' or 'shared', or "
                         "'frozen' with one backbone); this Router has none")
    return model.get_classifier()


def choose_ood_trunk(trunks: Mapping[str, str | None]) -> str | None:
    """Whose trunk the OOD score reads, given each component's ``trunk_key()``: ``"shared"`` when every
    component sits on one trunk, else ``"flat"`` when the flat model has a trunk, else ``"plane"`` when the
    parent-group classifier has one; None when neither has."""
    keys = set(trunks.values())
    if len(keys) == 1 and None not in keys:
        return "shared"
    return next((name for name in ("flat", "plane") if trunks.get(name) is not None), None)


def ood_component(ood_trunk: str) -> str:
    """The component whose ``features_from_batch`` gives the features of ``choose_ood_trunk``'s answer."""
    return "plane" if ood_trunk == "shared" else ood_trunk


def feature_array(features: torch.Tensor) -> np.ndarray:
    """Trunk features as a float64 array, whatever dtype and device the trunk ran in."""
    return features.float().cpu().numpy().astype(np.float64)


def fit_ood_scorer(component: Component, train: pd.DataFrame, extracted: Mapping[str, np.ndarray], *,
                   batch_size: int = 32) -> FeatureOODScorer:
    """A ``FeatureOODScorer`` fitted on ``component``'s trunk features of the training rows (and their labels),
    its reference scores out of fold (``OOD_FOLDS``) so that ``threshold(q)`` holds for fresh images.

    ``extracted`` holds features ``fit_components`` already computed, by trunk; a trunk not among them is
    run once over ``train`` (the prediction path: the same decoding as ``Router.predict_routes``).
    """
    features = extracted.get(component.trunk_key())
    if features is None:
        logger.info("extracting trunk features of %d training images for the OOD scorer", len(train))
        features = np.concatenate([feature_array(component.features_from_batch(x)) for _, x in
                                   batches(resolve_inputs(train), component.preprocess_, batch_size,
                                           num_workers=decode_workers(component.train_config_.num_workers))])
    return FeatureOODScorer(cv=OOD_FOLDS).fit(features, train["label"].astype(str).to_numpy())
