"""Every report figure type, drawn on small data, as a journal would print it: declared width, fonts of at
least 7 pt at that width, no legend over any panel, and a 300-dpi PNG of exactly that size."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import evaluate_predictions, simulate_predictions
from hierarchy.metrics.operating_points import decision_curve
from hierarchy.metrics.shift import accuracy_coverage_curve
from hierarchy.reports import figures
from hierarchy.reports.style import (
    DOUBLE_COLUMN,
    MIN_FONT_PT,
    PNG_DPI,
    SINGLE_COLUMN,
    figure_bytes,
    line_styles,
)

ROUTES4 = ["flat", "hierarchical", "soft", "ensemble"]


@pytest.fixture(scope="module")
def metrics():
    pred = simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, skill=1.5, refer_below=0.5, seed=3)
    return evaluate_predictions(pred, n_bootstrap=10)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(7):
        path = folder / f"brisc2025_test_{i:05d}_gl_ax_t1.jpg"
        Image.fromarray((np.random.default_rng(i).random((40, 48)) * 255).astype("uint8")).save(path)
        paths.append(str(path))
    return paths


def _log(aux: bool) -> pd.DataFrame:
    frame = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.2, 0.8, 0.6, 0.5],
                          "train_accuracy": [0.5, 0.7, 0.8, 0.85], "val_loss": [1.1, 0.9, 0.7, 0.7],
                          "val_accuracy": [0.45, 0.65, 0.75, 0.8]})
    return frame.assign(val_aux_loss=[0.9, 0.5, 0.3, 0.2], val_aux_accuracy=[0.6, 0.8, 0.9, 0.95]) if aux else frame


def _figures(metrics, images):
    """(name, figure) of every figure type the reports draw."""
    pred = simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES, seed=5)
    rng = np.random.default_rng(0)
    ood = {"external": {r: accuracy_coverage_curve((rows["true_label"] == rows["pred_label"]).to_numpy(),
                                                   rng.random(len(rows)))
                        for r, rows in pred[pred["route"].isin(["flat", "hierarchical"])].groupby("route")}}
    datasets = {"test": metrics, "external": metrics, "test, jpeg q75": metrics}
    missed = pd.DataFrame({"id": [f"glioma/{p.rsplit('/', 1)[-1]}" for p in images], "path": images,
                           "true_label": "glioma", "pred_label": "no_tumor", "route": "hierarchical"})
    mask = np.pad(np.ones((10, 12), bool), ((20, 18), (16, 20)))
    examples = [{"id": f"glioma/{p.rsplit('/', 1)[-1]}", "label": "glioma", "image": rng.random((48, 48)),
                 "mask": mask, "maps": {"flat": rng.random((48, 48)), "hierarchical": rng.random((48, 48))},
                 "pred": {"flat": "glioma", "hierarchical": "meningioma" if k % 2 else "glioma"}}
                for k, p in enumerate(images[:6])]
    positive = np.arange(60) % 3 > 0
    curves = {r: decision_curve(positive, np.clip(positive * 0.4 + rng.random(60) * 0.6, 0.001, 0.999))
              for r in [*ROUTES4, "flat_seeds"]}
    return [
        ("decision_curve", figures.decision_curve_figure({"test": curves, "secondary": {"flat": curves["flat"]}})),
        ("decision_curve_one_panel", figures.decision_curve_figure({"test": {"flat": curves["flat"]}})),
        ("both_confusions", figures.both_confusions_figure(
            {name: metrics["routes"]["hierarchical"]["confusion"] for name in ("test", "secondary")})),
        ("attribution", figures.attribution_figure(examples, ["flat", "hierarchical"])),
        ("roc", figures.roc_figure(metrics, ROUTES4)),
        ("pr", figures.pr_figure(metrics, ROUTES4)),
        ("confusion", figures.confusion_figure(metrics)),
        ("confusion_one_route", figures.confusion_figure(metrics, ["flat"])),
        ("dataset_confusion_one_route", figures.dataset_confusion_figure({"secondary": metrics}, ["flat"])),
        ("plane_confusion", figures.plane_confusion_figure(metrics)),
        ("reliability", figures.reliability_figure(metrics)),
        ("coverage", figures.coverage_figure(metrics)),
        ("ood_coverage", figures.ood_coverage_figure(ood)),
        ("generalisation", figures.generalisation_figure(datasets)),
        ("dataset_confusion", figures.dataset_confusion_figure(datasets, ROUTES4)),
        ("training", figures.training_curves_figure(_log(aux=False), title="flat")),
        ("training_joint", figures.training_curves_figure(_log(aux=True), title="joint")),
        ("missed_gallery", figures.missed_gallery_figure(missed)),
    ]


def _legend_overlaps(fig, renderer) -> list[str]:
    """Each legend that overlaps a visible panel (or inset), or leaves the figure."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    panels = [a for ax in fig.axes if ax.get_visible() and ax.axison for a in (ax, *ax.child_axes)]
    problems = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        problems += [f"legend over panel {ax.get_title()!r}" for ax in panels
                     if box.overlaps(ax.get_window_extent(renderer))]
        if box.x0 < -1 or box.y0 < -1 or box.x1 > fig.bbox.x1 + 1 or box.y1 > fig.bbox.y1 + 1:
            problems.append("legend outside the figure")
    return problems


