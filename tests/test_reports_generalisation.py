import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import (
    accuracy_coverage_curve,
    compare_routes,
    conformal_evaluation,
    evaluate_predictions,
    ood_auroc,
    simulate_predictions,
)
from hierarchy.reports.figures import (
    dataset_confusion_figure,
    generalisation_figure,
    missed_gallery_figure,
    ood_coverage_figure,
    roc_figure,
)
from hierarchy.reports.style import save_figure
from hierarchy.reports.tables import (
    conformal_table,
    dataset_comparison_table,
    error_table,
    generalisation_table,
    ood_coverage_table,
    ood_table,
    per_class_recall_table,
)

ROUTES = ("flat", "hierarchical")


@pytest.fixture(scope="module")
def predictions():
    return {"BRISC test": simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES,
                                               routes=ROUTES, skill=4.0, seed=0),
            "external": simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES,
                                             routes=ROUTES, skill=1.5, seed=1),
            "gamma 0.8": simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES,
                                              routes=("flat",), skill=3.0, seed=2)}


@pytest.fixture(scope="module")
def results(predictions):
    return {name: evaluate_predictions(pred, n_bootstrap=20) for name, pred in predictions.items()}


def tiny_table() -> pd.DataFrame:
    """Two images, two routes; the flat route gets image b wrong, the hierarchical one both right."""
    rows = [("a", "flat", "glioma", "glioma", [0.7, 0.1, 0.1, 0.1]),
            ("b", "flat", "no_tumor", "glioma", [0.6, 0.1, 0.1, 0.2]),
            ("a", "hierarchical", "glioma", "glioma", [0.9, 0.05, 0.05, 0.0]),
            ("b", "hierarchical", "no_tumor", "no_tumor", [0.1, 0.1, 0.1, 0.7]),
            ("c", "hierarchical", "pituitary", "meningioma", [0.0, 0.9, 0.1, 0.0])]
    frame = pd.DataFrame([{"id": i, "route": r, "true_label": t, "pred_label": p,
                           **{f"prob_{c}": v for c, v in zip(
                               ("glioma", "meningioma", "pituitary", "no_tumor"), probs, strict=True)}}
                          for i, r, t, p, probs in rows])
    return frame


def test_generalisation_figure_has_one_errorbar_per_route_and_panel(results, tmp_path):
    fig = generalisation_figure(results)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == len(ROUTES)
    left = fig.axes[0]
    heights = dict(zip([t.get_text() for t in left.get_yticklabels()], left.get_yticks(), strict=True))
    assert heights["BRISC test"] > heights["external"] > heights["gamma 0.8"]  # top to bottom
    # the flat route's accuracy dots sit at the datasets' accuracies, top to bottom
    x = fig.axes[0].containers[0][0].get_xdata()
    expected = [results[d]["routes"]["flat"]["headline"]["accuracy"]["value"] for d in results]
    np.testing.assert_allclose(x, expected)
    # the {dataset: {route: result}} shape draws the same figure; a route a dataset lacks is NaN
    same = generalisation_figure({d: r["routes"] for d, r in results.items()})
    assert np.isnan(same.axes[0].containers[1][0].get_xdata()[2])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(ROUTES)
    # a percentile interval that does not reach its point estimate draws a zero-length whisker
    odd = {"x": {"flat": {"n": 1, "headline": {"accuracy": {"value": 0.5, "ci": [0.6, 0.7]}},
                          "false_negatives": {"detection": {"false_negative_rate": {
                              "value": None, "ci": [None, None]}}}}}}
    assert len(generalisation_figure(odd).axes) == 2
    png, pdf = save_figure(fig, tmp_path, "generalisation")
    assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
    with pytest.raises(ValueError, match="in no dataset"):
        generalisation_figure(results, routes=["soft"])


def test_roc_figure_overlays_routes_per_class_with_an_inset(results, tmp_path):
    metrics = results["BRISC test"]
    fig = roc_figure(metrics)
    assert [ax.get_title() for ax in fig.axes] == list(metrics["classes"])
    for ax in fig.axes:
        assert len(ax.get_lines()) == len(ROUTES) + 1  # routes and the chance diagonal
        (inset,) = ax.child_axes  # the zoomed top-left corner
        assert len(inset.get_lines()) == len(ROUTES)
        assert inset.get_xlim() == (0, 0.1) and inset.get_ylim()[0] == 0.9
        assert [t.get_text().split()[0] for t in ax.get_legend().get_texts()] == list(ROUTES)
    assert save_figure(fig, tmp_path, "roc")[0].stat().st_size > 1000
    only_flat = roc_figure(metrics, routes=["flat"])
    assert len(only_flat.axes[0].get_lines()) == 2


