"""Deterministic acquisition-style perturbations of a decoded image, applied before preprocessing.

They mimic what happens to a scan between sources (re-compression, resampling, display
gamma, contrast) and are used to test how robust a model's predictions are.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import numpy as np
from PIL import Image, ImageEnhance

from hierarchy.data.image_io import load_image


def jpeg_reencode(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as a greyscale JPEG at ``quality`` and decode again."""
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def resize_longer_side(image: Image.Image, longer_side: int) -> Image.Image:
    """Resize (antialiased) so the longer side is ``longer_side`` px, keeping the aspect ratio."""
    image = load_image(image)
    scale = longer_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)


def adjust_gamma(image: Image.Image, gamma: float) -> Image.Image:
    """Apply ``out = 255 * (in / 255) ** gamma`` through a lookup table."""
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return load_image(image).point(table.tolist())


def adjust_contrast(image: Image.Image, factor: float) -> Image.Image:
    """Scale contrast around the mean grey level by ``factor`` (below 1 flattens)."""
    return ImageEnhance.Contrast(load_image(image)).enhance(factor)


PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q75": partial(jpeg_reencode, quality=75),
    "downscale_224": partial(resize_longer_side, longer_side=224),
    "gamma_0.8": partial(adjust_gamma, gamma=0.8),
    "gamma_1.25": partial(adjust_gamma, gamma=1.25),
    "contrast_0.8": partial(adjust_contrast, factor=0.8),
}


def get_perturbation(name: str) -> Callable[[Image.Image], Image.Image]:
    """The perturbation called ``name``; a clear error lists the known ones."""
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise ValueError(f"unknown perturbation {name!r}; expected one of {sorted(PERTURBATIONS)}") from None
