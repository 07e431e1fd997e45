"""Report figures drawn from an ``evaluate_predictions`` result (and training logs, missed images).

Every function returns a matplotlib Figure (or None when there is nothing to draw) at a declared print width
(``style.SINGLE_COLUMN`` or ``style.DOUBLE_COLUMN``) with no text under 7 pt and every legend outside the
panels; figures that overlay routes take at most ``style.MAX_LINES_PER_PANEL`` of them (``line_groups``
splits the rest into further figures). Save with ``hierarchy.reports.style.save_figure`` or a
``ReportWriter``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from hierarchy.data.image_io import ImageReadError, guarded_decode
from hierarchy.reports.style import (
    DOUBLE_COLUMN,
    MARKERS,
    SINGLE_COLUMN,
    color_for,
    grid,
    legend_below,
    line_groups,
    line_styles,
    styled,
)
from hierarchy.reports.tables import GENERALISATION_METRICS, route_results

logger = logging.getLogger(__name__)
LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _routes(metrics: dict, routes: Sequence[str] | None) -> list[str]:
    chosen = list(metrics["routes"]) if routes is None else list(routes)
    unknown = [r for r in chosen if r not in metrics["routes"]]
    if unknown:
        raise ValueError(f"routes {unknown} are not in the metrics; have {list(metrics['routes'])}")
    if not chosen:
        raise ValueError("no routes to draw")
    return chosen


def _fmt_ci(value: float | None, ci: Sequence[float | None], decimals: int = 3) -> str:
    if value is None:
        return "n/a"
    if ci[0] is None:
        return f"{value:.{decimals}f}"
    return f"{value:.{decimals}f} [{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"


def _dataset_routes(results: Mapping[str, Mapping], routes: Sequence[str] | None) -> list[str]:
    if not results:
        raise ValueError("no datasets to draw")
    found = []
    for entry in results.values():
        found += [r for r in route_results(entry) if r not in found]
    chosen = found if routes is None else list(routes)
    unknown = [r for r in chosen if r not in found]
    if unknown or not chosen:
        raise ValueError(f"routes {unknown or chosen} are in no dataset; have {found}")
    return chosen


def _value_and_error(estimate: Mapping | None) -> tuple[float, float, float]:
    """Point value and the distances to its CI bounds (NaN where undefined; 0 where a percentile
    bootstrap interval does not reach the point estimate, or misses it by rounding)."""
    if not estimate or estimate.get("value") is None:
        return np.nan, np.nan, np.nan
    value, (lo, hi) = estimate["value"], estimate["ci"]
    if lo is None:
        return value, 0.0, 0.0
    return value, max(value - lo, 0.0), max(hi - value, 0.0)


GENERALISATION_TITLES = {"accuracy": "accuracy", "false_negative_rate": "tumour false-negative rate"}


@styled
def generalisation_figure(results: Mapping[str, Mapping], routes: Sequence[str] | None = None) -> Figure:
    """Accuracy and tumour false-negative rate with 95% CIs, per dataset and route, at one glance.

    ``results`` maps each dataset (BRISC test, an external set, a perturbation ...) in display order,
    top to bottom, to its ``evaluate_predictions`` result, or to that result's ``"routes"`` mapping
    ``{route: {"headline": {"accuracy": {"value", "ci"}}, "false_negatives": {"detection":
    {"false_negative_rate": {"value", "ci"}}}}}``. Two dot-and-whisker panels (7.2 in) share the dataset
    axis; routes differ in marker and colour, offset within each dataset's row. A route a dataset lacks is
    left out.
    """
    routes = _dataset_routes(results, routes)
    if len(routes) > len(MARKERS):
        raise ValueError(f"at most {len(MARKERS)} routes fit one generalisation figure, got {len(routes)}")
    datasets = list(results)
    row_height = 0.12 + 0.07 * len(routes)  # inches per dataset, room for one whisker per route
    fig, axes = grid(2, width=DOUBLE_COLUMN, aspect=0.0, sharey=True)
    fig.set_size_inches(DOUBLE_COLUMN, 1.0 + 0.12 * -(-len(routes) // 4) + row_height * len(datasets))
    # the first route on top of each dataset's row, as in the legend
    offsets = ((len(routes) - 1) / 2 - np.arange(len(routes))) * min(0.15, 0.7 / len(routes))
    rows = np.arange(len(datasets))[::-1]
    for ax, (name, pick) in zip(axes, GENERALISATION_METRICS.items(), strict=True):
        title = GENERALISATION_TITLES[name]
        for i, (offset, route) in enumerate(zip(offsets, routes, strict=True)):
            points = np.array([_value_and_error(pick(route_results(results[d])[route]))
                               if route in route_results(results[d]) else (np.nan,) * 3
                               for d in datasets])
            ax.errorbar(points[:, 0], rows + offset, xerr=points[:, 1:].T, fmt=MARKERS[i], ms=3, capsize=1.5,
                        lw=0.8, color=color_for(route), label=route)
        ax.set_yticks(rows, datasets)
        ax.set(title=title, xlabel=f"{title} [95% CI]", ylim=(-0.6, len(datasets) - 0.4))
        ax.grid(axis="x", color="0.9", lw=0.5)
    axes[1].tick_params(labelleft=False)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    return fig


def _classes_with_curves(metrics: dict, routes: Sequence[str], kind: str) -> list[str]:
    classes = [c for c in metrics.get("classes", []) if any(
        c in metrics["routes"][r]["curves"][kind] for r in routes)] or sorted(
        {c for r in routes for c in metrics["routes"][r]["curves"][kind]})
    if not classes:
        raise ValueError(f"no {kind.upper()} curve is defined for these routes (each needs both classes present)")
    return classes


INSET_FROM = 0.95  # a panel gets its magnified corner once some route's AUC (or AP) reaches this


def _curve_panels(metrics: dict, routes: Sequence[str], kind: str, zoom: tuple[float, float]) -> Figure:
    """One panel per class (2 columns, 7.2 in), up to four routes overlaid, each with its own legend
    (route and area) below it; where some route's area reaches ``INSET_FROM``, an inset magnifies the
    corner where such near-perfect curves differ."""
    routes = _routes(metrics, routes)
    styles = line_styles(routes)
    classes = _classes_with_curves(metrics, routes, kind)
    fig, axes = grid(len(classes), width=DOUBLE_COLUMN, ncols=2, aspect=0.8,
                     extra_height=(0.16 * len(routes) + 0.1) * -(-len(classes) // 2))
    for ax, name in zip(axes, classes, strict=True):
        drawn = []  # (route, x, y, area value, area label)
        for route in routes:
            result = metrics["routes"][route]
            curve = result["curves"][kind].get(name)
            if curve is None:
                continue
            if kind == "roc":
                row = next(r for r in result["per_class"] if r["class"] == name)
                # four decimals: at AUC > 0.99 three would show every route as 1.000 [0.999, 1.000]
                drawn.append((route, curve["fpr"], curve["tpr"], row["auc"],
                              _fmt_ci(row["auc"], [row["auc_ci_low"], row["auc_ci_high"]], decimals=4)))
            else:
                drawn.append((route, curve["recall"], curve["precision"], curve["average_precision"],
                              f"{curve['average_precision']:.4f}"))
        if kind == "roc":
            (x_lo, x_hi), (y_lo, y_hi) = (0, zoom[0]), (zoom[1], 1 + (1 - zoom[1]) / 50)
        else:
            (x_lo, x_hi), (y_lo, y_hi) = (zoom[0], 1 + (1 - zoom[0]) / 50), (zoom[1], 1 + (1 - zoom[1]) / 50)
        # an inset only where some curve reaches a quarter of the way into the magnified corner (an empty one,
        # or one a curve only grazes at its edge, tells a reader nothing); it sits where good curves never go:
        # lower right for ROC, lower left for PR
        near_perfect = any(value is not None and value >= INSET_FROM for *_, value, _ in drawn)
        x_in, y_in = (x_hi - x_lo) / 4, (y_hi - y_lo) / 4
        x_from, x_to = (x_lo, x_hi - x_in) if kind == "roc" else (x_lo + x_in, x_hi)
        enters = any(np.any((np.asarray(x) >= x_from) & (np.asarray(x) <= x_to) & (np.asarray(y) >= y_lo + y_in)
                            & (np.asarray(y) <= y_hi)) for _, x, y, *_ in drawn)
        inset = ax.inset_axes([0.5, 0.1, 0.46, 0.46] if kind == "roc" else [0.1, 0.1, 0.46, 0.46]) \
            if near_perfect and enters else None
        for route, x, y, _, area in drawn:
            style = {**styles[route], "markevery": max(1, len(x) // 6), "ms": 3,
                     "drawstyle": "default" if kind == "roc" else "steps-post"}
            ax.plot(x, y, label=f"{route} {area}", **style)
            if inset is not None:
                inset.plot(x, y, **style)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=0.6)
            ax.set(title=name, xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
            legend_title = "AUC [95% CI]"
        else:
            ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
            legend_title = "average precision"
        if inset is not None:
            inset.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi))
            inset.spines[:].set_visible(True)
            inset.xaxis.set_major_locator(MaxNLocator(2))
            inset.yaxis.set_major_locator(MaxNLocator(2))
            ax.indicate_inset_zoom(inset, edgecolor="0.5")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), title=legend_title, handlelength=2.5)
    return fig


@styled
def roc_figure(metrics: dict, routes: Sequence[str] | None = None, *,
               zoom: tuple[float, float] = (0.1, 0.9)) -> Figure:
    """One-vs-rest ROC curves, one panel per class with up to four routes overlaid, each with a zoomed
    inset of the top-left corner (false-positive rate up to ``zoom[0]``, sensitivity from ``zoom[1]``) in
    the lower right, where curves of useful classifiers never run.

    An inset rather than a logarithmic false-positive axis: a log axis cannot show a false-positive
    rate of 0, where a near-perfect curve does most of its climbing, and it bends the full curve out
    of the shape readers know; the inset keeps the whole linear curve and magnifies the corner where
    routes with AUC > 0.99 differ. The legend under each panel gives each route's AUC [95% CI].
    """
    return _curve_panels(metrics, routes, "roc", zoom)


@styled
def pr_figure(metrics: dict, routes: Sequence[str] | None = None, *,
              zoom: tuple[float, float] = (0.9, 0.9)) -> Figure:
    """Precision-recall curves, one panel per class with up to four routes overlaid, each with an inset
    magnifying recall from ``zoom[0]`` and precision from ``zoom[1]``; the legend under each panel gives
    each route's average precision."""
    return _curve_panels(metrics, routes, "pr", zoom)


