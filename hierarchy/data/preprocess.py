"""The one preprocessing pipeline for training, evaluation and prediction, plus train-time augmentation.

Decode to greyscale -> crop to the head -> bound the longer side to ``base_side`` px (the image
that :class:`hierarchy.data.ImageDataset` can cache) -> [train: acquisition augmentation] ->
source-independent intensity standardisation to [0, 1] (robust percentiles of the whole image or
of the head, optional CLAHE) -> resize with aspect kept (antialiased bilinear, which cannot
overshoot; scaling first makes the result independent of linear contrast changes) -> zero-pad to a
square -> [train: geometric, then intensity augmentation] -> normalise. The augmentation stages
are built from ``PreprocessConfig.augment`` (see :mod:`hierarchy.data.augment`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy.ndimage import binary_erosion
from skimage.exposure import equalize_adapthist
from torchvision.transforms import v2

from hierarchy.data.augment import (
    AugmentConfig,
    acquisition_transform,
    augment_preset,
    geometric_transform,
    intensity_transform,
)
from hierarchy.data.image_io import ImageSource, load_image
from hierarchy.data.perturb import resize_longer_side
from hierarchy.provenance import json_sha256
from hierarchy.settings import Settings

# Bump when the pipeline's code changes what it outputs, so cached features and checkpoints are invalidated.
# 3: decoding applies a file's EXIF orientation (672 BRISC no_tumor files are stored rotated or upside down).
PIPELINE_VERSION = 3
INTENSITY_SCALINGS = ("image", "head")
# The cropped image is kept at up to this many times image_size (room for random zoom-in crops).
BASE_MARGIN = 1.15
_FOREGROUND_LEVEL = 0.1  # fraction of the robust intensity range above which a pixel is "head"
_PERCENTILES = (0.5, 99.5)
# Normalisation of the [0, 1] greyscale image: ImageNet's RGB mean and std averaged over the channels.
NORM_MEAN, NORM_STD = 0.449, 0.226
CLAHE_CLIP_LIMIT = 0.01  # scikit-image's equalize_adapthist default


@dataclass
class PreprocessConfig(Settings):
    """Settings of the preprocessing pipeline; stored in bundles and keyed into feature caches.

    ``intensity_scaling``: the 0.5th-99.5th percentiles that map to [0, 1] are taken over the whole
    (cropped) ``"image"`` or over the ``"head"`` only (:func:`head_mask`). ``clahe``: contrast-limited adaptive
    histogram equalisation (scikit-image) after scaling, with ``CLAHE_CLIP_LIMIT``. Both apply at
    training and evaluation time. ``augment``: the train-time augmentation, an
    :class:`~hierarchy.data.augment.AugmentConfig`, its dict, or a preset name (``"light"``, the
    default, ``"robust"`` or ``"none"``).
    """

    image_size: int = 224
    crop_foreground: bool = True
    intensity_scaling: str = "image"
    clahe: bool = False
    augment: AugmentConfig = field(default_factory=lambda: augment_preset("light"))
    # removed settings that nothing set, at the value the pipeline now always uses (see Settings.RETIRED)
    RETIRED: ClassVar[dict[str, Any]] = {"mean": NORM_MEAN, "std": NORM_STD, "clahe_clip_limit": CLAHE_CLIP_LIMIT}

    def __post_init__(self) -> None:
        if int(self.image_size) != self.image_size or self.image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        if self.intensity_scaling not in INTENSITY_SCALINGS:
            raise ValueError(f"intensity_scaling must be one of {INTENSITY_SCALINGS}, "
                             f"got {self.intensity_scaling!r}")
        if isinstance(self.augment, str):
            self.augment = augment_preset(self.augment)
        elif isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        elif not isinstance(self.augment, AugmentConfig):
            raise TypeError(f"augment must be an AugmentConfig, a dict or a preset name, "
                            f"got {type(self.augment).__name__}")

    @property
    def base_side(self) -> int:
        """Longest side of the decoded, cropped image the rest of the pipeline starts from."""
        return math.ceil(BASE_MARGIN * self.image_size)

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of the settings (augmentation included) and the pipeline version
        (``hierarchy.provenance.json_sha256``)."""
        return json_sha256({"pipeline_version": PIPELINE_VERSION, **self.to_dict()})[:16]

    def eval_fingerprint(self) -> str:
        """Like :meth:`fingerprint`, without the train-time augmentation, which evaluation images never see:
        caches of evaluation-pipeline features stay valid when only the augmentation changes."""
        return replace(self, augment=augment_preset("none")).fingerprint()


