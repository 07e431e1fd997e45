"""Reading DICOM files and series (pydicom) into :class:`~hierarchy.data.volume.Volume`.

Pixel data are decoded by pydicom and the pip-installable plugins it finds (pylibjpeg with its libjpeg,
openjpeg and RLE plugins: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE); another compressed
transfer syntax is refused with one line naming the file and the syntax. Values go through pydicom's own
steps, ``apply_modality_lut`` (rescale slope/intercept or a modality LUT) then ``apply_voi_lut`` (a VOI LUT,
else window centre/width) when the header has one, and then :func:`~hierarchy.data.volume.to_uint8`.
Colour files (RGB, YBR, palette) become luminance. A series (one SeriesInstanceUID of single-frame files
with one orientation and size) is stacked in the order of ImagePositionPatient along the slice normal
(InstanceNumber without positions); its geometry becomes a RAS+ affine and the volume is reoriented with
``nibabel.as_closest_canonical``. pydicom and nibabel are imported by the functions that read a file, so
importing this module (as :mod:`hierarchy.data.image_io` does, through :mod:`hierarchy.data.volume_io`) needs
neither.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hierarchy.data.read_errors import ImageReadError
from hierarchy.data.volume import Volume, dicom_files, to_uint8

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_LUMINANCE = np.array([0.299, 0.587, 0.114])


def read_header(path: str | Path) -> pydicom.Dataset:
    """The DICOM header of ``path`` without its pixel data (cached by path, modification time and size);
    ``ImageReadError`` naming the file otherwise."""
    path = Path(path)
    stat = path.stat()
    return _header(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _header(path: str, _mtime: int, _size: int) -> pydicom.Dataset:
    return _read(Path(path), stop_before_pixels=True)


@contextmanager
def _naming(source: str | Path) -> Iterator[None]:
    """Any error but an ``ImageReadError`` raised inside (a malformed header field, geometry nibabel cannot
    decompose, a LUT pydicom refuses) becomes an ``ImageReadError`` naming ``source``."""
    try:
        yield
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001  (pydicom, numpy and nibabel raise many types for bad headers)
        raise ImageReadError(f"{source}: malformed DICOM header or pixel data ({type(err).__name__}: "
                             f"{err})") from err


def _read(path: Path, *, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """The DICOM dataset of ``path`` (without pixel data when ``stop_before_pixels``); ``ImageReadError``
    naming the file otherwise."""
    import pydicom  # noqa: PLC0415  (only when a DICOM file is read)
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: not a readable DICOM file ({err})") from err


def _pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Decoded pixel data as (frames, rows, cols) greyscale numbers (colour as luminance)."""
    from pydicom.pixels import apply_color_lut  # noqa: PLC0415  (only when a DICOM file is read)

    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file without pixel data ({ds.get('Modality', 'no modality')}, "
                             f"SOP class {ds.get('SOPClassUID', '?')})")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        array = ds.pixel_array
    except Exception as err:  # decoders raise anything from RuntimeError to their own types
        name = getattr(syntax, "name", syntax)
        raise ImageReadError(f"{path}: cannot decode DICOM pixel data in transfer syntax {name} "
                             f"({type(err).__name__}: {err})") from err
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
    colour = array.shape[-1] == 3 and (photometric not in ("MONOCHROME1", "MONOCHROME2"))
    if colour:
        array = array.astype(np.float64) @ _LUMINANCE
    return array.reshape(frames, *array.shape[-2:]) if array.ndim == 2 or frames > 1 or colour else array[None]


