import numpy as np
import pandas as pd
import pytest

from hierarchy.labels import (
    PLANES,
    TUMOR_CLASSES,
    normalize_plane,
    normalize_tumor_label,
    to_indices,
)


@pytest.mark.parametrize("raw,expected", [("notumor", "no_tumor"), ("glioma_tumor", "glioma"),
                                          ("Meningioma", "meningioma"), ("pi", "pituitary"),
                                          ("no_tumor", "no_tumor")])
def test_tumor_aliases_map_to_canonical(raw, expected):
    assert normalize_tumor_label(raw) == expected
    assert expected in TUMOR_CLASSES


def test_unknown_class_names_the_source():
    with pytest.raises(ValueError, match="astrocytoma.*in data/x"):
        normalize_tumor_label("astrocytoma", source="data/x")


def test_planes():
    assert normalize_plane("ax") == "axial" and normalize_plane("SAG") == "sagittal"
    assert normalize_plane("") is None and normalize_plane(None) is None
    assert set(PLANES) == {"axial", "coronal", "sagittal"}
    with pytest.raises(ValueError, match="oblique"):
        normalize_plane("oblique")


def test_to_indices_maps_names_to_positions_and_names_unknown_values():
    assert to_indices(["b", "a", "b"], ["a", "b"]).tolist() == [1, 0, 1]
    assert to_indices(pd.Series(["a", None, np.nan]), ["a"], allow_missing=True).tolist() == [0, -1, -1]
    with pytest.raises(ValueError, match=r"plane values \['oblique'\] are not among .* \(first in b\.png\)"):
        to_indices(["axial", "oblique"], PLANES, what="plane", sources=["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"\['None'\] are not among"):
        to_indices(["a", None], ["a"])
