"""Put a tumour mask through the geometric part of preprocessing (head crop, letterbox)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hierarchy.data.image_io import ImageSource
from hierarchy.data.masks import binarise_mask, mask_in_head_crop
from hierarchy.data.preprocess import PreprocessConfig

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
    cropped = mask_in_head_crop(mask, image, crop_foreground=preprocess.crop_foreground,
                                target_size=preprocess.image_size)
    return letterbox_mask(cropped, None, preprocess.image_size)