def _draw_confusion(ax, matrix: dict, title: str, xlabel: str, ylabel: str, *, show_y: bool = True,
                    show_x: bool = True) -> None:
    counts = np.array(matrix["counts"])
    normalized = np.array(matrix["normalized"])
    labels = matrix["labels"]
    ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{counts[i, j]}\n{normalized[i, j]:.0%}", ha="center", va="center",
                    fontsize=7, linespacing=1.0, color="white" if normalized[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels if show_x else [""] * len(labels), rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(labels)), labels if show_y else [""] * len(labels))
    ax.tick_params(left=show_y, bottom=show_x)
    ax.set(title=title, xlabel=xlabel if show_x else "", ylabel=ylabel if show_y else "")
    ax.spines[:].set_visible(False)


def _confusion_grid(matrices: Sequence[tuple[str, dict | None]], ncols: int, xlabel: str, ylabel: str, *,
                    aspect: float | None = None) -> Figure:
    """Confusion matrices as small multiples, ``ncols`` a row across 7.2 in (one column: 3.5 in, else a lone
    matrix fills a page), each panel ``aspect`` times as high as wide (default: a lone column 1.15; else 1.45
    for a row that shows x labels and 1.15 for one that does not, averaged: four a row, a row of 1.3 cut off
    the titles and x labels of a labelled row); y labels on the first column, x labels only where the matrix
    below has other classes or there is none (else they met the next row's titles)."""
    def shows_x(k: int) -> bool:
        below = matrices[k + ncols][1] if k + ncols < len(matrices) else None
        return below is None or list(below["labels"]) != list(matrices[k][1]["labels"])

    show_x = [matrix is not None and shows_x(k) for k, (_, matrix) in enumerate(matrices)]
    rows = [show_x[start:start + ncols] for start in range(0, len(matrices), ncols)]
    default = 1.15 if ncols == 1 else sum(1.45 if any(row) else 1.15 for row in rows) / len(rows)
    fig, axes = grid(len(matrices), width=SINGLE_COLUMN if ncols == 1 else DOUBLE_COLUMN, ncols=ncols,
                     aspect=aspect or default)
    for k, (ax, (title, matrix)) in enumerate(zip(axes, matrices, strict=True)):
        if matrix is None:
            ax.axis("off")
            continue
        _draw_confusion(ax, matrix, title, xlabel, ylabel, show_y=k % ncols == 0, show_x=show_x[k])
    return fig


