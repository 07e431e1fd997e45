"""Indexing datasets, decoding, preprocessing, augmentation, test-time views, perturbations, splits, audit,
synthetic data."""

from __future__ import annotations

from hierarchy.data.audit import AuditReport, audit
from hierarchy.data.augment import AUGMENT_PRESETS, AugmentConfig, augment_preset
from hierarchy.data.dataset import ImageDataset, make_loader
from hierarchy.data.image_io import ImageReadError, load_image
from hierarchy.data.index import detect_layout, index_dataset, source_name
from hierarchy.data.perturb import PERTURBATIONS
from hierarchy.data.preprocess import PreprocessConfig, eval_transform, train_transform
from hierarchy.data.splits import (
    duplicate_groups,
    group_kfold,
    holdout_source,
    train_val_split,
    with_phash,
)
from hierarchy.data.synthetic import make_synthetic_dataset
from hierarchy.data.tta import DEFAULT_TTA, TTA_VIEWS, tta_views

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
