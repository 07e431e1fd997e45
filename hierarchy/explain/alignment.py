"""Put a tumour mask through the geometric part of preprocessing (head crop, letterbox)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hierarchy.data.image_io import ImageSource, load_image
from hierarchy.data.preprocess import PreprocessConfig, foreground_box
from hierarchy.explain.mask_scores import binarise_mask

Box = tuple[int, int, int, int]


def letterbox_mask(mask: np.ndarray | Image.Image, crop_box: Box | None, size: int) -> np.ndarray:
    """Crop ``mask`` to ``crop_box`` (left, upper, right, lower), resize it, aspect kept, so its
    longer side is ``size`` (nearest-neighbour), and pad it centred to ``size`` x ``size``.

    Returns a (size, size) bool array matching a model input letterboxed the same way.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    binary = Image.fromarray(binarise_mask(mask).astype(np.uint8) * 255)
    if crop_box is not None:
        left, upper, right, lower = crop_box
        if not (0 <= left < right <= binary.width and 0 <= upper < lower <= binary.height):
            raise ValueError(f"crop box {crop_box} does not lie inside the {binary.size} mask")
        binary = binary.crop(crop_box)
    scale = size / max(binary.size)
    width, height = (max(1, round(side * scale)) for side in binary.size)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(binary.resize((width, height), Image.Resampling.NEAREST), ((size - width) // 2, (size - height) // 2))
    return np.asarray(canvas) > 0


def _decode_as_preprocessing(image: ImageSource, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """``image`` decoded as preprocessing decodes it (JPEG files at a reduced DCT scale), and the
    (width, height) of its full-resolution pixel grid."""
    decoded = load_image(image, target_size=size)
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return decoded, im.size
    return decoded, decoded.size


def _scale_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    """``box`` on a ``source``-sized grid as a box on the ``target``-sized grid covering the same area."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    left, upper, right, lower = box
    return round(left * sx), round(upper * sy), round(right * sx), round(lower * sy)


def align_mask_to_input(
    mask: np.ndarray | Image.Image | str | Path, image: ImageSource, preprocess: PreprocessConfig
) -> np.ndarray:
    """``mask`` for ``image`` in the coordinates of the model input that ``preprocess`` makes from
    ``image``: a (S, S) bool array, S = ``preprocess.image_size``.

    ``image`` is decoded and cropped to the head exactly as :class:`hierarchy.data.preprocess.Preprocess`
    does (when ``crop_foreground`` is set); the crop box is carried over to the mask's grid, which
    must be the full-resolution grid of ``image`` (a mask path is read as it is). Raises
    ``ValueError`` when their sizes differ.
    """
    if isinstance(mask, (str, Path)):
        with Image.open(mask) as opened:
            mask = np.asarray(opened)
    binary = binarise_mask(mask)
    size = preprocess.image_size
    decoded, full_size = _decode_as_preprocessing(image, size)
    if binary.shape[::-1] != full_size:
        raise ValueError(f"mask size {binary.shape[::-1]} differs from image size {full_size}; "
                         "they must share a pixel grid")
    box = foreground_box(decoded) if preprocess.crop_foreground else None
    if box is not None:
        box = _scale_box(box, decoded.size, full_size)
    return letterbox_mask(binary, box, size)
