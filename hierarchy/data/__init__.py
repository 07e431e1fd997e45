"""Indexing datasets, decoding, preprocessing, augmentation, test-time views, perturbations, splits, audit,
synthetic data."""

from __future__ import annotations

import importlib

from hierarchy.data.audit import AuditReport, audit
from hierarchy.data.image_io import ImageReadError, load_image
from hierarchy.data.index import detect_layout, index_dataset, source_name
from hierarchy.data.perturb import PERTURBATIONS
from hierarchy.data.splits import (
    cv_folds,
    duplicate_groups,
    group_kfold,
    holdout_source,
    train_val_split,
    with_phash,
)
from hierarchy.data.synthetic import make_synthetic_dataset

__all__ = [
    "AUGMENT_PRESETS",
    "DEFAULT_TTA",
    "PERTURBATIONS",
    "TTA_VIEWS",
    "AugmentConfig",
    "AuditReport",
    "ImageDataset",
    "ImageReadError",
    "PreprocessConfig",
    "audit",
    "augment_preset",
    "cv_folds",
    "detect_layout",
    "duplicate_groups",
    "eval_transform",
    "group_kfold",
    "holdout_source",
    "index_dataset",
    "load_image",
    "make_loader",
    "make_synthetic_dataset",
    "source_name",
    "train_transform",
    "train_val_split",
    "tta_views",
    "with_phash",
]

# These pull in torch; they are imported when first asked for, so indexing and auditing work without it.
_TORCH_BOUND = {"ImageDataset": "dataset", "make_loader": "dataset", "PreprocessConfig": "preprocess",
                "eval_transform": "preprocess", "train_transform": "preprocess", "AUGMENT_PRESETS": "augment",
                "AugmentConfig": "augment", "augment_preset": "augment", "DEFAULT_TTA": "tta",
                "TTA_VIEWS": "tta", "tta_views": "tta"}


def __getattr__(name: str):
    if name in _TORCH_BOUND:
        return getattr(importlib.import_module(f"hierarchy.data.{_TORCH_BOUND[name]}"), name)
    raise AttributeError(f"module 'hierarchy.data' has no attribute {name!r}")