@styled
def confusion_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """Confusion matrices, one per route, four a row: counts and row-normalised percentages."""
    routes = _routes(metrics, routes)
    return _confusion_grid([(route, metrics["routes"][route]["confusion"]) for route in routes],
                           min(4, len(routes)), "predicted", "true")


@styled
def dataset_confusion_figure(results: Mapping[str, Mapping], routes: Sequence[str] | None = None) -> Figure:
    """Confusion matrices in a grid: one row per dataset (e.g. each external set), one column per route
    (at most four; pass ``routes`` to choose them).

    ``results`` maps each dataset to its ``evaluate_predictions`` result (or its ``"routes"``
    mapping); a route a dataset lacks leaves its cell empty.
    """
    routes = _dataset_routes(results, routes)
    if len(routes) > 4:
        raise ValueError(f"at most 4 routes fit a row of confusion matrices at 7.2 in, got {routes}")
    cells = [(f"{dataset}: {route}", route_results(entry)[route]["confusion"] if route in route_results(entry)
              else None) for dataset, entry in results.items() for route in routes]
    return _confusion_grid(cells, len(routes), "predicted", "true")


@styled
def plane_confusion_figure(metrics: dict) -> Figure | None:
    """Scan-plane classifier confusion per route that routes by plane; None when none does."""
    routes = [r for r, result in metrics["routes"].items() if result["plane"]]
    if not routes:
        return None
    cells = []
    for route in routes:
        plane = metrics["routes"][route]["plane"]
        # the interval on its own line: on one line, four panels' titles run into each other at 7.2 in
        accuracy = _fmt_ci(plane["accuracy"]["value"], plane["accuracy"]["ci"]).replace(" [", "\n[", 1)
        cells.append((f"{route}\naccuracy {accuracy}",
                      plane["confusion"]))
    return _confusion_grid(cells, min(4, len(routes)), "predicted plane", "true plane")


