"""Indexing datasets, decoding, preprocessing, augmentation, perturbations, splits, audit, synthetic data."""

from __future__ import annotations

from hierarchy.data.image_io import ImageReadError, load_image
from hierarchy.data.index import detect_layout, index_dataset
from hierarchy.data.synthetic import make_synthetic_dataset

__all__ = ["ImageReadError", "detect_layout", "index_dataset", "load_image", "make_synthetic_dataset"]
