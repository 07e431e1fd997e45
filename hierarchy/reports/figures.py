"""Report figures drawn from an ``evaluate_predictions`` result (and training logs, missed images).

Every function returns a matplotlib Figure (or None when there is nothing to draw); save it with
``hierarchy.reports.style.save_figure``.
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
from hierarchy.reports.style import PANEL_SIZE, color_for, panels, styled
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
    {"false_negative_rate": {"value", "ci"}}}}}``. Two dot-and-whisker panels share the dataset
    axis; routes are colours, offset within each dataset's row. A route a dataset lacks is left out.
    """
    routes = _dataset_routes(results, routes)
    datasets = list(results)
    fig, axes = panels(2, square=False)
    row_height = 0.2 + 0.1 * len(routes)  # inches per dataset, room for one whisker per route
    fig.set_size_inches(2 * PANEL_SIZE[0], max(PANEL_SIZE[1], 1 + row_height * len(datasets)))
    # the first route on top of each dataset's row, as in the legend
    offsets = ((len(routes) - 1) / 2 - np.arange(len(routes))) * min(0.15, 0.7 / len(routes))
    rows = np.arange(len(datasets))[::-1]
    for ax, (name, pick) in zip(axes, GENERALISATION_METRICS.items(), strict=True):
        title = GENERALISATION_TITLES[name]
        for offset, route in zip(offsets, routes, strict=True):
            points = np.array([_value_and_error(pick(route_results(results[d])[route]))
                               if route in route_results(results[d]) else (np.nan,) * 3
                               for d in datasets])
            ax.errorbar(points[:, 0], rows + offset, xerr=points[:, 1:].T, fmt="o", ms=3.5,
                        capsize=2, lw=1, color=color_for(route), label=route)
        ax.set_yticks(rows, datasets)
        ax.set(title=title, xlabel=f"{title} [95% CI]", ylim=(-0.6, len(datasets) - 0.4))
        ax.grid(axis="x", color="0.9", lw=0.6)
    axes[1].tick_params(labelleft=False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(routes), frameon=False)
    return fig