@styled
def reliability_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """Top-label reliability diagrams, one panel per route (four a row), with ECE and Brier score; one
    legend under the panels."""
    routes = _routes(metrics, routes)
    fig, axes = grid(len(routes), width=DOUBLE_COLUMN, ncols=min(4, len(routes)), extra_height=0.3)
    for k, (ax, route) in enumerate(zip(axes, routes, strict=True)):
        calibration = metrics["routes"][route]["calibration"]
        curve = calibration["reliability"]
        lower, upper = np.array(curve["bin_lower"]), np.array(curve["bin_upper"])
        ax.bar(lower, curve["accuracy"], width=upper - lower, align="edge", color="0.75", edgecolor="white",
               lw=0.4, label="accuracy per confidence bin")
        ax.plot(curve["confidence"], curve["accuracy"], "o", ms=2.5, color="black",
                label="accuracy at the bin's mean confidence")
        ax.plot([0, 1], [0, 1], ls=":", color="#D55E00", lw=0.8, label="perfect calibration")
        ax.set(title=f"{route}\nECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f}",
               xlabel="confidence (top class)", xlim=(0, 1), ylim=(0, 1))
        ax.set_ylabel("accuracy" if k % 4 == 0 else "")
        ax.set_box_aspect(1)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels, ncols=3)
    return fig


