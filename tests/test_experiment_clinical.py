"""The clinically read sections: tumour-vs-normal operating points and decision curves, and confusion matrices
normalised by true and by predicted class, on small prediction tables with known numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierarchy.experiment.clinical import (
    assess_clinical,
    clinical_sections,
    clinical_summary,
    confusion_table,
    operating_point_table,
)
from hierarchy.experiment.generalisation import assess_generalisation
from hierarchy.labels import TUMOR_CLASSES
from hierarchy.metrics import evaluate_predictions
from hierarchy.reports.writer import ReportFiles

NORMAL_SCORES = [0.1, 0.2, 0.3, 0.4, 0.9]
TUMOUR_SCORES = [0.5, 0.6, 0.7, 0.8, 0.95]


def ten_rows(route: str, prefix: str = "") -> pd.DataFrame:
    """Five gliomas and five normals whose tumour scores ``1 - p(no_tumor)`` are the lists above; the rest of
    each image's probability sits on glioma (so the normal scored 0.9 is called glioma)."""
    scores = np.array([*TUMOUR_SCORES, *NORMAL_SCORES])
    proba = np.zeros((10, len(TUMOR_CLASSES)))
    proba[:, TUMOR_CLASSES.index("glioma")] = scores
    proba[:, TUMOR_CLASSES.index("no_tumor")] = 1 - scores
    frame = pd.DataFrame({"id": [f"{prefix}img{i}" for i in range(10)], "route": route,
                          "pred_label": np.asarray(TUMOR_CLASSES, dtype=object)[proba.argmax(axis=1)],
                          "true_label": ["glioma"] * 5 + ["no_tumor"] * 5, "expert": "flat", "referred": False})
    for k, name in enumerate(TUMOR_CLASSES):
        frame[f"prob_{name}"] = proba[:, k]
    return frame


@pytest.fixture(scope="module")
def results():
    test = pd.concat([ten_rows("flat"), ten_rows("hierarchical")], ignore_index=True)
    external = ten_rows("hierarchical", prefix="ext/")
    record = {"n_indexed": 10, "n_removed_as_training_duplicates": 0, "n_evaluated": 10}
    generalisation = assess_generalisation(test, evaluate_predictions(test, n_bootstrap=20), test_label="test",
                                           validation=None, external={"second": (record, external)},
                                           perturbed={}, n_bootstrap=20, seed=0)
    return assess_clinical(generalisation, test, n_bootstrap=50, seed=0)


def test_operating_points_on_ten_images(results):
    table = operating_point_table(results).set_index(["dataset", "route"])
    assert list(table.index) == [("test", "flat"), ("test", "hierarchical"), ("second", "hierarchical")]
    row = table.loc[("test", "hierarchical")]
    assert (row["n_tumour"], row["n_normal"]) == (5, 5)
    # specificity >= 95% needs all five normals below the threshold (0.9): one tumour (0.95) lies above it
    assert row["sensitivity_at_specificity_0.95"] == pytest.approx(0.2)
    assert row["sensitivity_at_specificity_0.99"] == pytest.approx(0.2)
    # sensitivity >= 95% needs every tumour (threshold 0.5): four of five normals lie below it
    assert row["specificity_at_sensitivity_0.95"] == pytest.approx(0.8)
    assert row["specificity_at_sensitivity_0.95_ci_low"] <= 0.8 <= row["specificity_at_sensitivity_0.95_ci_high"]
    reading = results.readings["test"]["hierarchical"]
    assert reading["specificity_at_sensitivity"]["0.95"]["threshold"] == pytest.approx(0.5)
    summary = clinical_summary(results)
    assert summary["tumour_vs_normal"]["second"]["hierarchical"]["sensitivity_at_specificity"]["0.95"]["value"] \
        == pytest.approx(0.2)
    # net benefit at p_t = 0.5: TP 5 (all tumours score >= 0.5), FP 1 (the normal at 0.9), odds 1
    assert summary["tumour_vs_normal"]["test"]["flat"]["net_benefit"]["0.5"]["model"] == pytest.approx(0.4)


def test_confusion_normalised_by_predicted_class_sums_to_one_per_column(results):
    table = confusion_table(results)
    columns = table.groupby(["dataset", "route", "predicted"])
    sums = columns["of_predicted_class"].sum()[columns["n"].sum() > 0]
    assert np.allclose(sums, 1.0)
    rows = table.groupby(["dataset", "route", "true"])
    assert np.allclose(rows["of_true_class"].sum()[rows["n"].sum() > 0], 1.0)
    cell = table.set_index(["dataset", "route", "true", "predicted"]).loc[("second", "hierarchical", "no_tumor",
                                                                          "glioma")]
    # one normal called glioma: 1/5 of the normals, 1/6 of the glioma calls
    assert (cell["n"], cell["of_true_class"], cell["of_predicted_class"]) == (1, pytest.approx(0.2),
                                                                             pytest.approx(1 / 6))


def test_sections_render_tables_and_figures(results, tmp_path):
    files = ReportFiles()
    (clinical_title, clinical), (confusion_title, confusion) = clinical_sections(results, files)
    assert "sensitivity_at_specificity_0.95" in clinical and "| 0.200 \\[" in clinical
    assert "figures/decision_curve.png" in clinical
    assert "1 (20% / 17%)" in confusion  # count (share of true class / share of predicted class)
    assert "**second** (hierarchical)" in confusion
    files.write(tmp_path)
    for name in ("tables/tumour_vs_normal.csv", "tables/tumour_vs_normal_thresholds.csv",
                 "tables/decision_curve.csv", "tables/confusion_all.csv", "figures/decision_curve.pdf",
                 "figures/confusion_hierarchical_both.png"):
        assert (tmp_path / name).is_file(), name
    written = pd.read_csv(tmp_path / "tables/decision_curve.csv")
    assert set(written["threshold"].round(2)) == {round(t, 2) for t in np.arange(0.05, 1.0, 0.05)}


def test_a_dataset_without_normals_has_no_reading():
    tumours = ten_rows("hierarchical").iloc[:5]
    generalisation = assess_generalisation(tumours, evaluate_predictions(tumours, n_bootstrap=5), test_label="t",
                                           validation=None, external={}, perturbed={}, n_bootstrap=5, seed=0)
    results = assess_clinical(generalisation, tumours, n_bootstrap=5, seed=0)
    assert results.readings == {"t": {"hierarchical": None}}
    text, _ = (body for _, body in clinical_sections(results, ReportFiles()))
    assert "no tumour-vs-normal reading" in text
