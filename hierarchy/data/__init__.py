"""Indexing datasets, decoding, preprocessing, augmentation, perturbations, splits, audit, synthetic data."""

from __future__ import annotations

import importlib

from hierarchy.data.audit import AuditReport, audit
from hierarchy.data.image_io import ImageReadError, load_image
from hierarchy.data.index import detect_layout, index_dataset
from hierarchy.data.perturb import PERTURBATIONS
from hierarchy.data.splits import duplicate_groups, group_kfold, train_val_split, with_phash
from hierarchy.data.synthetic import make_synthetic_dataset

__all__ = [
    "PERTURBATIONS",
    "AuditReport",
    "ImageDataset",
    "ImageReadError",
    "PreprocessConfig",
    "audit",
    "detect_layout",
    "duplicate_groups",
    "eval_transform",
    "group_kfold",
    "index_dataset",
    "load_image",
    "make_loader",
    "make_synthetic_dataset",
    "train_transform",
    "train_val_split",
    "with_phash",
]

# These pull in torch; they are imported when first asked for, so indexing and auditing work without it.
_TORCH_BOUND = {"ImageDataset": "dataset", "make_loader": "dataset", "PreprocessConfig": "preprocess",
                "eval_transform": "preprocess", "train_transform": "preprocess"}


def __getattr__(name: str):
    if name in _TORCH_BOUND:
        return getattr(importlib.import_module(f"hierarchy.data.{_TORCH_BOUND[name]}"), name)
    raise AttributeError(f"module 'hierarchy.data' has no attribute {name!r}")