def _inside(box, frame, slack: float = 1.0) -> bool:
    return (box.x0 >= frame.x0 - slack and box.y0 >= frame.y0 - slack and box.x1 <= frame.x1 + slack
            and box.y1 <= frame.y1 + slack)


@pytest.mark.slow
def test_every_figure_prints_at_a_journal_width_with_readable_text_and_clear_legends(metrics, images):
    for name, fig in _figures(metrics, images):
        width, height = fig.get_size_inches()
        assert width in (SINGLE_COLUMN, DOUBLE_COLUMN) and height <= 9.5, (name, width, height)
        if name.endswith("one_route"):  # a lone matrix at page width filled a supplement page
            assert width == SINGLE_COLUMN, name
        fig.set_dpi(PNG_DPI)  # measured as printed
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        smallest = min(t.get_fontsize() for t in texts)
        assert smallest >= MIN_FONT_PT, (name, smallest, [t.get_text() for t in texts if t.get_fontsize() < 7][:3])
        assert _legend_overlaps(fig, renderer) == [], name
        labels = [t for ax in fig.axes if ax.get_visible()
                  for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text().strip()]
        clipped = [t.get_text() for t in labels if not _inside(t.get_window_extent(renderer), fig.bbox)]
        # a one-row grid of confusion matrices cut its titles off; the OOD coverage panel its y label
        assert clipped == [], (name, clipped[:3])
        assert fig.get_size_inches()[0] == width  # drawing did not resize it
        png, pdf = figure_bytes(fig)
        assert Image.open(io.BytesIO(png)).size[0] == round(width * PNG_DPI), name
        assert pdf[:4] == b"%PDF"


def test_lines_in_one_panel_differ_without_colour_and_stop_at_four():
    styles = line_styles(ROUTES4)
    assert len({(s["ls"], s["marker"]) for s in styles.values()}) == 4
    with pytest.raises(ValueError, match="at most 4"):
        line_styles([*ROUTES4, "oracle"])


def test_decision_curve_panels_hold_four_routes_and_the_reference_strategies():
    positive = np.arange(40) % 2 > 0
    curve = decision_curve(positive, np.where(positive, 0.8, 0.2))
    fig = figures.decision_curve_figure({"test": dict.fromkeys([*ROUTES4, "oracle"], curve)})
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2 and fig.get_size_inches()[0] == DOUBLE_COLUMN
    labels = [line.get_label() for line in panels[0].get_lines()]
    assert labels == [*ROUTES4, "treat all", "treat none"]
    assert panels[0].get_ylim()[1] == pytest.approx(0.5 * 1.08)  # prevalence plus a margin
    single = figures.decision_curve_figure({"test": {"flat": curve}})
    assert single.get_size_inches()[0] == SINGLE_COLUMN
    with pytest.raises(ValueError, match="no decision curves"):
        figures.decision_curve_figure({"test": {}})


def test_training_curves_use_whole_epochs_and_keep_the_plane_loss_apart():
    fig = figures.training_curves_figure(_log(aux=True))
    objective, loss, accuracy = fig.axes
    FigureCanvasAgg(fig).draw()
    ticks = [t for t in accuracy.get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert [line.get_label() for line in loss.get_lines()] == ["validation (tumour)", "validation (plane)"]
    assert len(objective.get_lines()) == 1  # the training objective is not drawn against a validation loss


def _confusion(counts: list[list[int]]) -> dict:
    c = np.array(counts)
    return {"counts": c.tolist(), "normalized": (c / c.sum(1, keepdims=True)).tolist(),
            "normalized_by_predicted": (c / c.sum(0, keepdims=True)).tolist(), "labels": list(TUMOR_CLASSES)}


def test_four_digit_counts_and_100_percent_fit_their_cells():
    """The cpu report's figshare_br35h matrix (1007 gliomas; 100% no-tumour recall on BRISC) ran over its cells
    when drawn four a row."""
    large = _confusion([[1007, 44, 9, 62], [0, 23, 2, 1], [0, 1, 107, 1], [37, 17, 6, 373]])
    exact = _confusion([[242, 4, 0, 8], [9, 294, 3, 0], [2, 3, 293, 2], [0, 0, 0, 140]])
    route_metrics = {"routes": {r: {"confusion": large} for r in ROUTES4}}
    for name, fig in (("both", figures.both_confusions_figure({"test": exact, "secondary": large})),
                      ("routes", figures.confusion_figure(route_metrics)),
                      ("datasets", figures.dataset_confusion_figure({"a": route_metrics, "b": route_metrics}))):
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        for ax in (a for a in fig.axes if a.images):
            cell = ax.images[0].get_window_extent(renderer).width / len(TUMOR_CLASSES)
            widest = max(t.get_window_extent(renderer).width for t in ax.texts)
            assert widest <= 0.9 * cell, (name, ax.get_title(), widest / cell)
