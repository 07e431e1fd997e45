"""Scanner volumes (DICOM series, NIfTI files): the intensity path to 8 bits, the plane from the geometry,
2-D slices along any axis, and which slices hold the brain.

A :class:`Volume` is an 8-bit array in nibabel's canonical RAS+ orientation (``nibabel.as_closest_canonical``:
axes run towards the patient's right, anterior and superior) with its voxel-to-mm affine. Its slices are shown
the way a radiologist's viewer shows them and BRISC's images are stored: axial with anterior up and the
patient's right on the image's left, coronal and sagittal with superior up (sagittal with the face on the left).

**Plane from the geometry.** The normal of a slice is the cross product of its row and column directions (for
a DICOM file, of ImageOrientationPatient's two direction cosines; for a volume, of the affine's two in-plane
columns). Its largest component names the plane: x sagittal, y coronal, z axial. ``plane_angle`` is the angle
in degrees between the normal and that axis; above :data:`OBLIQUE_DEGREES` the slice is ``oblique``
(``plane_source = "oblique"``, and ``plane`` is left unknown), else ``plane_source = "header"``.

**Intensity path** (:func:`to_uint8`, the one function from 12/16-bit scanner values to the network's 8-bit
input): the values after the header's own steps (DICOM: pydicom's ``apply_modality_lut`` then ``apply_voi_lut``;
NIfTI: nibabel's scaled ``get_fdata``) are mapped linearly from a window ``[lo, hi]`` to 0-255, clipped and
rounded, and inverted for MONOCHROME1. The window is the header's VOI output range when the file has a VOI LUT
or window centre/width (one window for a whole series: its middle slice's), else the 0.5th-99.5th percentiles
of the whole volume (:data:`DEFAULT_PERCENTILES`), so every slice of a volume shares one mapping.

**Brain slices** (:func:`brain_slices`): the head mask is the voxels above 10% of the volume's 0.5th-99.5th
percentile range after a 3-voxel box blur. A sagittal or coronal slice holds brain when its head-mask area is at
least :data:`BRAIN_MIN_AREA_CM2` cm² and at least :data:`BRAIN_MIN_SHARE` of the largest along that axis (which
leaves out the ears, the face and the back of the head); an axial slice when it lies between
:data:`BRAIN_BELOW_VERTEX_MM` below the top of the head (the highest slice with 10 cm² of head) and has the
same area floor (which leaves out the scalp above the brain and the neck below it, whose cross-section is as
large as the head's). A volume of one slice along the axis is judged by the area floor alone.

Reading a volume from its file and naming its slices is :mod:`hierarchy.data.volume_io`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

PLANE_OF_AXIS = ("sagittal", "coronal", "axial")  # patient axis x, y, z
OBLIQUE_DEGREES = 20.0
DEFAULT_PERCENTILES = (0.5, 99.5)
BRAIN_MIN_AREA_CM2 = 60.0
BRAIN_MIN_SHARE = 0.5
BRAIN_BELOW_VERTEX_MM = (10.0, 110.0)
_VERTEX_AREA_CM2 = 10.0
_HEAD_LEVEL = 0.1
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def to_uint8(values: np.ndarray, window: tuple[float, float] | None = None, *,
             invert: bool = False) -> np.ndarray:
    """The intensity path from scanner values to the network's 8-bit input.

    ``values`` are the header-scaled intensities (any shape; see the module docstring for how DICOM and
    NIfTI get there). ``window = (lo, hi)`` maps ``lo`` to 0 and ``hi`` to 255 (clipped, rounded); None takes
    the 0.5th-99.5th percentiles of ``values`` (:data:`DEFAULT_PERCENTILES`). ``invert`` (MONOCHROME1)
    turns the result over (255 - v), so that high values are bright as in MONOCHROME2.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if window is None:
        window = tuple(np.percentile(finite, DEFAULT_PERCENTILES)) if finite.size else (0.0, 1.0)
    lo, hi = float(window[0]), float(window[1])
    scaled = (np.nan_to_num(values, nan=lo) - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    out = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)
    return 255 - out if invert else out


