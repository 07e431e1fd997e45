"""DICOM/NIfTI slices through a tiny Router: header planes in the prediction table, the header route, the
series-level prediction, and ``hierarchy predict`` (its series table and its warning when the plane classifier
disagrees with the header)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hierarchy.cli import main
from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.predictions import prob_column, series_predictions
from hierarchy.routing import Router

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch", "preprocess": PreprocessConfig(image_size=48)}


@pytest.fixture(scope="module")
def router(synthetic_root: Path) -> Router:
    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    return Router(mode="frozen", **TINY).fit(train, val)


@pytest.fixture(scope="module")
def volume_path(tmp_path_factory) -> Path:
    """A 4 mm ellipsoid 'head' stored axially (RAS+), 12 slices."""
    shape = (40, 48, 12)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    data = np.where((grid ** 2).sum(axis=0) < 0.9, 120.0, 5.0).astype(np.float32)
    path = tmp_path_factory.mktemp("nifti") / "head.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), path)
    return path


def test_prediction_tables_carry_the_header_plane_beside_the_classifiers(router, volume_path):
    table = router.predict_routes(volume_path, ("hierarchical", "header"))
    assert len(table) == 2 * 12
    assert set(table["header_plane"]) == {"axial"} and set(table["plane_source"]) == {"header"}
    assert table["pred_plane"].notna().all() and table["slice_position"].notna().all()
    assert router.available_routes(volume_path)[-1] == "header"


def test_the_header_route_uses_the_expert_of_the_header_plane(router, volume_path):
    table = router.predict_routes(volume_path, ("header", "soft"))
    header = table[table["route"] == "header"]
    assert set(header["expert"]) == {"axial"}
    # it is the axial expert's own output: the soft route mixes it with the others by plane probability
    proba = router.experts_["axial"].predict_proba([str(p) for p in header["path"]])
    np.testing.assert_allclose(header[[prob_column(c) for c in router.classes_]].to_numpy(), proba, atol=1e-5)


def test_the_header_route_needs_header_planes(router, synthetic_root):
    frame = index_dataset(synthetic_root)
    assert "header" not in router.available_routes(frame)
    with pytest.raises(ValueError, match="header route needs DICOM or NIfTI"):
        router.predict_routes(frame, ("header",))


def test_the_series_prediction_is_the_mean_over_brain_slices(router, volume_path):
    table = router.predict_routes(volume_path, ("hierarchical",))
    series = series_predictions(table, router.classes_)
    assert len(series) == 1
    row = series.iloc[0]
    brain = table[table["brain"].astype(bool)]
    assert 0 < row["n_used"] == len(brain) < row["n_slices"] == 12
    columns = [prob_column(c) for c in router.classes_]
    np.testing.assert_allclose(row[columns].to_numpy(float), brain[columns].to_numpy().mean(axis=0))
    assert row["pred_label"] == router.classes_[int(np.argmax(row[columns].to_numpy(float)))]
    driving = row["driving_slices"].split(";")
    assert len(driving) == 3 and set(driving) <= set(brain["id"])
    top = brain.nlargest(3, prob_column(row["pred_label"]))["id"].tolist()
    assert driving == top
    assert row["header_plane"] == "axial" and 0 <= row["plane_agreement"] <= 1


def test_series_predictions_leave_plain_images_out():
    table = pd.DataFrame({"id": ["a", "b"], "route": "flat", "pred_label": "glioma", "prob_glioma": [0.6, 0.2],
                          "prob_meningioma": [0.4, 0.8], "series": [None, "s"], "brain": [None, True]})
    series = series_predictions(table, ("glioma", "meningioma"))
    assert series["series"].tolist() == ["s"] and series["pred_label"].tolist() == ["meningioma"]
    assert series_predictions(table.drop(columns="series"), ("glioma", "meningioma")).empty


def test_predict_prints_the_series_and_warns_when_the_planes_disagree(router, volume_path, tmp_path, capsys):
    run = tmp_path / "run"
    router.save(run)
    assert main(["predict", "--model", str(run), str(volume_path)]) == 0
    captured = capsys.readouterr()
    assert "series (mean probability over the brain slices" in captured.out
    assert "header_plane" in captured.out
    table = router.predict_routes(volume_path, ("hierarchical",))
    disagree = int((table["pred_plane"] != table["header_plane"]).sum())
    if disagree:
        assert f"disagrees with the file header on {disagree} of 12 slices" in captured.err
    else:
        assert "disagrees" not in captured.err
    assert main(["predict", "--model", str(run), str(volume_path), "--json", "--route", "header"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r.get("level") == "series" for r in rows) == 1 and len(rows) == 13
