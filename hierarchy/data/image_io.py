"""Decoding any image source (file, PIL image, array, tensor) to an 8-bit greyscale PIL image, as it is displayed.

Every decode of a file goes through :func:`guarded_decode`, so whatever is wrong with a file (unknown
format, truncated or corrupt data, data after a JPEG's end, a decompression bomb, a symlink loop, several
frames, fewer than ``MIN_IMAGE_SIDE`` pixels a side) surfaces as one ``ImageReadError`` naming it. A file's
EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a phone photo of a scan is seen upright.
:func:`read_images` decodes many files and, with ``skip_bad``, lists the bad ones instead of stopping at
the first.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hierarchy.data.read_errors import ImageReadError
from hierarchy.data.volume_io import read_slice

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

# A file with a side shorter than this is no scan slice (a 1x1 tracking pixel, an icon): it is refused.
MIN_IMAGE_SIDE = 8
# EXIF orientations that swap width and height (rotations by 90 or 270 degrees, transpositions)
_SIDEWAYS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


log = logging.getLogger(__name__)


def link_problem(path: str | Path) -> str | None:
    """Why the symlink ``path`` cannot be followed (a loop, a missing target), or None."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symlink loop"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        return f"broken symlink (its target {os.readlink(path)} does not exist)"
    return None


@contextmanager
def guarded_decode(where: str) -> Iterator[None]:
    """Turn anything that goes wrong while decoding into ``ImageReadError`` naming ``where``.

    Pillow's decompression-bomb warning (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels) is an error
    here too, so an oversized file is refused instead of filling memory.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{where}: exceeds the decompression-bomb limit ({err}); raise "
                             "PIL.Image.MAX_IMAGE_PIXELS only for files you trust") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{where}: not a recognised image format") from err
    except FileNotFoundError as err:
        raise ImageReadError(f"{where}: {link_problem(where) or 'file not found'}") from err
    except OSError as err:
        reason = "symlink loop" if err.errno == errno.ELOOP else f"cannot decode image ({err})"
        raise ImageReadError(f"{where}: {reason}") from err
    except Exception as err:  # malformed files can trip any error inside a decoder
        raise ImageReadError(f"{where}: cannot decode image ({type(err).__name__}: {err})") from err


def skip_record(path: str | Path, err: ImageReadError) -> dict[str, str]:
    """The ``{"path", "reason"}`` entry listing a skipped file (``frame.attrs["skipped"]``)."""
    log.warning("skipping %s", err)
    return {"path": str(path), "reason": str(err)}


def _check_frames_and_size(im: Image.Image, where: str) -> None:
    """Refuse a file of several frames (which one was meant?) and one too small to be a scan."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":  # MPO: a phone's JPEG with a preview image after the photo
        kind = {"GIF": "an animated GIF", "TIFF": "a multi-page TIFF"}.get(im.format, f"a {im.format} file")
        raise ImageReadError(f"{where}: {kind} of {frames} frames; which one to classify is ambiguous, so export "
                             "the slice you mean as a single-frame image")
    if min(im.size) < MIN_IMAGE_SIDE:
        raise ImageReadError(f"{where}: {im.width}x{im.height} pixels, below the minimum of {MIN_IMAGE_SIDE} px a "
                             "side (hierarchy.data.image_io.MIN_IMAGE_SIDE); not a scan slice")


def _jpeg_end_problem(data: bytes) -> str | None:
    """What is wrong with the end of a JPEG file's bytes: data after its end marker, or no end marker."""
    end = data.rfind(b"\xff\xd9")
    if end < 0:
        return None  # no end marker: the decoder reports the truncation
    trailing = data[end + 2:]
    if trailing.strip(b"\x00\r\n \t"):
        return (f"{len(trailing)} bytes of other data after the JPEG end marker (a damaged or spliced file); "
                "re-export it")
    return None


