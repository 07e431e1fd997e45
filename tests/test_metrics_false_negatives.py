import pandas as pd
import pytest

from hierarchy.metrics import missed_tumours, per_class_misses, routing_errors, tumour_detection
from hierarchy.metrics.false_negatives import false_negative_analysis
from hierarchy.metrics.intervals import wilson_interval


@pytest.fixture
def table():
    rows = [  # id, true, pred, true plane, pred plane
        ("g1", "glioma", "glioma", "axial", "axial"),
        ("g2", "glioma", "no_tumor", "axial", "coronal"),
        ("g3", "glioma", "meningioma", "coronal", "coronal"),
        ("m1", "meningioma", "no_tumor", "sagittal", "sagittal"),
        ("m2", "meningioma", "meningioma", "sagittal", "axial"),
        ("p1", "pituitary", "pituitary", "sagittal", "sagittal"),
        ("n1", "no_tumor", "no_tumor", "axial", "axial"),
        ("n2", "no_tumor", "glioma", "axial", "axial"),
    ]
    frame = pd.DataFrame(rows, columns=["id", "true_label", "pred_label", "true_plane", "pred_plane"])
    frame["route"] = "hierarchical"
    for name in ("glioma", "meningioma", "pituitary", "no_tumor"):  # the table's classes
        frame[f"prob_{name}"] = 0.25
    return frame


def test_tumour_detection_counts_and_wilson(table):
    result = tumour_detection(table)
    assert result["n_tumours"] == 6 and result["n_missed"] == 2 and result["n_false_positives"] == 1
    assert result["sensitivity"]["value"] == pytest.approx(4 / 6)
    assert result["false_negative_rate"]["ci"] == pytest.approx(list(wilson_interval(2, 6)))


def test_per_class_misses(table):
    misses = per_class_misses(table).set_index("class")
    assert misses.loc["glioma", ["n", "missed_as_no_tumor", "other_tumour_class"]].tolist() == [3, 1, 1]
    assert misses.loc["meningioma", "missed_rate"] == pytest.approx(0.5)
    assert misses.loc["pituitary", "missed_as_no_tumor"] == 0
    assert "no_tumor" not in misses.index


def test_missed_tumour_table_lists_every_miss(table):
    missed = missed_tumours(table)
    assert missed["id"].tolist() == ["g2", "m1"]
    assert {"route", "true_plane", "pred_plane", "prob_glioma"} <= set(missed.columns)


def test_routing_errors_split_by_plane_correctness(table):
    result = routing_errors(table)
    assert result == {"n": 8, "n_wrong_plane": 2, "n_wrong_tumour": 4,
                      "wrong_plane_wrong_tumour": 1, "wrong_plane_right_tumour": 1,
                      "right_plane_wrong_tumour": 3}
    flat = table.assign(pred_plane=None)
    assert routing_errors(flat) is None
    assert false_negative_analysis(flat)["routing"] is None
