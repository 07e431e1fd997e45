"""Canonical label sets and the normalisation of the names datasets use for them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

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


def is_missing(value: object) -> bool:
    """True for None and NaN, the values a missing label or plane has in a data frame."""
    return value is None or (isinstance(value, float) and value != value)


def to_indices(values: Iterable, classes: Sequence[str], *, what: str = "label",
               sources: Sequence[str] | None = None, allow_missing: bool = False) -> np.ndarray:
    """The index of each value in ``classes``.

    Parameters
    ----------
    values
        Class names (e.g. a frame's ``label`` column).
    classes
        The ordered class names; a value's index is its position here.
    what
        What the values are, for the error message (``"label"``, ``"plane"``, ``"pred_label"`` ...).
    sources
        Where each value came from (e.g. image paths), parallel to ``values``; the error names the first
        source holding an unknown value.
    allow_missing
        Map missing values (None, NaN) to -1 instead of refusing them.

    Returns
    -------
    numpy.ndarray
        int64 indices, one per value.

    Raises
    ------
    ValueError
        A value is not in ``classes`` (or is missing without ``allow_missing``); the message lists them.
    """
    values = list(values)
    lookup = {name: i for i, name in enumerate(classes)}
    indices = np.array([-1 if allow_missing and is_missing(v) else lookup.get(v, -2) for v in values],
                       dtype=np.int64)
    bad = np.flatnonzero(indices == -2)
    if len(bad):
        unknown = sorted({str(values[i]) for i in bad})
        where = f" (first in {sources[bad[0]]})" if sources is not None else ""
        raise ValueError(f"{what} values {unknown} are not among the classes {list(classes)}{where}")
    return indices
