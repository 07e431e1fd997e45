"""Put a tumour mask through the geometric part of preprocessing (head crop, letterbox)."""

from __future__ import annotations

import numpy as np
from PIL import Image

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


def align_mask_to_input(
    mask: Image.Image, image: Image.Image, *, crop_box: Box | None, size: int
) -> np.ndarray:
    """``mask`` for ``image`` (same pixel grid) in the coordinates of the model's ``size`` x ``size``
    input, given the head's ``crop_box`` that preprocessing cut from ``image`` (None: no crop).

    Raises ``ValueError`` when mask and image differ in size (they would not share a grid).
    """
    if mask.size != image.size:
        raise ValueError(f"mask size {mask.size} differs from image size {image.size}; they must share a pixel grid")
    return letterbox_mask(mask, crop_box, size)
