"""Frozen-feature mode: pre-logit features of every image, computed once and cached on disk by key; and the
same features pooled over the positions outside each image's tumour mask (:func:`outside_mask_features`)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hierarchy.fileio import atomic_write, read_json, write_json
from hierarchy.progress import progress_bar
from hierarchy.provenance import json_sha256, ordered_data_fingerprint
from hierarchy.training.losses import masks_on_grid, with_tumour
from hierarchy.training.runtime import Runtime, pre_logit_features, resolve_runtime

logger = logging.getLogger(__name__)

# Part of every key, so that a change in what "features" means invalidates old caches.
_EXTRACTOR = "forward_head(forward_features(x), pre_logits=True)/float32/v1"
_OUTSIDE_EXTRACTOR = "forward_head(mean of forward_features(x) outside the mask, pre_logits=True)/float32/v1"


def feature_cache_key(**parts: Any) -> str:
    """A sha256 (hex) of the parts' canonical JSON (sorted keys); parts must be JSON values."""
    try:
        return json_sha256(parts)
    except (TypeError, ValueError) as err:
        raise TypeError(f"feature cache key parts must be plain JSON values (str, number, list, dict): {err}") from err


def backbone_fingerprint(model: nn.Module) -> str:
    """A sha256 over the model's parameters and buffers, classifier excluded (it does not change features)."""
    classifier = {id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}
    digest = hashlib.sha256()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in classifier:
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _compute(model: nn.Module, dataset: Dataset, batch_size: int, num_workers: int,
             progress: bool | None, outside: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features of every item (``outside``: pooled outside its mask, see :func:`outside_mask_features`), and
    each item's target (its second element; -1 for items without one)."""
    runtime = resolve_runtime()  # CUDA when available: the model moves there, as in training
    # Outside inference mode: parameters re-laid out inside it would be inference tensors, and no gradient
    # (Integrated Gradients, say) could flow through the model afterwards.
    runtime.prepare(model)
    with torch.inference_mode():
        return _features(model, dataset, batch_size, num_workers, progress, runtime, outside)


def _outside_pooled(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The head's pre-logit layers applied to the feature map's mean over the positions outside each mask (each
    position weighted by its share outside); NaN rows where the mask is unknown or empty."""
    with runtime.autocast():
        feature_map = model.forward_features(runtime.batch(x)).float()
    known, grid = masks_on_grid(masks.to(feature_map.device), feature_map.shape[-2:])
    outside = (1.0 - grid)[:, None]
    mean = (feature_map * outside).sum((2, 3)) / outside.sum((2, 3)).clamp_min(1e-6)
    with torch.autocast(feature_map.device.type, enabled=False):
        pooled = model.forward_head(mean[:, :, None, None], pre_logits=True).float()
    pooled[~with_tumour(known, grid)] = float("nan")
    return pooled


def _features(model: nn.Module, dataset: Dataset, batch_size: int, num_workers: int, progress: bool | None,
              runtime: Runtime, outside: bool = False) -> tuple[np.ndarray, np.ndarray]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=runtime.device.type == "cuda")
    was_training = model.training
    model.eval()
    chunks, targets = [], []
    try:
        for x, *rest in progress_bar(loader, enabled=progress, desc="features", leave=False):
            chunks.append((_outside_pooled(model, x, rest[1], runtime) if outside
                           else pre_logit_features(model, x, runtime)).cpu())
            targets.append(torch.as_tensor(rest[0]) if rest else torch.full((len(x),), -1))
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy(), torch.cat(targets).numpy().astype(np.int64)


def extract_features(model: nn.Module, dataset: Dataset, *, cache_dir: str | Path, key: dict[str, Any],
                     batch_size: int = 64, num_workers: int = 0, progress: bool | None = None,
                     with_targets: bool = False,
                     outside_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pre-logit features ``(len(dataset), model.num_features)`` in dataset order, cached under ``cache_dir``.

    ``key`` must describe everything the features depend on besides the weights: backbone name, weights
    origin, preprocessing fingerprint, data fingerprint (image sha256s), perturbation or view. The
    backbone's actual weights are hashed into the key as well, so changed weights never hit a stale cache.
    The cached array is in dataset order, so the order of the rows is part of the key too: for a dataset
    over a frame (``ImageDataset``) it is taken from ``dataset.frame``; for any other dataset ``key`` must
    identify the items in order. A cache file is ``features-<sha256>.npy`` with a JSON sidecar describing it.
    ``progress``: show a progress bar (None: only when standard error is a terminal). ``with_targets``: also
    return each item's target as the dataset gave it (cached in the sidecar), for datasets whose augmentation
    may change an item's label (counterfactual views). ``outside_mask``: :func:`outside_mask_features`.
    """
    cache_dir = Path(cache_dir)
    frame = getattr(dataset, "frame", None)
    rows = ordered_data_fingerprint(frame) if isinstance(frame, pd.DataFrame) else None
    runtime = resolve_runtime().describe()  # bf16 features are not fp32 features
    extractor = _OUTSIDE_EXTRACTOR if outside_mask else _EXTRACTOR
    digest = feature_cache_key(extractor=extractor, backbone_sha256=backbone_fingerprint(model), key=key,
                               rows_sha256=rows, runtime=runtime)
    array_path = cache_dir / f"features-{digest}.npy"
    sidecar_path = cache_dir / f"features-{digest}.json"
    if sidecar_path.is_file():  # written last, so its presence means the array is complete
        features = np.load(array_path, allow_pickle=False)
        if features.shape[0] != len(dataset):
            raise ValueError(f"cached features {array_path} hold {features.shape[0]} rows but the dataset has "
                             f"{len(dataset)} items; the key {key} does not describe the data")
        cached_targets = read_json(sidecar_path).get("targets")
        if not with_targets or cached_targets is not None:
            logger.info("feature cache hit: %s", array_path)
            return (features, np.asarray(cached_targets, dtype=np.int64)) if with_targets else features
    logger.info("feature cache miss: computing %d feature vectors into %s", len(dataset), array_path)
    features, targets = _compute(model, dataset, batch_size, num_workers, progress, outside_mask)
    atomic_write(array_path, lambda handle: np.save(handle, features, allow_pickle=False))
    sidecar = {"key": key, "rows_sha256": rows, "runtime": runtime, "extractor": extractor, "shape": list(features.shape), "dtype": str(features.dtype),
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "targets": targets.tolist()}
    write_json(sidecar_path, sidecar)
    return (features, targets) if with_targets else features


def outside_mask_features(model: nn.Module, dataset: Dataset, *, cache_dir: str | Path, key: dict[str, Any],
                          batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """Pre-logit features of each item as if its feature map were its mean over the positions outside its
    tumour mask (each position weighted by its share outside the mask, the mask area-averaged to the grid),
    cached like :func:`extract_features`; NaN rows for items whose mask is unknown or empty (no-tumour images).

    ``dataset`` yields ``(x, target, mask)`` items (``ImageDataset(..., return_masks=True)``). For a head that
    average-pools then applies a linear layer (timm's EfficientNets), the head on these features is the mean of
    its per-position evidence outside the tumour.
    """
    return extract_features(model, dataset, cache_dir=cache_dir, key=key, batch_size=batch_size,
                            progress=progress, outside_mask=True)