@styled
def coverage_figure(metrics: dict) -> Figure | None:
    """Accuracy against coverage (keeping the most confident images) for routes that referred images,
    with each route's actual operating point, four routes a panel; None when no route referred any."""
    routes = [r for r, result in metrics["routes"].items() if result["coverage"]]
    if not routes:
        return None
    groups = [routes[i:i + 4] for i in range(0, len(routes), 4)]
    fig, axes = grid(len(groups), width=SINGLE_COLUMN if len(groups) == 1 else DOUBLE_COLUMN,
                     ncols=min(2, len(groups)), aspect=0.75, extra_height=0.35)
    for ax, group in zip(axes, groups, strict=True):
        styles = line_styles(group)
        for route in group:
            coverage = metrics["routes"][route]["coverage"]
            curve = coverage["curve"]
            ax.plot(curve["coverage"], curve["accuracy"], label=route,
                    **{**styles[route], "markevery": max(1, len(curve["coverage"]) // 6)})
            if coverage["accuracy_accepted"]["value"] is not None:
                ax.plot(coverage["coverage"], coverage["accuracy_accepted"]["value"], marker="*", ms=7,
                        color=styles[route]["color"], mec="black", mew=0.4, ls="none")
        ax.set(xlabel="coverage (fraction not referred)", ylabel="accuracy on kept images", xlim=(0, 1.01))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2)
    return fig


@styled
def ood_coverage_figure(curves: Mapping[str, Mapping[str, Mapping]]) -> Figure:
    """Accuracy against coverage when the most atypical images are referred by OOD score, one panel
    per dataset (two a row; a dataset with more than four routes gets a panel per four), with Wilson 95% bands.

    ``curves`` is ``{dataset: {route: accuracy_coverage_curve(...)}}`` (see
    :func:`hierarchy.metrics.shift.accuracy_coverage_curve`).
    """
    if not curves:
        raise ValueError("no datasets to draw")
    cells = [(dataset, group, by_route) for dataset, by_route in curves.items() for group in line_groups(list(by_route))]
    n = len(cells)
    fig, axes = grid(n, width=SINGLE_COLUMN if n == 1 else DOUBLE_COLUMN, ncols=min(2, n), aspect=0.75)
    for ax, (dataset, group, by_route) in zip(axes, cells, strict=True):
        styles = line_styles(group)
        for route in group:
            curve = by_route[route]
            ax.plot(curve["coverage"], curve["accuracy"], label=route,
                    **{**styles[route], "markevery": max(1, len(curve["coverage"]) // 6)})
            ax.fill_between(curve["coverage"], curve["ci_low"], curve["ci_high"],
                            color=styles[route]["color"], alpha=0.15, lw=0)
        # fixed limits: autoscaled ticks change after constrained layout's first pass, which then put the
        # y label past the figure's edge
        lowest = min(min(by_route[route]["ci_low"]) for route in group)
        ax.set(title=dataset, xlabel="coverage (most atypical referred)", ylabel="accuracy on kept images",
               xlim=(0, 1.02), ylim=(np.floor(lowest * 20) / 20, 1.01))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2)
    return fig


def read_training_log(log: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A training log (``log.csv`` path or frame) checked for the columns the curves need."""
    frame = log if isinstance(log, pd.DataFrame) else pd.read_csv(log)
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"training log {log if not isinstance(log, pd.DataFrame) else ''} lacks "
                         f"columns {missing}; expected {list(LOG_COLUMNS)}")
    if frame.empty:
        raise ValueError("training log has no rows")
    return frame


@styled
def training_curves_figure(log: str | Path | pd.DataFrame, title: str = "") -> Figure:
    """Three panels (7.2 in) per epoch from a training ``log.csv``: the training objective (what was
    minimised: label smoothing, mixup and, in joint training, the weighted plane loss included), the
    validation cross-entropy (tumour, and the plane apart when the log has it), and accuracies. The
    training objective is not drawn against the validation loss: the two are not the same quantity."""
    frame = read_training_log(log)
    epochs = frame["epoch"]
    fig, (objective, loss_ax, acc_ax) = grid(3, width=DOUBLE_COLUMN, aspect=0.8, extra_height=0.3)
    styles = line_styles(["train", "validation", "validation (plane)"])
    aux = "val_aux_loss" in frame.columns and frame["val_aux_loss"].notna().any()
    objective.plot(epochs, frame["train_loss"], **styles["train"], label="training")
    objective.set(title="training objective", ylabel="loss (as optimised)")
    loss_ax.plot(epochs, frame["val_loss"], **styles["validation"], label="validation (tumour)")
    if aux:
        loss_ax.plot(epochs, frame["val_aux_loss"], **styles["validation (plane)"], label="validation (plane)")
    loss_ax.set(title="validation loss", ylabel="cross-entropy")
    acc_ax.plot(epochs, frame["train_accuracy"], **styles["train"])
    acc_ax.plot(epochs, frame["val_accuracy"], **styles["validation"])
    if aux and "val_aux_accuracy" in frame.columns:
        acc_ax.plot(epochs, frame["val_aux_accuracy"], **styles["validation (plane)"])
    acc_ax.set(title="accuracy", ylabel="accuracy")
    for ax in (objective, loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [*objective.get_lines()[:1], *loss_ax.get_lines()]
    legend_below(fig, handles, ["training", "validation (tumour)", *(["validation (plane)"] if aux else [])],
                 ncols=3, title=title or None)
    return fig


def _existing(path: object) -> Path | None:
    if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
        return None
    path = Path(str(path))
    return path if path.is_file() else None


def _thumbnail(path: object, mode: str) -> np.ndarray | None:
    """The image at ``path`` decoded through the guarded decoder (mode "L" or "RGB"); None, with a warning,
    when it is absent or cannot be decoded (a corrupt file, a decompression bomb)."""
    found = _existing(path)
    if found is None:
        return None
    try:
        with guarded_decode(str(found)), Image.open(found) as image:
            return np.asarray(image.convert(mode))
    except ImageReadError as err:
        logger.warning("missed-tumour gallery: leaving out %s", err)
        return None


@styled
def missed_gallery_figure(missed: pd.DataFrame, *, overlays: Mapping[str, str | Path] | None = None,
                          max_images: int = 24) -> Figure | None:
    """Thumbnails of the rows of ``missed`` (from their ``path``: the missed tumours of a report, or any
    misclassified images of an external dataset's gallery), each with its explanation overlay beside
    it when ``overlays`` maps its id to an image. Rows whose image file is absent are skipped; None
    when no image is available (e.g. a report built from a CSV alone)."""
    if "path" not in missed.columns:
        return None
    overlays = overlays or {}
    shown = []
    for _, row in missed.iterrows():
        if len(shown) == max_images:
            break
        image = _thumbnail(row["path"], "L")
        if image is not None:
            shown.append((row, image, _thumbnail(overlays.get(row["id"]), "RGB")))
    if not shown:
        return None
    per_item = 2 if any(overlay is not None for _, _, overlay in shown) else 1
    columns = 6 // per_item
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(DOUBLE_COLUMN, 1.75 * rows), layout="constrained")
    axes = fig.subplots(rows, columns * per_item, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (row, image, overlay) in enumerate(shown):
        ax = axes[i * per_item]
        ax.imshow(image, cmap="gray")
        name = str(row["id"]).rsplit("/", 1)[-1]
        name = name if len(name) <= 20 else f"{name[:9]}...{name[-8:]}"
        ax.set_title(f"{name}\n{row['true_label']} -> {row['pred_label']}\n{row.get('route', '')}",
                     fontsize=7, linespacing=1.0)
        if overlay is not None:
            axes[i * per_item + 1].imshow(overlay)
            axes[i * per_item + 1].set_title("explanation", fontsize=7)
    return fig


@styled
def attribution_figure(examples: Sequence[Mapping], routes: Sequence[str], *, method: str = "gradcam") -> Figure | None:
    """Example images with each route's attribution over them and the radiologist's mask outlined (cyan),
    7.2 in wide: four panels a row (two examples side by side with two routes), at most eight examples.

    Each example is ``{"id", "label", "image": (H, W) in [0, 1], "mask": (H, W) bool or None, "maps":
    {route: (H, W) in [0, 1]}, "pred": {route: label}}``. Each panel's title gives the route and its
    prediction (marked when wrong); a white cross marks the map's peak (the pointing game's guess). None
    when there is no example.
    """
    if not 1 <= len(routes) <= 4:
        raise ValueError(f"an attribution figure shows 1 to 4 routes, got {list(routes)}")
    examples = [e for e in examples if all(r in e["maps"] for r in routes)][:8]
    if not examples:
        return None
    per_row = max(1, 4 // len(routes))
    ncols = per_row * len(routes)
    nrows = -(-len(examples) // per_row)
    fig, axes = grid(nrows * ncols, width=DOUBLE_COLUMN, ncols=ncols, aspect=1.25)
    heat = None
    for k, example in enumerate(examples):
        for j, route in enumerate(routes):
            ax = axes[(k // per_row) * ncols + (k % per_row) * len(routes) + j]
            attribution = np.asarray(example["maps"][route], dtype=float)
            ax.imshow(example["image"], cmap="gray", interpolation="nearest")
            heat = ax.imshow(attribution, cmap="inferno", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
            if example.get("mask") is not None and np.asarray(example["mask"]).any():
                ax.contour(np.asarray(example["mask"], dtype=float), levels=[0.5], colors="cyan", linewidths=0.8)
            peak = np.unravel_index(np.argmax(attribution), attribution.shape)
            ax.plot(peak[1], peak[0], marker="+", color="white", ms=6, mew=1.2)
            predicted = example["pred"][route]
            ax.set_title(f"{route}\n-> {predicted}" + ("" if predicted == example["label"] else " (wrong)"),
                         fontsize=7, linespacing=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if j == 0:
                name = str(example["id"]).rsplit("/", 1)[-1]
                name = name if len(name) <= 18 else f"{name[:8]}...{name[-7:]}"
                ax.set_ylabel(f"{example['label']}\n{name}", fontsize=7, linespacing=1.0)
    for ax in axes[len(examples) // per_row * ncols + len(examples) % per_row * len(routes):]:
        ax.set_visible(False)
    fig.colorbar(heat, ax=axes, location="bottom", shrink=0.4, aspect=30,
                 label=f"{method} attribution (normalised); cyan: radiologist's mask")
    return fig


@styled
def both_confusions_figure(matrices: Mapping[str, Mapping]) -> Figure:
    """Confusion matrices of one route, one per dataset, each drawn twice: normalised by true class (rows sum
    to 1: recall on the diagonal) and by predicted class (columns sum to 1: precision on the diagonal), with
    the counts in every cell; four matrices a row across 7.2 in.

    ``matrices`` maps each dataset to a :func:`hierarchy.metrics.classification.confusion` result (an
    ``evaluate_predictions`` route's ``"confusion"``).
    """
    if not matrices:
        raise ValueError("no confusion matrices to draw")
    cells = [cell for dataset, matrix in matrices.items()
             for cell in ((f"{dataset}\nby true class", matrix),
                          (f"{dataset}\nby predicted class",
                           {**matrix, "normalized": matrix["normalized_by_predicted"]}))]
    # taller panels than the other grids: the two-line titles and rotated labels leave the matrix too little
    # height at 1.15, and four-digit counts ran over their cells
    return _confusion_grid(cells, min(4, len(cells)), "predicted", "true", aspect=1.45)


@styled
def decision_curve_figure(curves: Mapping[str, Mapping[str, Mapping]]) -> Figure:
    """Net benefit against threshold probability (decision curves, Vickers & Elkin 2006) for the
    tumour-vs-normal reading: one panel per dataset (two a row; single column for one dataset), up to four
    routes a panel (a dataset with more gets a panel per four), beside treating every image and none.

    ``curves`` is ``{dataset: {route: decision_curve(...)}}`` (see
    :func:`hierarchy.metrics.operating_points.decision_curve`). The net-benefit axis runs from slightly below
    0 to slightly above the prevalence, the largest benefit any strategy can have.
    """
    cells = [(dataset, group, by_route) for dataset, by_route in curves.items() if by_route
             for group in line_groups(list(by_route))]
    if not cells:
        raise ValueError("no decision curves to draw")
    n = len(cells)
    fig, axes = grid(n, width=SINGLE_COLUMN if n == 1 else DOUBLE_COLUMN, ncols=min(2, n), aspect=0.75)
    for ax, (dataset, group, by_route) in zip(axes, cells, strict=True):
        styles = line_styles(group)
        first = by_route[group[0]]
        threshold = np.asarray(first["threshold"])
        prevalence = first["prevalence"]
        for route in group:
            curve = by_route[route]
            ax.plot(curve["threshold"], curve["model"], label=route,
                    **{**styles[route], "markevery": max(1, len(threshold) // 6)})
        ax.plot(threshold, first["treat_all"], color="0.45", lw=0.8, ls=(0, (4, 1, 1, 1, 1, 1)), label="treat all")
        ax.plot(threshold, first["treat_none"], color="0.7", lw=0.8, ls="-", label="treat none")
        margin = 0.08 * prevalence
        ax.set(title=dataset, xlabel="threshold probability", ylabel="net benefit", xlim=(0, 1),
               ylim=(-margin, prevalence + margin))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=3)
    return fig