def plane_from_normal(normal: Sequence[float]) -> tuple[str, float]:
    """(plane, angle): the plane named by the largest component of a slice normal (x sagittal, y coronal,
    z axial) and the angle in degrees between the normal and that axis."""
    normal = np.asarray(normal, dtype=float)
    length = np.linalg.norm(normal)
    if normal.shape != (3,) or not length > 0:
        raise ValueError(f"a slice normal needs 3 components and a length, got {normal.tolist()}")
    axis = int(np.argmax(np.abs(normal)))
    angle = math.degrees(math.acos(min(1.0, abs(normal[axis]) / length)))
    return PLANE_OF_AXIS[axis], angle


def plane_from_orientation(orientation: Sequence[float]) -> tuple[str, float]:
    """(plane, angle) of a DICOM slice from its ImageOrientationPatient (row then column direction cosines):
    the normal is their cross product."""
    orientation = np.asarray(orientation, dtype=float)
    if orientation.shape != (6,):
        raise ValueError(f"ImageOrientationPatient needs 6 values, got {orientation.tolist()}")
    return plane_from_normal(np.cross(orientation[:3], orientation[3:]))


def plane_source(angle: float) -> str:
    """``"header"`` for a slice within :data:`OBLIQUE_DEGREES` of a patient axis, else ``"oblique"``."""
    return "header" if angle <= OBLIQUE_DEGREES else "oblique"


