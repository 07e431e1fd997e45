"""Reports and metrics take their label sets from the prediction table, not from BRISC's constants: a
3-class, 2-group table with no Router gives a full report (issue 23)."""

import json

import pytest

from hierarchy.cli import main
from hierarchy.labels import PLANES as BRISC_PLANES
from hierarchy.labels import TUMOR_CLASSES
from hierarchy.metrics import evaluate_predictions, simulate_predictions
from hierarchy.predictions import table_classes, table_planes
from hierarchy.reports import build_report

CLASSES = ("a", "b", "c")
PLANES = ("x", "y")


@pytest.fixture(scope="module")
def table():
    return simulate_predictions(30, routes=("flat", "hierarchical", "oracle"), refer_below=0.6, seed=1,
                                classes=CLASSES, planes=PLANES)


def test_label_sets_are_read_from_the_table_columns(table):
    assert table_classes(table) == list(CLASSES)
    assert table_planes(table) == list(PLANES)
    assert table_planes(table.drop(columns=["plane_prob_x", "plane_prob_y"])) == ["x", "y"]
    with pytest.raises(KeyError, match="prob_<class>"):
        table_classes(table[["id", "route"]])


def test_full_report_of_a_three_class_two_group_table(table, tmp_path):
    out = tmp_path / "report"
    path = build_report(table, out, n_bootstrap=10, seed=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(CLASSES) and metrics["planes"] == list(PLANES)
    hier = metrics["routes"]["hierarchical"]
    assert set(hier["per_plane"]) == set(PLANES)
    assert hier["plane"]["confusion"]["labels"] == list(PLANES)
    assert [row["class"] for row in hier["per_class"]] == list(CLASSES)
    assert hier["false_negatives"] is None  # no no_tumor class: nothing can be a missed tumour
    text = path.read_text()
    assert "true planes: x " in text and "no false-negative analysis" in text
    assert "axial" not in text and "glioma" not in text
    for name in ("figures/roc.png", "figures/confusion.png", "figures/plane_confusion.png",
                 "tables/per_plane.csv", "tables/comparisons.csv"):
        assert (out / name).stat().st_size > 0


def test_report_command_overrides_the_label_sets(table, tmp_path, capsys):
    csv = tmp_path / "pred.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "r"
    args = ["report", "--predictions", str(csv), "--out", str(out), "--n-bootstrap", "5"]
    assert main(args + ["--classes", "c,b,a", "--planes", "y,x"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["c", "b", "a"] and metrics["planes"] == ["y", "x"]
    assert main(args + ["--overwrite", "--classes", "a,b,z"]) == 2
    assert "not among the classes ['a', 'b', 'z']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--classes", "a,,b"])


def test_brisc_table_keeps_its_order_without_a_router():
    table = simulate_predictions(24, classes=TUMOR_CLASSES, planes=BRISC_PLANES, routes=("hierarchical",), seed=0)
    metrics = evaluate_predictions(table, n_bootstrap=5)
    assert metrics["classes"] == ["glioma", "meningioma", "pituitary", "no_tumor"]
    assert metrics["planes"] == ["axial", "coronal", "sagittal"]