def _window(ds: pydicom.Dataset, values: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """``values`` after ``apply_voi_lut`` and the window of its output (its range for the lowest and highest
    input), or the values unchanged and None when ``ds`` has no VOI LUT or window."""
    from pydicom.pixels import apply_voi_lut  # noqa: PLC0415  (only when a DICOM file is read)

    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        return values, None
    bounds = apply_voi_lut(np.array([-1e12, 1e12]), ds)
    return apply_voi_lut(values, ds), (float(bounds.min()), float(bounds.max()))


def _is_colour(ds: pydicom.Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")) not in ("MONOCHROME1", "MONOCHROME2")


def _scaled(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """(frames, rows, cols) values after the modality LUT (colour: luminance 0-255 as it is)."""
    from pydicom.pixels import apply_modality_lut  # noqa: PLC0415  (only when a DICOM file is read)

    pixels = _pixels(ds, path)
    return pixels.astype(np.float64) if _is_colour(ds) else np.asarray(apply_modality_lut(pixels, ds), float)


def _orientation(ds: pydicom.Dataset) -> np.ndarray | None:
    if "ImageOrientationPatient" in ds:
        return np.asarray(ds.ImageOrientationPatient, dtype=float)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PlaneOrientationSequence" in shared[0]:
        return np.asarray(shared[0].PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    return None


def _spacing(ds: pydicom.Dataset) -> np.ndarray:
    if "PixelSpacing" in ds:
        return np.asarray(ds.PixelSpacing, dtype=float)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PixelMeasuresSequence" in shared[0]:
        return np.asarray(shared[0].PixelMeasuresSequence[0].PixelSpacing, dtype=float)
    return np.ones(2)


def _frame_positions(ds: pydicom.Dataset, frames: int) -> np.ndarray | None:
    """ImagePositionPatient of each frame of one file, or None without positions."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and all("PlanePositionSequence" in f for f in per_frame):
        return np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in per_frame], dtype=float)
    if "ImagePositionPatient" not in ds:
        return None
    first = np.asarray(ds.ImagePositionPatient, dtype=float)
    if frames == 1:
        return first[None]
    orientation = _orientation(ds)
    normal = np.cross(orientation[:3], orientation[3:])
    if "GridFrameOffsetVector" in ds:
        offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    else:
        step = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
        offsets = np.arange(frames) * step
    return first[None] + offsets[:, None] * normal[None]


def _affine(orientation: np.ndarray, spacing: np.ndarray, positions: np.ndarray, thickness: float) -> np.ndarray:
    """RAS+ voxel-to-mm affine of a (rows, cols, slices) array with DICOM geometry."""
    row_dir, col_dir = orientation[:3], orientation[3:]
    if len(positions) > 1:
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        step = np.cross(row_dir, col_dir) * thickness
    lps = np.eye(4)
    lps[:3, 0] = col_dir * spacing[0]
    lps[:3, 1] = row_dir * spacing[1]
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return _LPS_TO_RAS @ lps


def _volume(values: np.ndarray, window: tuple[float, float] | None, invert: bool, ds: pydicom.Dataset,
            positions: np.ndarray | None, source: str, n_files: int) -> Volume:
    """(slices, rows, cols) values -> canonical 8-bit :class:`Volume`."""
    import nibabel as nib  # noqa: PLC0415  (only when a DICOM file is read)

    array = to_uint8(np.moveaxis(values, 0, -1), window, invert=invert)
    info = {"format": "dicom", "modality": str(ds.get("Modality", "")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "image_type": "\\".join(map(str, ds.get("ImageType", []))),
            "photometric": str(ds.get("PhotometricInterpretation", "")),
            "series_uid": str(ds.get("SeriesInstanceUID", "")), "files": n_files,
            "window": ("colour luminance 0-255" if _is_colour(ds) else "header VOI" if window is not None
                       else "percentiles 0.5-99.5")}
    orientation = _orientation(ds)
    if orientation is None or positions is None or len(positions) != array.shape[2]:
        return Volume(array, None, source, info)
    thickness = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    image = nib.Nifti1Image(array, _affine(orientation, _spacing(ds), positions, thickness))
    info["acquired_axis"] = int(nib.io_orientation(image.affine)[2, 0])
    image = nib.as_closest_canonical(image)
    return Volume(np.asarray(image.dataobj), image.affine, source, info)


def read_dicom_file(path: str | Path) -> Volume:
    """The :class:`Volume` of one DICOM file (one slice, or every frame of a multi-frame file)."""
    path = Path(path)
    ds = _read(path)
    with _naming(path):
        scaled = _scaled(ds, path)
        values, window = (scaled, (0.0, 255.0)) if _is_colour(ds) else _window(ds, scaled)
        invert = str(ds.get("PhotometricInterpretation")) == "MONOCHROME1"
        return _volume(values, window, invert, ds, _frame_positions(ds, len(values)), str(path), 1)


def series_of(folder: str | Path) -> dict[str, list[Path]]:
    """The DICOM files under ``folder`` grouped by SeriesInstanceUID (files without one: by their own path)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in dicom_files(folder):
        header = read_header(path)
        groups[str(header.get("SeriesInstanceUID", path))].append(path)
    return dict(groups)


def stackable(paths: list[Path]) -> bool:
    """Whether ``paths`` (one series) stack into one volume: several single-frame greyscale files with pixel
    data, one ImageOrientationPatient and one size."""
    if len(paths) < 2:
        return False
    headers = [read_header(p) for p in paths]
    keys = {(int(h.get("NumberOfFrames", 1) or 1), h.get("Rows"), h.get("Columns"), _is_colour(h),
             tuple(np.round(_orientation(h), 4)) if _orientation(h) is not None else None,
             "ImagePositionPatient" in h) for h in headers}
    if len(keys) != 1:
        return False
    frames, rows, _, colour, orientation, positioned = keys.pop()
    return frames == 1 and rows is not None and not colour and orientation is not None and positioned


def read_dicom_series(paths: list[Path], source: str) -> Volume:
    """One series of single-frame files (see :func:`stackable`) as one :class:`Volume`: sorted along the slice
    normal, the modality LUT of each file, then the VOI LUT or window of the middle file for the whole series."""
    datasets = [_read(p) for p in paths]
    with _naming(source):
        return _stack(datasets, paths, source)


def _stack(datasets: list[pydicom.Dataset], paths: list[Path], source: str) -> Volume:
    """The body of :func:`read_dicom_series` once every file is read."""
    orientation = _orientation(datasets[0])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([d.ImagePositionPatient for d in datasets], dtype=float)
    order = np.argsort(positions @ normal, kind="stable")
    datasets, positions = [datasets[i] for i in order], positions[order]
    paths = [paths[i] for i in order]
    values = np.concatenate([_scaled(d, p) for d, p in zip(datasets, paths, strict=True)])
    middle = datasets[len(datasets) // 2]
    values, window = _window(middle, values)
    invert = str(middle.get("PhotometricInterpretation")) == "MONOCHROME1"
    return _volume(values, window, invert, middle, positions, source, len(datasets))


def read_dicom_volume(path: str | Path, series: str | None = None) -> Volume:
    """A DICOM file, or the series ``series`` (SeriesInstanceUID) of a folder (None: its only series)."""
    path = Path(path)
    if path.is_file():
        return read_dicom_file(path)
    groups = series_of(path)
    if not groups:
        raise ImageReadError(f"{path}: no DICOM files found")
    if series is None:
        if len(groups) > 1:
            raise ImageReadError(f"{path} holds {len(groups)} DICOM series; name one of {sorted(groups)}")
        series = next(iter(groups))
    if series not in groups:
        raise ImageReadError(f"{path}: no DICOM series {series}")
    files = groups[series]
    with _naming(f"{path}/@{series}"):
        whole = stackable(files)
    if not whole:
        raise ImageReadError(f"{path}: series {series} does not stack into one volume (mixed sizes, "
                             "orientations, colour or multi-frame files); read its files one by one")
    return read_dicom_series(files, f"{path}/@{series}")
