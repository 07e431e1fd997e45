"""Class targets of a dataset, the inverse-frequency class weights built from them, tumour masks brought to a
feature map's grid, and the neutrality of logits (how far they are from favouring no class)."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

logger = logging.getLogger(__name__)


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The integer class target of every item, read without decoding images where the dataset allows.

    Uses ``TensorDataset``'s last tensor, a ``Subset``'s parent, or a ``targets`` attribute; otherwise
    reads every item once.
    """
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[-1].cpu().numpy().astype(np.int64)
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    logger.info("%s has no 'targets' attribute; reading all %d items to count classes",
                type(dataset).__name__, len(dataset))
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def class_balanced_weights(targets: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (num_classes * n_c)``: a class-balanced sample has weight 1 per item."""
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        raise ValueError("cannot compute class weights from an empty target array")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"targets range over [{targets.min()}, {targets.max()}], outside [0, {num_classes})")
    counts = np.bincount(targets, minlength=num_classes)
    missing = np.flatnonzero(counts == 0).tolist()
    if missing:
        raise ValueError(f"classes {missing} have no examples; class-balanced weights are undefined")
    return torch.as_tensor(len(targets) / (num_classes * counts), dtype=torch.float32)


def masks_on_grid(masks: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, grid): which (n, S, S) masks are known (-1: unknown) and every mask area-averaged to ``shape``
    (unknown ones as empty)."""
    known = masks.flatten(1).amin(1) >= 0
    return known, F.adaptive_avg_pool2d(masks[:, None].float().clamp_min(0.0), shape)[:, 0]


def with_tumour(known: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Which items of :func:`masks_on_grid`'s output have a known, non-empty tumour mask."""
    return known & (grid.flatten(1).amax(1) > 0)


def neutrality(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """How far logits are from favouring no class: the cross-entropy of their softmax over ``dim`` against the
    uniform distribution minus its minimum ``log(classes)`` (0 when every class has the same logit), per entry."""
    return -F.log_softmax(logits, dim=dim).mean(dim) - math.log(logits.shape[dim])