def test_dataset_confusion_grid(results, tmp_path):
    fig = dataset_confusion_figure({k: results[k] for k in ("external", "gamma 0.8")})
    assert len(fig.axes) == 2 * len(ROUTES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["external: flat", "external: hierarchical"]
    assert not fig.axes[3].axison  # gamma 0.8 has no hierarchical route
    assert save_figure(fig, tmp_path, "confusion_external")[0].stat().st_size > 1000


def test_generalisation_and_recall_tables(results):
    table = generalisation_table(results)
    assert list(table.columns) == ["dataset", "route", "n", "accuracy", "accuracy_ci_low",
                                   "accuracy_ci_high", "false_negative_rate",
                                   "false_negative_rate_ci_low", "false_negative_rate_ci_high"]
    assert len(table) == 5
    row = table[(table["dataset"] == "external") & (table["route"] == "flat")].iloc[0]
    detection = results["external"]["routes"]["flat"]["false_negatives"]["detection"]
    assert row["false_negative_rate"] == detection["false_negative_rate"]["value"]
    recall = per_class_recall_table({"external": results["external"]})
    assert list(recall.columns) == ["dataset", "route", "class", "support", "recall",
                                    "recall_ci_low", "recall_ci_high"]
    assert len(recall) == len(ROUTES) * 4 and (recall["support"] == 20).all()


def test_error_table_on_a_hand_made_table():
    table = error_table(tiny_table(), ood_scores={"a": 1.0, "b": 7.5, "c": 3.0})
    assert list(table.columns) == ["id", "route", "true_label", "pred_label", "confidence",
                                   "prob_glioma", "prob_meningioma", "prob_pituitary",
                                   "prob_no_tumor", "ood_score"]
    assert table[["id", "route"]].values.tolist() == [["b", "flat"], ["c", "hierarchical"]]
    assert table["confidence"].tolist() == [0.6, 0.9]
    assert table["ood_score"].tolist() == [7.5, 3.0]
    assert "ood_score" not in error_table(tiny_table()).columns
    with pytest.raises(ValueError, match="lacks 1 misclassified ids"):
        error_table(tiny_table(), ood_scores={"b": 1.0})
    # the error table feeds the existing image gallery (no images here: nothing to draw)
    assert missed_gallery_figure(table.assign(path="/nonexistent.png")) is None


def test_dataset_comparison_table_gives_mcnemar_per_dataset(predictions):
    comparisons = {name: compare_routes(pred, "flat", "hierarchical", n_bootstrap=20)
                   for name, pred in predictions.items() if name != "gamma 0.8"}
    table = dataset_comparison_table(comparisons)
    assert table.columns[:4].tolist() == ["dataset", "route_a", "route_b", "n"]
    assert table["dataset"].tolist() == ["BRISC test", "external"]
    assert table["mcnemar_p"].tolist() == [c["mcnemar"]["p_value"] for c in comparisons.values()]


def test_ood_and_conformal_tables_and_coverage_figure(predictions, tmp_path):
    rng = np.random.default_rng(0)
    aurocs = {"external": ood_auroc(rng.normal(size=50), rng.normal(3, size=40), n_bootstrap=20)}
    table = ood_table(aurocs)
    assert table.columns.tolist() == ["dataset", "n_in", "n_out", "ood_auroc", "ood_auroc_ci_low",
                                      "ood_auroc_ci_high"]
    assert table.loc[0, "ood_auroc"] == aurocs["external"]["value"]

    external = predictions["external"]
    curves = {"external": {}}
    for route in ROUTES:
        rows = external[external["route"] == route]
        curves["external"][route] = accuracy_coverage_curve(
            (rows["true_label"] == rows["pred_label"]).to_numpy(), rng.random(len(rows)),
            coverages=[0.5, 0.75, 1.0])
    coverage = ood_coverage_table(curves)
    assert len(coverage) == 6 and coverage["n_kept"].tolist()[:3] == [40, 60, 80]
    fig = ood_coverage_figure(curves)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == len(ROUTES)
    assert save_figure(fig, tmp_path, "ood_coverage")[0].stat().st_size > 1000

    conformal = {"external": conformal_evaluation(predictions["BRISC test"], external, alpha=0.1)}
    table = conformal_table(conformal)
    assert table.columns.tolist() == ["dataset", "route", "n", "target_coverage", "coverage",
                                      "coverage_ci_low", "coverage_ci_high", "mean_set_size",
                                      "empty", "singleton"]
    assert table["target_coverage"].tolist() == pytest.approx([0.9, 0.9])
    assert table["mean_set_size"].tolist() == [
        conformal["external"]["routes"][r]["mean_set_size"] for r in ROUTES]
