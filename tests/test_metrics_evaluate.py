import json

import numpy as np
import pytest
from sklearn import metrics as skm

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import (
    aggregate_seeds,
    compare_routes,
    evaluate_predictions,
    simulate_predictions,
)
from hierarchy.predictions import ROUTES, prob_column


@pytest.fixture(scope="module")
def pred():
    return simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, refer_below=0.6, seed=1)


@pytest.fixture(scope="module")
def result(pred):
    return evaluate_predictions(pred, n_bootstrap=30, seed=0)


def test_structure_is_json_ready_and_covers_every_route(result):
    json.dumps(result, allow_nan=False)
    assert list(result["routes"]) == list(ROUTES)
    flat, hier = result["routes"]["flat"], result["routes"]["hierarchical"]
    assert set(flat["headline"]) == {"accuracy", "balanced_accuracy", "macro_f1", "macro_auc",
                                     "micro_auc"}
    for value in flat["headline"].values():
        assert value["ci"][0] <= value["value"] <= value["ci"][1]
    assert [row["class"] for row in flat["per_class"]] == result["classes"]
    assert flat["plane"] is None and hier["plane"]["accuracy"]["n"] == 80
    assert set(hier["per_plane"]) <= {"axial", "coronal", "sagittal"}
    assert sum(p["n"] for p in hier["per_plane"].values()) == 80
    assert hier["false_negatives"]["routing"]["n"] == 80


def test_headline_matches_sklearn_on_route_rows(pred, result):
    rows = pred[pred["route"] == "soft"]
    accuracy = skm.accuracy_score(rows["true_label"], rows["pred_label"])
    assert result["routes"]["soft"]["headline"]["accuracy"]["value"] == pytest.approx(accuracy)
    counts = skm.confusion_matrix(rows["true_label"], rows["pred_label"], labels=result["classes"])
    assert result["routes"]["soft"]["confusion"]["counts"] == counts.tolist()


def test_coverage_reported_when_rows_are_referred(pred, result):
    coverage = result["routes"]["flat"]["coverage"]
    rows = pred[pred["route"] == "flat"]
    assert coverage["n_referred"] == int(rows["referred"].sum()) > 0
    kept = rows[~rows["referred"]]
    assert coverage["accuracy_accepted"]["value"] == pytest.approx(
        np.mean(kept["true_label"] == kept["pred_label"]))
    assert coverage["curve"]["coverage"][-1] == 1.0
    unreferred = evaluate_predictions(pred.assign(referred=False), n_bootstrap=5)
    assert unreferred["routes"]["flat"]["coverage"] is None


def test_bad_tables_raise_clear_errors(pred):
    with pytest.raises(KeyError, match="true_label"):
        evaluate_predictions(pred.drop(columns="true_label"), n_bootstrap=5)
    wrong = pred.copy()
    wrong.loc[0, "pred_label"] = "glioma" if wrong.loc[0, "pred_label"] != "glioma" else "pituitary"
    with pytest.raises(ValueError, match="most probable"):
        evaluate_predictions(wrong, n_bootstrap=5)
    with pytest.raises(ValueError, match="not among"):
        evaluate_predictions(pred.replace({"true_label": {"glioma": "astro"}}), n_bootstrap=5)
    with pytest.raises(ValueError, match="duplicated"):
        evaluate_predictions(pred.iloc[[0, 0]], n_bootstrap=5)


def test_compare_routes(pred):
    result = compare_routes(pred, "flat", "oracle", n_bootstrap=30)
    flat, oracle = (pred[pred["route"] == r].set_index("id") for r in ("flat", "oracle"))
    right_flat = flat["pred_label"] == flat["true_label"]
    right_oracle = (oracle["pred_label"] == oracle["true_label"]).loc[flat.index]
    assert result["mcnemar"]["b"] == int((right_flat & ~right_oracle).sum())
    assert result["accuracy"]["difference"] == pytest.approx(right_oracle.mean() - right_flat.mean())
    assert set(result) >= {"macro_f1", "macro_auc"}
    with pytest.raises(ValueError, match="same images"):
        compare_routes(pred.drop(pred[pred["route"] == "flat"].index[:1]), "flat", "oracle",
                       n_bootstrap=5)


def test_aggregate_seeds(result):
    other = json.loads(json.dumps(result))
    other["routes"]["flat"]["headline"]["accuracy"]["value"] = 0.5
    summary = aggregate_seeds([result, other])
    accuracy = summary["routes"]["flat"]["accuracy"]
    first = result["routes"]["flat"]["headline"]["accuracy"]["value"]
    assert accuracy["values"] == [first, 0.5]
    assert accuracy["mean"] == pytest.approx((first + 0.5) / 2)
    assert accuracy["std"] == pytest.approx(np.std([first, 0.5], ddof=1))
    assert aggregate_seeds([result])["routes"]["flat"]["accuracy"]["std"] is None
    with pytest.raises(ValueError):
        aggregate_seeds([])


def test_probabilities_a_few_ulps_off_one_are_accepted():
    pred = simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",), seed=1)
    column = prob_column("glioma")
    top = pred[column].idxmax()
    pred.loc[top, column] += 1e-7  # as after a float32 softmax
    result = evaluate_predictions(pred, n_bootstrap=20)
    assert 0.0 <= result["routes"]["flat"]["calibration"]["brier"] <= 2.0


def test_plane_confusion_lists_each_plane_once(pred):
    hier = pred[pred["route"] == "hierarchical"].copy()
    plane = evaluate_predictions(hier, n_bootstrap=5)["routes"]["hierarchical"]["plane"]["confusion"]
    assert plane["labels"] == ["axial", "coronal", "sagittal"]
    hier.loc[hier.index[0], "pred_plane"] = "oblique"  # a predicted plane outside PLANES is added once
    plane = evaluate_predictions(hier, n_bootstrap=5)["routes"]["hierarchical"]["plane"]["confusion"]
    assert plane["labels"] == ["axial", "coronal", "sagittal", "oblique"]
    assert np.array(plane["counts"]).sum() == len(hier) and np.array(plane["counts"])[:, 3].sum() == 1
