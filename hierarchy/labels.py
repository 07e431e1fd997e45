"""Canonical label sets and the normalisation of the names datasets use for them."""

from __future__ import annotations

TUMOR_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "pituitary", "no_tumor")
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
NO_TUMOR = "no_tumor"

_TUMOR_ALIASES = {
    "glioma": "glioma",
    "glioma_tumor": "glioma",
    "gl": "glioma",
    "meningioma": "meningioma",
    "meningioma_tumor": "meningioma",
    "me": "meningioma",
    "pituitary": "pituitary",
    "pituitary_tumor": "pituitary",
    "pi": "pituitary",
    "no_tumor": "no_tumor",
    "notumor": "no_tumor",
    "no": "no_tumor",
    "normal": "no_tumor",
    "healthy": "no_tumor",
}

_PLANE_ALIASES = {
    "axial": "axial",
    "ax": "axial",
    "transverse": "axial",
    "coronal": "coronal",
    "co": "coronal",
    "cor": "coronal",
    "sagittal": "sagittal",
    "sa": "sagittal",
    "sag": "sagittal",
}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def normalize_tumor_label(name: str, *, source: str | None = None) -> str:
    """Map a dataset's class name (``notumor``, ``glioma_tumor``, ``gl`` ...) to a canonical one.

    Raises ``ValueError`` naming ``source`` (a file or folder) when the name is unknown.
    """
    label = _TUMOR_ALIASES.get(_key(name))
    if label is None:
        where = f" in {source}" if source else ""
        raise ValueError(
            f"unknown tumour class {name!r}{where}; expected one of {sorted(_TUMOR_ALIASES)}"
        )
    return label


def normalize_plane(name: str | None, *, source: str | None = None) -> str | None:
    """Map a plane name (``ax``, ``Axial`` ...) to a canonical one; empty or missing gives None."""
    if name is None or (isinstance(name, float) and name != name) or str(name).strip() == "":
        return None
    plane = _PLANE_ALIASES.get(_key(name))
    if plane is None:
        where = f" in {source}" if source else ""
        raise ValueError(f"unknown plane {name!r}{where}; expected one of {sorted(_PLANE_ALIASES)}")
    return plane
