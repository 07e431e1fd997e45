"""Index rows for the 2-D slices of DICOM files, DICOM series and NIfTI volumes.

:func:`scanner_rows` turns one scanner path (a NIfTI file, a DICOM file, or a folder of DICOM files, one
volume per stackable series and one per remaining file) into index rows, one per slice, with the columns of
:data:`hierarchy.data.index.COLUMNS` plus :data:`SCANNER_COLUMNS`: ``plane`` is the plane from the geometry
(see :mod:`hierarchy.data.volume`) unless the slice is oblique or the caller gives one, ``path`` is the slice
reference :func:`~hierarchy.data.volume_io.read_slice` decodes. ``axes="acquired"`` (default) takes the slices as
the file stored them; ``"all"`` or a sequence of canonical axes (0 sagittal, 1 coronal, 2 axial for an
unrotated head) reslices the volume.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from hierarchy.data.dicom import series_of, stackable
from hierarchy.data.read_errors import ImageReadError
from hierarchy.data.volume import Volume, brain_slices, is_nifti, plane_source
from hierarchy.data.volume_io import load_volume, slice_ref

SCANNER_COLUMNS: tuple[str, ...] = ("series", "header_plane", "plane_source", "plane_angle", "slice_axis",
                                    "slice_index", "slice_position", "brain", "modality", "series_description",
                                    "image_type")
Axes = str | Sequence[int]


def _volumes(path: Path) -> list[tuple[Path, str | None]]:
    """(path, series) of every volume at ``path``."""
    if is_nifti(path) or path.is_file():
        return [(path, None)]
    found: list[tuple[Path, str | None]] = []
    for uid, files in sorted(series_of(path).items()):
        folder = Path(os.path.commonpath([f.parent for f in files]))  # the series' own folder
        found += [(folder, uid)] if stackable(files) else [(f, None) for f in files]
    if not found:
        raise ImageReadError(f"{path}: no DICOM files found")
    return found


def _axes(volume: Volume, axes: Axes) -> tuple[int, ...]:
    if axes == "acquired":
        return (volume.acquired_axis,)
    if axes == "all":
        return volume.axes()
    if isinstance(axes, str):
        raise ValueError(f"axes must be 'acquired', 'all' or a sequence of axes 0-2, got {axes!r}")
    return tuple(a for a in axes if a in volume.axes())


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def volume_rows(volume: Volume, path: Path, series: str | None, base: Path, *, label: str | None = None,
                plane: str | None = None, split: str | None = None, layout: str = "scanner",
                axes: Axes = "acquired") -> list[dict]:
    """One index row per slice of ``volume`` (read from ``path``, DICOM ``series``) along ``axes``."""
    name = _relative(path, base)
    name = (path.resolve().name if name == "." else name) + (f"/@{series}" if series else "")
    rows = []
    for axis in _axes(volume, axes):
        header_plane, angle = volume.plane(axis)
        source = None if header_plane is None else plane_source(angle)
        brain = brain_slices(volume, axis)
        for index in range(volume.array.shape[axis]):
            pixels = volume.slice(axis, index)
            rows.append({
                "id": f"{name}#axis{axis}:slice{index}", "path": slice_ref(path, axis, index, series),
                "label": label, "plane": plane if plane is not None else (header_plane if source == "header" else None),
                "split": split, "sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
                "width": pixels.shape[1], "height": pixels.shape[0], "mode": "L", "file_size": pixels.nbytes,
                "layout": layout, "mask_path": None, "series": name, "header_plane": header_plane,
                "plane_source": source, "plane_angle": None if angle is None else round(angle, 2),
                "slice_axis": axis, "slice_index": index, "slice_position": volume.position(axis, index),
                "brain": bool(brain[index]), "modality": volume.info.get("modality", ""),
                "series_description": volume.info.get("series_description", ""),
                "image_type": volume.info.get("image_type", ""),
            })
    return rows


def scanner_rows(path: str | Path, base: str | Path, *, label: str | None = None, plane: str | None = None,
                 split: str | None = None, layout: str = "scanner", axes: Axes = "acquired") -> list[dict]:
    """Index rows of every slice of the scanner file or DICOM folder ``path`` (ids relative to ``base``).

    Raises ``ImageReadError`` naming the file for anything unreadable.
    """
    path = Path(path)
    rows = []
    for volume_path, series in _volumes(path):
        volume = load_volume(volume_path, series)
        rows += volume_rows(volume, volume_path, series, Path(base), label=label, plane=plane, split=split,
                            layout=layout, axes=axes)
    return rows
