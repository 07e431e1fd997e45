"""Report figures drawn from an ``evaluate_predictions`` result (and training logs, missed images).

Every function returns a matplotlib Figure (or None when there is nothing to draw); save it with
``hierarchy.reports.style.save_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from hierarchy.reports.style import color_for, panels, styled

LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _routes(metrics: dict, routes: Sequence[str] | None) -> list[str]:
    chosen = list(metrics["routes"]) if routes is None else list(routes)
    unknown = [r for r in chosen if r not in metrics["routes"]]
    if unknown:
        raise ValueError(f"routes {unknown} are not in the metrics; have {list(metrics['routes'])}")
    if not chosen:
        raise ValueError("no routes to draw")
    return chosen


def _fmt_ci(value: float | None, ci: Sequence[float | None]) -> str:
    if value is None:
        return "n/a"
    if ci[0] is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


@styled
def roc_figure(metrics: dict, routes: Sequence[str] | None = None) -> Figure:
    """One-vs-rest ROC curve per class, one panel per route; legend gives AUC and its 95% CI."""
    routes = _routes(metrics, routes)
    fig, axes = panels(len(routes))
    for ax, route in zip(axes, routes, strict=True):
        result = metrics["routes"][route]
        per_class = {row["class"]: row for row in result["per_class"]}
        for name, curve in result["curves"]["roc"].items():
            row = per_class[name]
            ax.plot(curve["fpr"], curve["tpr"], color=color_for(name), lw=1.2,
                    label=f"{name} {_fmt_ci(row['auc'], [row['auc_ci_low'], row['auc_ci_high']])}")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        macro = result["headline"]["macro_auc"]
        ax.set(title=f"{route}\nmacro AUC {_fmt_ci(macro['value'], macro['ci'])}",
               xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", title="AUC [95% CI]")
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


@styled
def missed_gallery_figure(missed: pd.DataFrame, *, overlays: Mapping[str, str | Path] | None = None,
                          max_images: int = 24) -> Figure | None:
    """Thumbnails of missed tumours (from their ``path``), each with its explanation overlay beside
    it when ``overlays`` maps its id to an image. Rows whose image file is absent are skipped; None
    when no image is available (e.g. a report built from a CSV alone)."""
    if "path" not in missed.columns:
        return None
    overlays = overlays or {}
    shown = [(row, _existing(row["path"]), _existing(overlays.get(row["id"])))
             for _, row in missed.iterrows()]
    shown = [item for item in shown if item[1] is not None][:max_images]
    if not shown:
        return None
    per_item = 2 if any(overlay for _, _, overlay in shown) else 1
    columns = min(len(shown), 6 // per_item)
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(1.6 * columns * per_item, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, columns * per_item, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (row, image, overlay) in enumerate(shown):
        ax = axes[i * per_item]
        ax.imshow(np.asarray(Image.open(image).convert("L")), cmap="gray")
        ax.set_title(f"{row['id']}\n{row['true_label']} -> {row['pred_label']}\n{row.get('route', '')}",
                     fontsize=6)
        if overlay is not None:
            axes[i * per_item + 1].imshow(np.asarray(Image.open(overlay).convert("RGB")))
            axes[i * per_item + 1].set_title("explanation", fontsize=6)
    return fig
