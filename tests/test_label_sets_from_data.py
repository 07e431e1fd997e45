"""Functions that take prediction tables read the label set from the table's prob_<class> columns, those that
take explained rows from their labels, and those that take arrays, simulate tables or build datasets require
it: a 3-class, 2-plane label set whose names are not BRISC's goes through each of them with no BRISC fallback
(issue 23)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import ImageDataset, PreprocessConfig
from hierarchy.experiment.explanations import attribution_examples
from hierarchy.experiment.seeds import seed_ensemble
from hierarchy.metrics.conformal import conformal_evaluation
from hierarchy.metrics.evaluate import labels_and_probabilities
from hierarchy.metrics.operating_points import clinical_reading, tumour_scores
from hierarchy.metrics.simulate import simulate_predictions
from hierarchy.reports.tables import error_table

CLASSES = ("cyst", "mass", "no_tumor")  # no_tumor: the normal class the tumour reading needs
OTHER = ("cyst", "lesion", "scar")
PLANES = ("front", "side")


def _table(seed: int, classes=CLASSES, routes=("flat", "hierarchical")):
    return simulate_predictions(90, routes=routes, skill=1.5, seed=seed, classes=classes, planes=PLANES)


def test_error_table_takes_the_classes_from_the_table():
    table = _table(0, OTHER)
    errors = error_table(table)
    assert [c for c in errors.columns if c.startswith("prob_")] == [f"prob_{c}" for c in OTHER]
    assert len(errors) == int((table["true_label"] != table["pred_label"]).sum()) > 0
    assert set(errors["true_label"]) <= set(OTHER)
    with pytest.raises(KeyError, match="prob_<class>"):
        error_table(table.drop(columns=[f"prob_{c}" for c in OTHER]))


def test_conformal_evaluation_takes_the_classes_from_the_table():
    result = conformal_evaluation(_table(0, OTHER), _table(1, OTHER), alpha=0.1)
    assert result["classes"] == list(OTHER)
    assert [row["class"] for row in result["routes"]["flat"]["per_class"]] == list(OTHER)
    assert sum(row["n"] for row in result["routes"]["flat"]["per_class"]) == 90
    assert result["routes"]["flat"]["n_calibration"] == 90


def test_seed_ensemble_takes_the_classes_from_the_first_seed():
    ensemble = seed_ensemble({0: _table(0, OTHER), 1: _table(1, OTHER)}, ["hierarchical"])
    assert set(ensemble["route"]) == {"hierarchical_seeds"}
    assert set(ensemble["pred_label"]) <= set(OTHER) and len(ensemble) == 90
    proba = ensemble[[f"prob_{c}" for c in OTHER]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (ensemble["pred_label"].to_numpy() == np.asarray(OTHER, dtype=object)[proba.argmax(axis=1)]).all()


def test_operating_points_require_the_classes():
    rows = _table(0)
    rows = rows[rows["route"] == "flat"]
    y, proba = labels_and_probabilities(rows, list(CLASSES))
    with pytest.raises(TypeError):
        tumour_scores(y, proba)  # no BRISC default for three-column probabilities
    tumour, score = tumour_scores(y, proba, CLASSES)
    np.testing.assert_array_equal(tumour, rows["true_label"].to_numpy() != "no_tumor")
    np.testing.assert_allclose(score, 1.0 - rows["prob_no_tumor"].to_numpy())
    with pytest.raises(TypeError):
        clinical_reading(y, proba)
    reading = clinical_reading(y, proba, CLASSES, n_resamples=20)
    assert reading["decision_curve"]["prevalence"] == pytest.approx(tumour.mean())


def test_simulated_tables_take_the_label_sets_they_are_given():
    with pytest.raises(TypeError):
        simulate_predictions(30)  # no BRISC default
    table = _table(0, OTHER)
    assert [c for c in table.columns if c.startswith("prob_")] == [f"prob_{c}" for c in OTHER]
    assert [c for c in table.columns if c.startswith("plane_prob_")] == [f"plane_prob_{p}" for p in PLANES]
    assert set(table["pred_label"]) <= set(OTHER) and set(table["true_plane"]) == set(PLANES)
    assert table.groupby("route")["true_label"].value_counts().tolist() == [30] * 6


def test_image_dataset_takes_the_classes_it_is_given(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(paths[-1])
    frame = pd.DataFrame({"path": [str(p) for p in paths], "label": ["scar", "cyst", "lesion", None],
                          "plane": ["front", "side", "side", None]})
    with pytest.raises(ValueError, match="pass classes="):
        ImageDataset(frame, PreprocessConfig(image_size=32))  # no BRISC default
    # training: each plane of the frame, none of them BRISC's, gets its augmentation
    dataset = ImageDataset(frame, PreprocessConfig(image_size=32, augment="robust"), classes=OTHER, train=True,
                           seed=0)
    assert dataset.targets.tolist() == [2, 0, 1, -1]
    items = [dataset[i] for i in range(len(frame))]
    assert [y for _, y in items] == [2, 0, 1, -1] and all(x.shape == (1, 32, 32) for x, _ in items)
    by_plane = ImageDataset(frame, PreprocessConfig(image_size=32), target="plane", classes=PLANES)
    assert by_plane.targets.tolist() == [0, 1, 1, -1]


def test_attribution_examples_take_the_classes_from_the_explained_rows(tmp_path):
    ids, labels = ["a", "b", "c", "d"], ["scar", "cyst", "lesion", "cyst"]
    rows = [{"id": i, "route": route, "true_label": label,
             "pred_label": "scar" if (i, route) == ("d", "hierarchical") else label}
            for i, label in zip(ids, labels, strict=True) for route in ("flat", "hierarchical")]
    arrays = tmp_path / "explanations.npz"
    blank = np.zeros((len(ids), 8, 8), dtype=np.float16)
    np.savez(arrays, ids=np.array(ids), images=blank, masks=blank > 0, maps_flat=blank, maps_hierarchical=blank)
    examples = attribution_examples({"rows": rows}, arrays)
    # per class in name order, the first image every route got right, then the first one some route got wrong
    assert [(e["label"], e["id"]) for e in examples] == [("cyst", "b"), ("cyst", "d"), ("lesion", "c"),
                                                         ("scar", "a")]
    assert examples[1]["pred"] == {"flat": "cyst", "hierarchical": "scar"}
