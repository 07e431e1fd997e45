"""Indexing datasets, decoding, preprocessing, augmentation, perturbations, splits, audit, synthetic data."""

from __future__ import annotations

from hierarchy.data.synthetic import make_synthetic_dataset

__all__ = ["make_synthetic_dataset"]