@styled
def roc_figure(metrics: dict, routes: Sequence[str] | None = None, *,
               zoom: tuple[float, float] = (0.1, 0.9)) -> Figure:
    """One-vs-rest ROC curves, one panel per class with the routes overlaid, each with a zoomed inset
    of the top-left corner (false-positive rate up to ``zoom[0]``, sensitivity from ``zoom[1]``).

    An inset rather than a logarithmic false-positive axis: a log axis cannot show a false-positive
    rate of 0, where a near-perfect curve does most of its climbing, and it bends the full curve out
    of the shape readers know; the inset keeps the whole linear curve and magnifies the corner where
    routes with AUC > 0.99 differ. The legend gives each route's AUC [95% CI].
    """
    routes = _routes(metrics, routes)
    classes = [c for c in metrics.get("classes", []) if any(
        c in metrics["routes"][r]["curves"]["roc"] for r in routes)] or sorted(
        {c for r in routes for c in metrics["routes"][r]["curves"]["roc"]})
    if not classes:
        raise ValueError("no ROC curve is defined for these routes (each needs both classes present)")
    fig, axes = panels(len(classes))
    max_fpr, min_tpr = zoom
    for ax, name in zip(axes, classes, strict=True):
        inset = ax.inset_axes([0.42, 0.44, 0.55, 0.42])
        for route in routes:
            result = metrics["routes"][route]
            curve = result["curves"]["roc"].get(name)
            if curve is None:
                continue
            row = next(r for r in result["per_class"] if r["class"] == name)
            # four decimals: at AUC > 0.99 three would show every route as 1.000 [0.999, 1.000]
            auc = _fmt_ci(row["auc"], [row["auc_ci_low"], row["auc_ci_high"]], decimals=4)
            label = f"{route} {auc}"
            for target in (ax, inset):
                target.plot(curve["fpr"], curve["tpr"], color=color_for(route), lw=1.2,
                            label=label if target is ax else None)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        inset.set(xlim=(0, max_fpr), ylim=(min_tpr, 1 + (1 - min_tpr) / 50))
        inset.spines[:].set_visible(True)
        inset.tick_params(labelsize=6)
        inset.xaxis.set_major_locator(MaxNLocator(3))
        inset.yaxis.set_major_locator(MaxNLocator(3))
        ax.indicate_inset_zoom(inset, edgecolor="grey")
        ax.set(title=name, xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", title="AUC [95% CI]", fontsize=6, title_fontsize=6)
    return fig


@styled
def pr_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """Precision-recall curve per class, one panel per route; legend gives average precision."""
    routes = _routes(metrics, routes)
    fig, axes = panels(len(routes))
    for ax, route in zip(axes, routes, strict=True):
        for name, curve in metrics["routes"][route]["curves"]["pr"].items():
            ax.plot(curve["recall"], curve["precision"], color=color_for(name), lw=1.2,
                    drawstyle="steps-post", label=f"{name} AP {curve['average_precision']:.3f}")
        ax.set(title=route, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower left")
    return fig


def _draw_confusion(ax, matrix: dict, title: str, xlabel: str, ylabel: str) -> None:
    counts = np.array(matrix["counts"])
    normalized = np.array(matrix["normalized"])
    labels = matrix["labels"]
    ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{counts[i, j]}\n{normalized[i, j]:.0%}", ha="center", va="center",
                    fontsize=7, color="white" if normalized[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.spines[:].set_visible(False)


@styled
def confusion_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """Confusion matrices side by side, one per route: counts and row-normalised percentages."""
    routes = _routes(metrics, routes)
    fig, axes = panels(len(routes))
    for ax, route in zip(axes, routes, strict=True):
        _draw_confusion(ax, metrics["routes"][route]["confusion"], route, "predicted", "true")
    return fig


@styled
def dataset_confusion_figure(results: Mapping[str, Mapping], routes: Sequence[str] | None = None) -> Figure:
    """Confusion matrices in a grid: one row per dataset (e.g. each external set), one column per route.

    ``results`` maps each dataset to its ``evaluate_predictions`` result (or its ``"routes"``
    mapping); a route a dataset lacks leaves its cell empty.
    """
    routes = _dataset_routes(results, routes)
    fig = Figure(figsize=(PANEL_SIZE[0] * len(routes), PANEL_SIZE[1] * len(results)),
                 layout="constrained")
    grid = fig.subplots(len(results), len(routes), squeeze=False)
    for axes, (dataset, entry) in zip(grid, results.items(), strict=True):
        for ax, route in zip(axes, routes, strict=True):
            by_route = route_results(entry)
            if route in by_route:
                _draw_confusion(ax, by_route[route]["confusion"], f"{dataset}: {route}", "predicted",
                                "true")
            else:
                ax.axis("off")
    return fig


@styled
def plane_confusion_figure(metrics: dict) -> Figure | None:
    """Scan-plane classifier confusion per route that routes by plane; None when none does."""
    routes = [r for r, result in metrics["routes"].items() if result["plane"]]
    if not routes:
        return None
    fig, axes = panels(len(routes))
    for ax, route in zip(axes, routes, strict=True):
        plane = metrics["routes"][route]["plane"]
        title = f"{route}: plane accuracy\n{_fmt_ci(plane['accuracy']['value'], plane['accuracy']['ci'])}"
        _draw_confusion(ax, plane["confusion"], title, "predicted plane", "true plane")
    return fig


@styled
def reliability_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """Top-label reliability diagrams, one panel per route, with ECE and Brier score."""
    routes = _routes(metrics, routes)
    fig, axes = panels(len(routes))
    for ax, route in zip(axes, routes, strict=True):
        calibration = metrics["routes"][route]["calibration"]
        curve = calibration["reliability"]
        lower, upper = np.array(curve["bin_lower"]), np.array(curve["bin_upper"])
        ax.bar(lower, curve["accuracy"], width=upper - lower, align="edge", color=color_for(route),
               alpha=0.7, edgecolor="white", label="accuracy")
        ax.plot(curve["confidence"], curve["accuracy"], "o", ms=3, color="black",
                label="accuracy at mean confidence")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set(title=f"{route}\nECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f}",
               xlabel="confidence (top class)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
    return fig


@styled
def coverage_figure(metrics: dict) -> Figure | None:
    """Accuracy against coverage (keeping the most confident images) for routes that referred
    images, with each route's actual operating point; None when no route referred any."""
    routes = [r for r, result in metrics["routes"].items() if result["coverage"]]
    if not routes:
        return None
    fig, (ax,) = panels(1)
    for route in routes:
        coverage = metrics["routes"][route]["coverage"]
        ax.plot(coverage["curve"]["coverage"], coverage["curve"]["accuracy"], color=color_for(route),
                lw=1.2, label=route)
        if coverage["accuracy_accepted"]["value"] is not None:
            ax.plot(coverage["coverage"], coverage["accuracy_accepted"]["value"], "o",
                    color=color_for(route))
    ax.set(title="accuracy vs coverage", xlabel="coverage (fraction not referred)",
           ylabel="accuracy on kept images", xlim=(0, 1.01))
    ax.legend(loc="lower left")
    return fig


@styled
def ood_coverage_figure(curves: Mapping[str, Mapping[str, Mapping]]) -> Figure:
    """Accuracy against coverage when the most atypical images are referred by OOD score, one panel
    per dataset, one line per route, with Wilson 95% bands.

    ``curves`` is ``{dataset: {route: accuracy_coverage_curve(...)}}`` (see
    :func:`hierarchy.metrics.shift.accuracy_coverage_curve`).
    """
    if not curves:
        raise ValueError("no datasets to draw")
    fig, axes = panels(len(curves))
    for ax, (dataset, by_route) in zip(axes, curves.items(), strict=True):
        for route, curve in by_route.items():
            ax.plot(curve["coverage"], curve["accuracy"], marker=".", color=color_for(route), lw=1.2,
                    label=route)
            ax.fill_between(curve["coverage"], curve["ci_low"], curve["ci_high"],
                            color=color_for(route), alpha=0.15, lw=0)
        ax.set(title=dataset, xlabel="coverage (most atypical referred)",
               ylabel="accuracy on kept images")
        ax.legend(loc="lower left")
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
    """Loss and accuracy per epoch, train and validation, from a training ``log.csv``."""
    frame = read_training_log(log)
    fig, (loss_ax, acc_ax) = panels(2, square=False)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.plot(frame["epoch"], frame[f"train_{metric}"], color="#0072B2", marker=".", label="train")
        ax.plot(frame["epoch"], frame[f"val_{metric}"], color="#D55E00", marker=".",
                label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=f"{title} {metric}".strip())
        ax.legend()
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
    """Thumbnails of missed tumours (from their ``path``), each with its explanation overlay beside
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
    columns = min(len(shown), 6 // per_item)
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(1.6 * columns * per_item, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, columns * per_item, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (row, image, overlay) in enumerate(shown):
        ax = axes[i * per_item]
        ax.imshow(image, cmap="gray")
        ax.set_title(f"{row['id']}\n{row['true_label']} -> {row['pred_label']}\n{row.get('route', '')}",
                     fontsize=6)
        if overlay is not None:
            axes[i * per_item + 1].imshow(overlay)
            axes[i * per_item + 1].set_title("explanation", fontsize=6)
    return fig