def _robust_range(array: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of a uint8 array (of its ``mask`` pixels when given), from
    its histogram (fast on large images)."""
    cdf = np.cumsum(np.bincount((array if mask is None else array[mask]).ravel(), minlength=256))
    lo, hi = np.searchsorted(cdf, np.array(_PERCENTILES) / 100.0 * cdf[-1])
    return float(lo), float(hi)


def _blur_radius(image: Image.Image) -> int:
    return max(1, min(image.size) // 128)


def foreground_mask(image: Image.Image) -> np.ndarray | None:
    """Boolean (H, W) mask of the head, or None when the image is flat.

    After a small box blur (which evens out background noise and JPEG ringing), a pixel is head
    when it exceeds 10 % of the robust intensity range.
    """
    array = np.asarray(image.filter(ImageFilter.BoxBlur(_blur_radius(image))))
    lo, hi = _robust_range(array)
    if hi <= lo:
        return None
    return array > lo + _FOREGROUND_LEVEL * (hi - lo)


def head_mask(image: Image.Image) -> np.ndarray | None:
    """:func:`foreground_mask` eroded past the blur radius, so that no background pixel at the
    head's edge remains (for statistics of head intensities)."""
    mask = foreground_mask(image)
    return None if mask is None else binary_erosion(mask, iterations=_blur_radius(image) + 1)


def foreground_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box (left, upper, right, lower) of the head, or None when no head is found.

    A row or column belongs to the head when more than 1 % of its pixels are in :func:`foreground_mask`.
    """
    mask = foreground_mask(image)
    if mask is None:
        return None
    rows = np.flatnonzero(mask.sum(axis=1) > 0.01 * mask.shape[1])
    cols = np.flatnonzero(mask.sum(axis=0) > 0.01 * mask.shape[0])
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_foreground(image: Image.Image) -> Image.Image:
    """Crop to :func:`foreground_box`, dropping padding bars and empty margins (no head: unchanged)."""
    box = foreground_box(image)
    return image if box is None else image.crop(box)


def scale_intensity(image: Image.Image, mask: np.ndarray | None = None) -> torch.Tensor:
    """(1, H, W) float tensor scaled to [0, 1] by the 0.5th and 99.5th intensity percentiles
    (of the ``mask`` pixels when given and not empty)."""
    array = np.asarray(image)
    lo, hi = _robust_range(array, mask if mask is not None and mask.any() else None)
    array = array.astype(np.float32)
    scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    return torch.from_numpy(np.clip(scaled, 0.0, 1.0))[None]


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    """The [0, 1] greyscale image of a normalised tensor (the inverse of the pipeline's last step), clamped."""
    return (x * NORM_STD + NORM_MEAN).clamp(0.0, 1.0)


def standardise_intensity(image: Image.Image, cfg: PreprocessConfig) -> torch.Tensor:
    """``image`` as a (1, H, W) [0, 1] tensor by ``cfg``'s intensity scaling, then CLAHE if set."""
    mask = head_mask(image) if cfg.intensity_scaling == "head" else None
    tensor = scale_intensity(image, mask)
    if cfg.clahe:
        equalised = equalize_adapthist(tensor[0].numpy(), clip_limit=CLAHE_CLIP_LIMIT)
        tensor = torch.from_numpy(equalised.astype(np.float32))[None]
    return tensor


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


class Preprocess:
    """The pipeline as a picklable callable: image source -> float32 tensor (1, S, S).

    It runs in two steps: :meth:`decode` (deterministic and cacheable: decode, perturb, crop, bound
    to ``cfg.base_side``) and :meth:`finish` (augmentation, standardisation, resize, normalise).
    ``acquisition`` acts on the PIL base image, ``geometric`` and ``intensity`` on the padded
    [0, 1] tensor.
    """

    def __init__(self, cfg: PreprocessConfig, *, acquisition: Callable | None = None,
                 geometric: Callable | None = None, intensity: Callable | None = None) -> None:
        self.cfg, self.acquisition, self.geometric, self.intensity = cfg, acquisition, geometric, intensity

    @property
    def random(self) -> bool:
        """Whether :meth:`finish` draws random numbers (any augmentation stage is set)."""
        return any(step is not None for step in (self.acquisition, self.geometric, self.intensity))

    def decode(self, source: ImageSource,
               perturb: Callable[[Image.Image], Image.Image] | None = None) -> Image.Image:
        """Greyscale image of ``source`` (JPEGs decoded at the smallest DCT scale covering
        ``image_size``), after ``perturb`` when given (robustness tests), cropped to the head and
        downscaled so its longer side is at most ``cfg.base_side``."""
        image = load_image(source, target_size=self.cfg.image_size)
        if perturb is not None:
            image = perturb(image)
        if self.cfg.crop_foreground:
            image = crop_to_foreground(image)
        if max(image.size) > self.cfg.base_side:
            image = resize_longer_side(image, self.cfg.base_side)
        return image

    def finish(self, image: Image.Image, *, seed: int | None = None) -> torch.Tensor:
        """The rest of the pipeline on a :meth:`decode` output; ``seed`` fixes the augmentation
        (without it, torch's global RNG is used)."""
        return self._seeded(image, None, seed)

    def finish_with_mask(self, image: Image.Image, mask: np.ndarray, *,
                         seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`finish` plus ``mask`` (bool, on ``image``'s grid) moved through the same resizing, padding
        and geometric augmentation: ``(x, mask)``, the mask a (S, S) float tensor in [0, 1]. ``x`` is what
        :meth:`finish` gives with the same ``seed``."""
        return self._seeded(image, mask, seed)

    def _seeded(self, image: Image.Image, mask: np.ndarray | None, seed: int | None) -> Any:
        if seed is None or not self.random:
            return self._finish(image, mask)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._finish(image, mask)

    def _finish(self, image: Image.Image, mask: np.ndarray | None) -> Any:
        if self.acquisition is not None:
            image = self.acquisition(image)
        tensor = resize_keep_aspect(standardise_intensity(image, self.cfg), self.cfg.image_size)
        if mask is not None:  # a second channel, so that geometric augmentation moves it with the image
            plane = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
            tensor = torch.cat([tensor, v2.functional.resize(plane, list(tensor.shape[-2:]), antialias=True)])
        tensor = pad_to_square(tensor, self.cfg.image_size)
        if self.geometric is not None:
            tensor = self.geometric(tensor)
        tensor, moved = tensor[:1], tensor[1:]
        if self.intensity is not None:
            tensor = self.intensity(tensor).clamp(0.0, 1.0)
        x = ((tensor - NORM_MEAN) / NORM_STD).float()
        return x if mask is None else (x, moved[0].clamp(0.0, 1.0))

    def __call__(self, source: ImageSource, perturb: Callable[[Image.Image], Image.Image] | None = None,
                 *, seed: int | None = None) -> torch.Tensor:
        """:meth:`decode` then :meth:`finish`."""
        return self.finish(self.decode(source, perturb), seed=seed)


def eval_transform(cfg: PreprocessConfig) -> Preprocess:
    """Deterministic pipeline for evaluation and prediction."""
    return Preprocess(cfg)


def train_transform(cfg: PreprocessConfig, plane: str | None = None,
                    augment: AugmentConfig | None = None) -> Preprocess:
    """Pipeline with ``augment`` (default ``cfg.augment``); horizontal flips only for axial and
    coronal slices, the dihedral group for every plane when ``augment.dihedral_p`` is set."""
    augment = cfg.augment if augment is None else augment
    return Preprocess(cfg, acquisition=acquisition_transform(augment),
                      geometric=geometric_transform(augment, cfg.image_size, plane),
                      intensity=intensity_transform(augment))
