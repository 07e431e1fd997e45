"""Plane accuracy in summary.json: per route, and apart on images whose plane label the audit found ambiguous."""

from __future__ import annotations

import pandas as pd
import pytest

from hierarchy.experiment.summary import plane_summary


def _plane_metrics(accuracy: float, n: int) -> dict:
    return {"plane": {"n": n, "accuracy": {"value": accuracy, "ci": [accuracy - 0.1, accuracy + 0.1]}}}


def test_plane_errors_on_conflicting_labels_are_counted_apart():
    ids = ["a", "b", "c", "d", "e"]
    predictions = pd.concat([
        pd.DataFrame({"id": ids, "route": "hierarchical", "true_plane": ["axial", "coronal", "axial", "sagittal", "axial"],
                      "pred_plane": ["axial", "axial", "axial", "coronal", "axial"]}),
        pd.DataFrame({"id": ids, "route": "flat", "true_plane": "axial", "pred_plane": None}),
    ])
    metrics = {"routes": {"hierarchical": _plane_metrics(0.6, 5), "flat": {"plane": None}}}
    # "a" and "b" are one file labelled axial and coronal: one of the two labels is wrong whatever is predicted
    audit = {"exact_duplicates": [{"ids": ["a", "b"], "plane_conflict": True},
                                  {"ids": ["c", "e"], "plane_conflict": False}]}
    summary = plane_summary(metrics, predictions, audit)
    assert set(summary) == {"hierarchical"}  # the flat route predicts no plane
    route = summary["hierarchical"]
    assert (route["errors"], route["n_conflicting_labels"], route["errors_on_conflicts"]) == (2, 2, 1)
    assert route["accuracy"] == 0.6 and route["accuracy_unambiguous"] == pytest.approx(2 / 3)


def test_without_an_audit_every_label_counts():
    predictions = pd.DataFrame({"id": ["a", "b"], "route": "hierarchical", "true_plane": ["axial", "axial"],
                                "pred_plane": ["axial", "coronal"]})
    route = plane_summary({"routes": {"hierarchical": _plane_metrics(0.5, 2)}}, predictions, {})["hierarchical"]
    assert (route["errors"], route["errors_on_conflicts"], route["accuracy_unambiguous"]) == (1, 0, 0.5)
