"""Decoding any image source (file, PIL image, array, tensor) to an 8-bit greyscale PIL image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# Modes whose conversion to 8-bit greyscale would silently clip or mis-map intensities.
UNSUPPORTED_MODES = {
    "I": "32-bit integer (16-bit scans decode to this); convert to 8-bit first",
    "I;16": "16-bit; convert to 8-bit first",
    "I;16B": "16-bit; convert to 8-bit first",
    "I;16L": "16-bit; convert to 8-bit first",
    "I;16N": "16-bit; convert to 8-bit first",
    "F": "32-bit float; convert to 8-bit first",
    "CMYK": "CMYK colour (a print file, not a scan export); convert to greyscale or RGB first",
}

ImageSource = str | Path | Image.Image | np.ndarray | Any  # Any: a torch.Tensor


class ImageReadError(ValueError):
    """An image that cannot be read, is truncated, or has an unsupported pixel format."""


def check_mode(mode: str, where: str) -> None:
    """Raise ImageReadError naming ``where`` when ``mode`` cannot become 8-bit greyscale faithfully."""
    if mode in UNSUPPORTED_MODES:
        raise ImageReadError(f"{where}: unsupported image mode {mode!r} ({UNSUPPORTED_MODES[mode]})")


def open_image_file(path: str | Path, target_size: int | None = None) -> Image.Image:
    """Fully decode an image file to mode "L".

    With ``target_size``, JPEGs are decoded at the smallest DCT scale that keeps both sides at
    least ``target_size`` px (``Image.draft``), which makes large JPEGs cheap to read.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            check_mode(im.mode, str(path))
            if target_size is not None and im.format == "JPEG":
                im.draft("L", (target_size, target_size))
            im.load()
            return im.convert("L")
    except ImageReadError:
        raise
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not a recognised image format") from err
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: file not found") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({err})") from err


def _array_to_image(array: np.ndarray, where: str) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ImageReadError(f"{where}: expected an HxW or HxWx3 array, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        # Floats in [0, 1] are intensities; larger values are taken as 0-255.
        scale = 255.0 if np.nanmax(array, initial=0.0) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise ImageReadError(f"{where}: unsupported array dtype {array.dtype}; use uint8 or float")
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(array), mode=mode).convert("L")


def load_image(source: ImageSource, target_size: int | None = None) -> Image.Image:
    """Decode ``source`` to an 8-bit greyscale (mode "L") PIL image.

    ``source`` is a file path, a PIL image, a numpy array (HxW or HxWx3; uint8, or float in
    [0, 1] or [0, 255]) or a torch tensor (HxW, CxHxW or HxWxC). Raises ``ImageReadError``
    (a ``ValueError``) naming the file for unreadable, truncated or unsupported images.
    """
    if isinstance(source, (str, Path)):
        return open_image_file(source, target_size)
    if isinstance(source, Image.Image):
        check_mode(source.mode, "image")
        return source if source.mode == "L" else source.convert("L")
    if isinstance(source, np.ndarray):
        return _array_to_image(source, "array")
    if type(source).__module__.startswith("torch"):
        array = source.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
        return _array_to_image(array, "tensor")
    raise TypeError(f"cannot load an image from {type(source).__name__}; "
                    "pass a path, PIL image, numpy array or torch tensor")


def decode_bytes(data: bytes, where: str) -> Image.Image:
    """Decode in-memory file bytes (already read for hashing) to mode "L"; errors name ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_mode(im.mode, where)
            im.load()
            return im.convert("L")
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{where}: cannot decode image ({err})") from err


def _looks_complete(data: bytes, fmt: str | None) -> bool:
    """Cheap end-of-stream check: JPEG ends with EOI, PNG with an IEND chunk."""
    tail = data[-64:]
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    return False


def inspect_image_bytes(data: bytes, where: str) -> tuple[int, int, str]:
    """(width, height, PIL mode) of an image file's bytes, reading only the header when possible.

    Files whose stream does not end properly (or formats other than JPEG/PNG) are fully decoded,
    so truncated files are caught. Raises ``ImageReadError`` naming ``where``.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height, mode, fmt = im.width, im.height, im.mode, im.format
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{where}: not a recognised image format") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{where}: not a readable image ({err})") from err
    check_mode(mode, where)
    if not _looks_complete(data, fmt):
        decode_bytes(data, where)
    return width, height, mode