def _check_jpeg_complete(im: Image.Image, where: str, full_size: tuple[int, int]) -> None:
    """Refuse a decoded JPEG whose last blocks were never decoded: libjpeg fills the blocks missing from a
    truncated file (even one whose end marker was put back) with exactly mid-grey, which a real image's last
    block never is unless the whole image is that grey."""
    block = max(1, -(-16 * im.width // full_size[0]))  # one 16 px MCU at the decoded (draft) scale
    corner = im.crop((im.width - block, im.height - block, im.width, im.height))

    def mid_grey(image: Image.Image) -> bool:
        extrema = image.getextrema()
        return all(band == (128, 128) for band in (extrema if isinstance(extrema[0], tuple) else [extrema]))

    if mid_grey(corner) and not mid_grey(im):
        raise ImageReadError(f"{where}: truncated JPEG (its last blocks hold no data: the decoder filled them "
                             "with grey); re-export or re-download the file")


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
    if "#axis" in path.name and not path.exists():  # a slice of a DICOM or NIfTI volume
        with guarded_decode(str(path)):
            return read_slice(path)
    if path.is_dir():
        reason = ("a folder that cannot be read (permission denied), so its images cannot be listed"
                  if not os.access(path, os.R_OK | os.X_OK) else "a folder, not an image file")
        raise ImageReadError(f"{path}: {reason}")
    with guarded_decode(str(path)):
        with path.open("rb") as handle:
            data = handle.read()
        return decode_bytes(data, str(path), target_size)


def read_images(paths: Iterable[str | Path], *, target_size: int | None = None, skip_bad: bool = False,
                skipped: list[dict[str, str]] | None = None) -> Iterator[tuple[str | Path, Image.Image]]:
    """Decode each file of ``paths`` in turn, yielding ``(path, image)`` (mode "L").

    A bad file raises ``ImageReadError`` naming it; with ``skip_bad`` it is logged, appended to
    ``skipped`` as a ``{"path", "reason"}`` dict, and the next file is read.
    """
    for path in paths:
        try:
            image = open_image_file(path, target_size)
        except ImageReadError as err:
            if not skip_bad:
                raise
            if skipped is not None:
                skipped.append(skip_record(path, err))
            continue
        yield path, image


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


def decode_bytes(data: bytes, where: str, target_size: int | None = None) -> Image.Image:
    """Decode a file's bytes to mode "L", EXIF orientation applied; errors name ``where``.

    With ``target_size``, JPEGs are decoded at the smallest DCT scale that keeps both sides at least
    ``target_size`` px (``Image.draft``), which makes large JPEGs cheap to read.
    """
    with guarded_decode(where), Image.open(io.BytesIO(data)) as im:
        check_mode(im.mode, where)
        _check_frames_and_size(im, where)
        full_size = im.size
        if im.format == "JPEG":
            problem = _jpeg_end_problem(data)
            if problem:
                raise ImageReadError(f"{where}: {problem}")
            if target_size is not None:
                im.draft("L", (target_size, target_size))
        im.load()
        if im.format == "JPEG":
            _check_jpeg_complete(im, where, full_size)
        ImageOps.exif_transpose(im, in_place=True)
        return im.convert("L")


def _looks_complete(data: bytes, fmt: str | None) -> bool:
    """Cheap end-of-stream check: JPEG ends with EOI, PNG with an IEND chunk."""
    tail = data[-64:]
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    return False


def inspect_image_bytes(data: bytes, where: str) -> tuple[int, int, str, int]:
    """(width, height, PIL mode, EXIF orientation) of an image file's bytes, the size as displayed (EXIF
    orientation applied; the orientation is 1, upright, when the file has none), reading only the header when
    possible.

    Files whose stream does not end properly (or formats other than JPEG/PNG) are fully decoded,
    so truncated files are caught; files of several frames, too small, or with data after a JPEG's end
    are refused. Raises ``ImageReadError`` naming ``where``.
    """
    with guarded_decode(where), Image.open(io.BytesIO(data)) as im:
        width, height, mode, fmt = im.width, im.height, im.mode, im.format
        check_mode(mode, where)
        _check_frames_and_size(im, where)
        # a PNG whose header holds no EXIF would be decoded whole to look for it
        orientation = 1 if im.format == "PNG" and "exif" not in im.info else _orientation(im)
        if orientation in _SIDEWAYS:  # the size as displayed
            width, height = height, width
    problem = _jpeg_end_problem(data) if fmt == "JPEG" else None
    if problem:
        raise ImageReadError(f"{where}: {problem}")
    if not _looks_complete(data, fmt):
        decode_bytes(data, where)
    return width, height, mode, orientation


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag of ``im`` (1 to 8), 1 when it has none or an invalid one."""
    value = im.getexif().get(_EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
