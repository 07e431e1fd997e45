"""Reading NIfTI volumes (nibabel) into :class:`~hierarchy.data.volume.Volume`.

The image is reoriented with ``nibabel.as_closest_canonical`` (RAS+) before anything is sliced; its values
are nibabel's scaled ``get_fdata`` (scl_slope and scl_inter applied), mapped to 8 bits by
:func:`~hierarchy.data.volume.to_uint8` with the 0.5th-99.5th percentiles of the whole volume (NIfTI has no
display window). A 4-D file must be cut to one volume first. nibabel is imported only when a file is read.
"""

from __future__ import annotations

from pathlib import Path

from hierarchy.data.read_errors import ImageReadError
from hierarchy.data.volume import Volume, to_uint8


def read_nifti(path: str | Path) -> Volume:
    """The canonical 8-bit :class:`Volume` of a NIfTI file; ``ImageReadError`` naming the file otherwise."""
    import nibabel as nib  # noqa: PLC0415  (only when a NIfTI file is read)

    path = Path(path)
    try:
        image = nib.load(path)
        if len(image.shape) == 4 and image.shape[3] == 1:
            image = image.slicer[..., 0]
        if len(image.shape) != 3:
            raise ValueError(f"expected a 3-D volume, got shape {image.shape}; select one volume first")
        acquired_axis = int(nib.io_orientation(image.affine)[2, 0])
        image = nib.as_closest_canonical(image)
        values = image.get_fdata()
    except ImageReadError:
        raise
    except Exception as err:  # nibabel raises its own and numpy errors for malformed files
        raise ImageReadError(f"{path}: cannot read NIfTI volume ({type(err).__name__}: {err})") from err
    description = bytes(image.header["descrip"]).split(b"\0")[0].decode("latin-1").strip()
    info = {"format": "nifti", "modality": "", "series_description": description, "image_type": "",
            "photometric": "", "series_uid": "", "files": 1, "acquired_axis": acquired_axis, "window": "percentiles 0.5-99.5"}
    return Volume(to_uint8(values), image.affine, str(path), info)
