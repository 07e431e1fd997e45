"""Functions that take prediction tables read the label set from the table's prob_<class> columns, and those
that take arrays require it: a 3-class, 2-plane table whose names are not BRISC's goes through each of them
with no BRISC fallback (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest

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
