"""Tumour masks: reading them, and carrying them onto the grid of a preprocessed image.

A mask shares the pixel grid of its image file at full resolution. Preprocessing decodes JPEGs at a reduced
DCT scale, crops to the head and bounds the longer side (:meth:`hierarchy.data.preprocess.Preprocess.decode`);
:func:`mask_on_decoded` puts a mask through the same crop and scale, so that training can move it with the
image through augmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hierarchy.data.image_io import ImageSource, load_image, open_image_file
from hierarchy.data.preprocess import foreground_box

Box = tuple[int, int, int, int]


def binarise_mask(mask: np.ndarray | Image.Image) -> np.ndarray:
    """A 2-D tumour mask as bool: 8-bit masks are tumour from 128 up (BRISC masks carry faint
    non-zero edge values), 0/1 and float masks from above half their range, RGB(A) by channel 0.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D array, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer) and mask.max(initial=0) > 1:
        return mask >= 128
    return mask > 0.5


def read_mask(source: str | Path | np.ndarray | Image.Image) -> np.ndarray:
    """A mask file (through the guarded decoder, errors naming it), array or image as a bool array."""
    if isinstance(source, (str, Path)):
        return binarise_mask(np.asarray(open_image_file(source)))
    return binarise_mask(source)


def scale_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    """``box`` on a ``source``-sized (width, height) grid as a box on the ``target``-sized grid covering the same area."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    left, upper, right, lower = box
    return round(left * sx), round(upper * sy), round(right * sx), round(lower * sy)


def full_size(image: ImageSource, decoded: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image``'s full-resolution grid: the file's own size for a path, else ``decoded``'s."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            return opened.size
    return decoded.size


def mask_in_head_crop(mask: str | Path | np.ndarray | Image.Image, image: ImageSource, *, crop_foreground: bool,
                      target_size: int) -> np.ndarray:
    """``mask`` (on ``image``'s full-resolution grid) cropped to the head box that preprocessing with
    ``crop_foreground`` and ``image_size == target_size`` finds in ``image`` (the whole mask without cropping).

    Raises ``ValueError`` naming the image when the mask's size differs from the image's.
    """
    binary = read_mask(mask)
    decoded = load_image(image, target_size=target_size)
    grid = full_size(image, decoded)
    if binary.shape[::-1] != grid:
        raise ValueError(f"mask size {binary.shape[::-1]} differs from image size {grid} "
                         f"({image if isinstance(image, (str, Path)) else 'in-memory image'}); "
                         "they must share a pixel grid")
    box = foreground_box(decoded) if crop_foreground else None
    if box is None:
        return binary
    left, upper, right, lower = scale_box(box, decoded.size, grid)
    return binary[upper:lower, left:right]


def resize_bool(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to (width, height) ``size`` (bilinear, then thresholded at one half)."""
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized) >= 128


def mask_on_decoded(mask: str | Path | np.ndarray | Image.Image, image: ImageSource, decoded: Image.Image, *,
                    crop_foreground: bool, target_size: int) -> np.ndarray:
    """``mask`` on the grid of ``decoded``, the output of ``Preprocess.decode(image)`` for a pipeline with
    ``crop_foreground`` and ``image_size == target_size``."""
    cropped = mask_in_head_crop(mask, image, crop_foreground=crop_foreground, target_size=target_size)
    return resize_bool(cropped, decoded.size)
