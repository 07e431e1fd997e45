"""Indexing datasets, decoding, preprocessing, augmentation, perturbations, splits, audit, synthetic data."""

from __future__ import annotations

from hierarchy.data.audit import AuditReport, audit
from hierarchy.data.dataset import ImageDataset, make_loader
from hierarchy.data.image_io import ImageReadError, load_image
from hierarchy.data.index import detect_layout, index_dataset
from hierarchy.data.perturb import PERTURBATIONS
from hierarchy.data.preprocess import PreprocessConfig, eval_transform, train_transform
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