@dataclass
class Volume:
    """An 8-bit volume in canonical RAS+ orientation and what its header says.

    ``array`` (I, J, K) uint8 from :func:`to_uint8`; ``affine`` the 4x4 voxel-to-mm (RAS+) matrix, or None when
    the file has no geometry (then slices are the frames as stored, along axis 2, with no plane); ``info``
    what the header says (modality, series, image type, the window rule used).
    """

    array: np.ndarray
    affine: np.ndarray | None
    source: str
    info: dict = field(default_factory=dict)

    @property
    def spacing(self) -> np.ndarray | None:
        """Voxel size in mm along each array axis (None without geometry)."""
        return None if self.affine is None else np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def acquired_axis(self) -> int:
        """The canonical axis the file stored its slices along (its third array axis; 2 without geometry)."""
        return int(self.info.get("acquired_axis", 2))

    def axes(self) -> tuple[int, ...]:
        """The axes slices can be taken along: all three with geometry, else the frame axis (2)."""
        return (0, 1, 2) if self.affine is not None else (2,)

    def plane(self, axis: int) -> tuple[str | None, float | None]:
        """(plane, angle) of the slices along ``axis``: the normal is the cross product of the affine's two
        in-plane columns."""
        if self.affine is None:
            return None, None
        i, j = (a for a in range(3) if a != axis)
        return plane_from_normal(np.cross(self.affine[:3, i], self.affine[:3, j]))

    def position(self, axis: int, index: int) -> float | None:
        """Where slice ``index`` along ``axis`` lies: mm along the slice normal from the scanner origin."""
        if self.affine is None:
            return None
        i, j = (a for a in range(3) if a != axis)
        normal = np.cross(self.affine[:3, i], self.affine[:3, j])
        voxel = np.zeros(4)
        voxel[axis], voxel[3] = index, 1.0
        return float(np.dot((self.affine @ voxel)[:3], normal) / np.linalg.norm(normal))

    def slice(self, axis: int, index: int) -> np.ndarray:
        """The 2-D uint8 slice ``index`` along ``axis``, oriented for display (see the module docstring) and
        resampled to square pixels when the in-plane voxel sizes differ."""
        if axis not in self.axes():
            raise ValueError(f"{self.source}: no slices along axis {axis} (it has axes {list(self.axes())})")
        if not 0 <= index < self.array.shape[axis]:
            raise ValueError(f"{self.source}: slice {index} is outside 0-{self.array.shape[axis] - 1} "
                             f"along axis {axis}")
        plane = np.take(self.array, index, axis=axis)
        if self.affine is None:
            return np.ascontiguousarray(plane)
        image = np.ascontiguousarray(plane.T[::-1, ::-1])
        rows, cols = (self.spacing[a] for a in reversed([a for a in range(3) if a != axis]))
        if not math.isclose(rows, cols, rel_tol=0.02):
            side = min(rows, cols)
            size = (max(1, round(image.shape[1] * cols / side)), max(1, round(image.shape[0] * rows / side)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        return image

    def head_area(self, axis: int) -> np.ndarray:
        """Head-mask area of every slice along ``axis``, in cm² (in pixels without geometry)."""
        return _head_areas(self, axis)


def _head_mask(volume: Volume) -> np.ndarray:
    array = volume.array
    lo, hi = np.percentile(array, DEFAULT_PERCENTILES)
    if hi <= lo:
        return np.zeros(array.shape, dtype=bool)
    size = 3 if volume.affine is not None else (3, 3, 1)
    return uniform_filter(array.astype(np.float32), size=size) > lo + _HEAD_LEVEL * (hi - lo)


def _head_areas(volume: Volume, axis: int) -> np.ndarray:
    mask = _head_mask(volume)
    in_plane = tuple(a for a in range(3) if a != axis)
    pixels = mask.sum(axis=in_plane).astype(float)
    if volume.spacing is None:
        return pixels
    return pixels * float(np.prod(volume.spacing[list(in_plane)])) / 100.0


def brain_slices(volume: Volume, axis: int) -> np.ndarray:
    """Boolean per slice along ``axis``: whether it holds brain (the rule in the module docstring; without
    geometry: head-mask area at least :data:`BRAIN_MIN_SHARE` of the largest)."""
    area = volume.head_area(axis)
    if not area.size or area.max() <= 0:
        return np.zeros(area.shape, dtype=bool)
    if volume.spacing is None:
        return area >= BRAIN_MIN_SHARE * area.max()
    floor = area >= BRAIN_MIN_AREA_CM2
    if len(area) == 1:
        return floor
    plane, _ = volume.plane(axis)
    if plane != "axial":
        return floor & (area >= BRAIN_MIN_SHARE * area.max())
    heights = np.array([volume.position(axis, k) for k in range(len(area))])
    heights = heights * np.sign(volume.affine[2, axis] or 1.0)  # mm upwards (RAS+: superior)
    head = area >= _VERTEX_AREA_CM2
    if not head.any():
        return np.zeros(area.shape, dtype=bool)
    below = heights[head].max() - heights
    return floor & (below >= BRAIN_BELOW_VERTEX_MM[0]) & (below <= BRAIN_BELOW_VERTEX_MM[1])


def is_nifti(path: str | Path) -> bool:
    """Whether ``path`` names a NIfTI file by its suffix (.nii or .nii.gz)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file: the ``DICM`` marker after the 128-byte preamble, or a .dcm suffix."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_files(folder: str | Path) -> list[Path]:
    """Every DICOM file under ``folder`` (recursively, hidden files and DICOMDIR index files left out)."""
    folder = Path(folder)
    return [p for p in sorted(folder.rglob("*"))
            if not p.name.startswith(".") and p.name.upper() != "DICOMDIR" and is_dicom_file(p)]


def is_scanner_path(path: str | Path) -> bool:
    """Whether ``path`` is a NIfTI file, a DICOM file, or a folder holding DICOM files."""
    path = Path(path)
    if is_nifti(path):
        return path.is_file()
    if path.is_dir():
        return any(is_dicom_file(p) for p in path.rglob("*") if not p.name.startswith("."))
    return is_dicom_file(path)
