"""The one preprocessing pipeline for training, evaluation and prediction, plus train-time augmentation.

Decode to greyscale -> crop to the head -> robust per-image intensity scaling to [0, 1] ->
resize with aspect kept (antialiased bilinear, which cannot overshoot; scaling first makes
the result independent of linear contrast changes) -> zero-pad to a square -> normalise. Training inserts
re-encoding augmentation before the crop, geometric augmentation after the padding and
photometric jitter before the normalisation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms import v2

from hierarchy.data.image_io import ImageSource, load_image
from hierarchy.data.perturb import jpeg_reencode, resize_longer_side
from hierarchy.settings import Settings

# Bump when the pipeline's code changes what it outputs, so cached features are invalidated.
PIPELINE_VERSION = 1
# Planes whose left-right mirror image is still a plausible slice of the same plane.
FLIP_PLANES = frozenset({"axial", "coronal"})
_FOREGROUND_LEVEL = 0.1  # fraction of the robust intensity range above which a pixel is "head"
_PERCENTILES = (0.5, 99.5)


@dataclass
class PreprocessConfig(Settings):
    """Settings of the preprocessing pipeline; stored in bundles and keyed into feature caches."""

    image_size: int = 224
    crop_foreground: bool = True
    mean: float = 0.449
    std: float = 0.226

    def __post_init__(self) -> None:
        if int(self.image_size) != self.image_size or self.image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std!r}")



    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of the settings and the pipeline version."""
        payload = json.dumps({"pipeline_version": PIPELINE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _robust_range(array: np.ndarray) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of a uint8 array, from its histogram (fast on large images)."""
    cdf = np.cumsum(np.bincount(array.ravel(), minlength=256))
    lo, hi = np.searchsorted(cdf, np.array(_PERCENTILES) / 100.0 * cdf[-1])
    return float(lo), float(hi)


def foreground_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box (left, upper, right, lower) of the head, or None when no head is found.

    After a small box blur (which evens out background noise and JPEG ringing), a row or column
    belongs to the head when more than 1 % of its pixels exceed 10 % of the robust intensity range.
    """
    array = np.asarray(image.filter(ImageFilter.BoxBlur(max(1, min(image.size) // 128))))
    lo, hi = _robust_range(array)
    if hi <= lo:
        return None
    mask = array > lo + _FOREGROUND_LEVEL * (hi - lo)
    rows = np.flatnonzero(mask.sum(axis=1) > 0.01 * array.shape[1])
    cols = np.flatnonzero(mask.sum(axis=0) > 0.01 * array.shape[0])
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_foreground(image: Image.Image) -> Image.Image:
    """Crop to :func:`foreground_box`, dropping padding bars and empty margins (no head: unchanged)."""
    box = foreground_box(image)
    return image if box is None else image.crop(box)


def scale_intensity(image: Image.Image) -> torch.Tensor:
    """(1, H, W) float tensor scaled to [0, 1] by the 0.5th and 99.5th intensity percentiles."""
    array = np.asarray(image)
    lo, hi = _robust_range(array)
    array = array.astype(np.float32)
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    return torch.from_numpy(np.clip(scaled, 0.0, 1.0))[None]


def resize_keep_aspect(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so the longer side is ``size`` (antialiased bilinear)."""
    _, h, w = tensor.shape
    scale = size / max(h, w)
    shape = (min(size, max(1, round(h * scale))), min(size, max(1, round(w * scale))))
    return v2.functional.resize(tensor, list(shape), antialias=True)


def pad_to_square(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``tensor`` (C, h, w) with h, w <= size on a zero (C, size, size) canvas."""
    channels, h, w = tensor.shape
    top, left = (size - h) // 2, (size - w) // 2
    canvas = torch.zeros((channels, size, size), dtype=tensor.dtype)
    canvas[:, top:top + h, left:left + w] = tensor
    return canvas


class RandomJPEG:
    """Re-encode as JPEG at a quality drawn uniformly from [low, high] (torch RNG)."""

    def __init__(self, low: int = 60, high: int = 95) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        return jpeg_reencode(image, int(torch.randint(self.low, self.high + 1, ()).item()))


class RandomDownUp:
    """Downscale so the longer side is drawn from [low, high] px, then back to the original size."""

    def __init__(self, low: int = 160, high: int = 256) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        side = int(torch.randint(self.low, self.high + 1, ()).item())
        if side >= max(image.size):
            return image
        return resize_longer_side(image, side).resize(image.size, Image.Resampling.BICUBIC)


class RandomGamma:
    """Raise [0, 1] intensities to a gamma drawn log-uniformly from [low, high]."""

    def __init__(self, low: float = 0.8, high: float = 1.25) -> None:
        self.low, self.high = np.log(low), np.log(high)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        gamma = float(np.exp(self.low + (self.high - self.low) * torch.rand(()).item()))
        return tensor.clamp(0.0, 1.0) ** gamma


class Preprocess:
    """The pipeline as a picklable callable: image source -> float32 tensor (1, S, S)."""

    def __init__(self, cfg: PreprocessConfig, *, reencode: Callable | None = None,
                 geometric: Callable | None = None, photometric: Callable | None = None) -> None:
        self.cfg, self.reencode, self.geometric, self.photometric = cfg, reencode, geometric, photometric

    def __call__(self, source: ImageSource,
                 perturb: Callable[[Image.Image], Image.Image] | None = None) -> torch.Tensor:
        """Decode ``source`` (JPEGs at the smallest DCT scale covering ``image_size``), apply
        ``perturb`` to the decoded image when given (robustness tests), then the pipeline."""
        image = load_image(source, target_size=self.cfg.image_size)
        if perturb is not None:
            image = perturb(image)
        if self.reencode is not None:
            image = self.reencode(image)
        if self.cfg.crop_foreground:
            image = crop_to_foreground(image)
        tensor = resize_keep_aspect(scale_intensity(image), self.cfg.image_size)
        tensor = pad_to_square(tensor, self.cfg.image_size)
        if self.geometric is not None:
            tensor = self.geometric(tensor)
        if self.photometric is not None:
            tensor = self.photometric(tensor).clamp(0.0, 1.0)
        return ((tensor - self.cfg.mean) / self.cfg.std).float()


def eval_transform(cfg: PreprocessConfig) -> Preprocess:
    """Deterministic pipeline for evaluation and prediction."""
    return Preprocess(cfg)


def train_transform(cfg: PreprocessConfig, plane: str | None = None) -> Preprocess:
    """Pipeline with augmentation; horizontal flips only for axial and coronal slices.

    Randomness comes from torch's RNG (seeded per DataLoader worker).
    """
    size = cfg.image_size
    geometric = [v2.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.9, 1.1), antialias=True),
                 v2.RandomRotation(10, fill=0.0)]
    if plane in FLIP_PLANES:
        geometric.append(v2.RandomHorizontalFlip())
    return Preprocess(
        cfg,
        reencode=v2.Compose([v2.RandomApply([RandomDownUp(160, 256)], p=0.3),
                             v2.RandomApply([RandomJPEG(60, 95)], p=0.5)]),
        geometric=v2.Compose(geometric),
        photometric=v2.Compose([v2.ColorJitter(brightness=0.1, contrast=0.1), RandomGamma(0.8, 1.25)]),
    )
