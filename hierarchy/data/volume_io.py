"""Reading scanner volumes from their files and naming their slices.

Slices travel through the rest of the library as *slice references*, strings ``"<file or folder>#axis<a>:
slice<k>"`` that :func:`read_slice` decodes (volumes are cached, so the slices of one volume read it once).
The volume (:class:`~hierarchy.data.volume.Volume`) and the DICOM and NIfTI readers live below this module,
which only dispatches between them; pydicom and nibabel are imported only when a file is read.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from PIL import Image

from hierarchy.data.dicom import read_dicom_volume
from hierarchy.data.nifti import read_nifti
from hierarchy.data.read_errors import ImageReadError
from hierarchy.data.volume import Volume, is_nifti

_REF = re.compile(r"^(?P<path>.+)#axis(?P<axis>[012]):slice(?P<index>\d+)$")


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _load_cached(identity: tuple[str, int, int], series: str | None) -> Volume:
    path = Path(identity[0])
    if is_nifti(path):
        return read_nifti(path)
    return read_dicom_volume(path, series)


def load_volume(path: str | Path, series: str | None = None) -> Volume:
    """The :class:`Volume` of a NIfTI file, a DICOM file, or one series of a DICOM folder (``series``: its
    SeriesInstanceUID; None when the folder holds one series). Recently read volumes are cached (keyed by
    path, modification time and size). Raises ``ImageReadError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    return _load_cached(_identity(path), series)


def slice_ref(path: str | Path, axis: int, index: int, series: str | None = None) -> str:
    """The string that names slice ``index`` along ``axis`` of a volume (a DICOM folder's ``series`` as
    ``folder/@<SeriesInstanceUID>``)."""
    base = str(Path(path).resolve())
    if series is not None:
        base += f"/@{series}"
    return f"{base}#axis{axis}:slice{index}"


def parse_slice_ref(source: str | Path) -> tuple[Path, str | None, int, int] | None:
    """(path, series, axis, index) of a slice reference, or None when ``source`` is not one."""
    match = _REF.match(str(source))
    if match is None:
        return None
    path, series = match["path"], None
    head, _, tail = path.rpartition("/@")
    if head and "/" not in tail:
        path, series = head, tail
    return Path(path), series, int(match["axis"]), int(match["index"])


def read_slice(source: str | Path) -> Image.Image:
    """The 8-bit (mode "L") image of a slice reference (see :func:`slice_ref`)."""
    parsed = parse_slice_ref(source)
    if parsed is None:
        raise ValueError(f"{source} is not a slice reference (<path>#axis<a>:slice<k>)")
    path, series, axis, index = parsed
    volume = load_volume(path, series)
    try:
        return Image.fromarray(volume.slice(axis, index))
    except ValueError as err:
        raise ImageReadError(str(err)) from err
