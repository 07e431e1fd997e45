"""Report tables from an ``evaluate_predictions`` result, each written as CSV, LaTeX and Markdown.

CSV keeps every number in its own column (``x``, ``x_ci_low``, ``x_ci_high``); LaTeX (booktabs) and
Markdown show ``x [lo, hi]`` in one cell.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hierarchy.csv_io import csv_text
from hierarchy.fileio import atomic_write_text
from hierarchy.metrics.classification import HEADLINE_METRICS
from hierarchy.metrics.evaluate import COMPARED_METRICS, present_routes
from hierarchy.predictions import prob_column, probabilities, table_classes
from hierarchy.reports.latex import latex_table

DECIMALS = 3


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{DECIMALS}f}"
    return str(value)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Strings for display: each ``x`` with ``x_ci_low``/``x_ci_high`` becomes one ``x [lo, hi]``
    cell; floats get ``DECIMALS`` decimals; missing values are blank."""
    shown = {}
    for column in frame.columns:
        if column.endswith(("_ci_low", "_ci_high")):
            continue
        cells = frame[column].map(_cell)
        low, high = f"{column}_ci_low", f"{column}_ci_high"
        if low in frame.columns and high in frame.columns:
            bounds = [f" [{_cell(lo)}, {_cell(hi)}]" if _cell(lo) else ""
                      for lo, hi in zip(frame[low], frame[high], strict=True)]
            cells = [c + b if c else c for c, b in zip(cells, bounds, strict=True)]
        shown[column] = list(cells)
    return pd.DataFrame(shown, index=frame.index)


def _markdown_cell(value: object) -> str:
    """A cell's text that renders as itself: HTML (``<script>``, ``&``) escaped, links, code and pipes
    backslash-escaped, line breaks folded."""
    text = html.escape(_cell(value), quote=False)
    return re.sub(r"([\\`|\[\]])", r"\\\1", text).replace("\r", " ").replace("\n", " ")


def markdown_table(headers: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (no tabulate needed); floats get ``DECIMALS`` decimals,
    missing values are blank, pipes, HTML and link/code markup in cells are escaped."""
    headers = list(headers)

    def line(cells: Sequence[object]) -> str:
        if len(cells) != len(headers):
            raise ValueError(f"a row has {len(cells)} cells but the table has {len(headers)} columns")
        return "| " + " | ".join(_markdown_cell(c) for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)),
                      *(line(list(row)) for row in rows)]) + "\n"


def to_markdown(frame: pd.DataFrame) -> str:
    """``markdown_table`` of ``display_frame(frame)``."""
    shown = display_frame(frame)
    return markdown_table(list(shown.columns), shown.itertuples(index=False))


def to_latex(frame: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs LaTeX table of ``display_frame(frame)``; caption, headers and cells escaped."""
    return latex_table(display_frame(frame), caption=caption, label=label)


def table_texts(frame: pd.DataFrame, stem: str, caption: str | None = None) -> dict[str, str]:
    """``{"csv", "tex", "md"}``: the three renderings of one table (the LaTeX labelled ``tab:stem``)."""
    return {"csv": csv_text(frame), "tex": to_latex(frame, caption=caption, label=f"tab:{stem}"),
            "md": to_markdown(frame)}


def write_table(frame: pd.DataFrame, out_dir: str | Path, stem: str, *,
                caption: str | None = None) -> list[Path]:
    """Write ``stem.csv``, ``stem.tex`` and ``stem.md`` under ``out_dir`` atomically; returns their paths."""
    return [atomic_write_text(Path(out_dir) / f"{stem}.{ext}", text)
            for ext, text in table_texts(frame, stem, caption).items()]


def _with_ci(row: dict, name: str, value: dict) -> None:
    row[name] = value["value"]
    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = value["ci"]


def headline_table(metrics: dict) -> pd.DataFrame:
    """One row per route: n and every headline metric with its CI."""
    rows = []
    for route, result in metrics["routes"].items():
        row = {"route": route, "n": result["n"]}
        for name in HEADLINE_METRICS:
            _with_ci(row, name, result["headline"][name])
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_table(metrics: dict) -> pd.DataFrame:
    """One row per (route, class): precision, recall, specificity, NPV, F1, AUC, AP and support."""
    columns = ["class", "support", "precision", "recall", "specificity", "npv", "f1", "auc",
               "average_precision"]
    frames = []
    for route, result in metrics["routes"].items():
        frame = pd.DataFrame(result["per_class"])
        keep = [c for c in frame.columns if c in columns or c.endswith(("_ci_low", "_ci_high"))]
        frames.append(frame[keep].assign(route=route))
    table = pd.concat(frames, ignore_index=True)
    return table[["route"] + [c for c in table.columns if c != "route"]]


def comparison_table(comparisons: list[dict]) -> pd.DataFrame:
    """One row per route pair: McNemar b, c, p and each paired difference (B - A) with CI and p."""
    rows = []
    for comparison in comparisons:
        row = {"route_a": comparison["route_a"], "route_b": comparison["route_b"],
               "n": comparison["n"], "mcnemar_b": comparison["mcnemar"]["b"],
               "mcnemar_c": comparison["mcnemar"]["c"], "mcnemar_p": comparison["mcnemar"]["p_value"]}
        for name in COMPARED_METRICS:
            difference = comparison[name]
            _with_ci(row, f"delta_{name}", {"value": difference["difference"], "ci": difference["ci"]})
            row[f"delta_{name}_p"] = difference["p_value"]
        rows.append(row)
    return pd.DataFrame(rows)


def per_plane_table(metrics: dict) -> pd.DataFrame:
    """One row per (route, true plane): n and the headline metrics with CIs."""
    rows = []
    for route, result in metrics["routes"].items():
        for plane, section in result["per_plane"].items():
            row = {"route": route, "plane": plane, "n": section["n"]}
            for name in HEADLINE_METRICS:
                _with_ci(row, name, section["headline"][name])
            rows.append(row)
    return pd.DataFrame(rows)


def plane_classifier_table(metrics: dict) -> pd.DataFrame:
    """One row per route that routes by plane: plane-classifier accuracy with its Wilson CI."""
    rows = []
    for route, result in metrics["routes"].items():
        if result["plane"]:
            row = {"route": route, "n": result["plane"]["n"]}
            _with_ci(row, "plane_accuracy", result["plane"]["accuracy"])
            rows.append(row)
    return pd.DataFrame(rows)


def false_negative_table(metrics: dict) -> pd.DataFrame:
    """One row per route: tumours, missed, sensitivity and false-negative rate (Wilson CIs), false
    positives, and the routing split of tumour-class errors."""
    rows = []
    for route, result in metrics["routes"].items():
        analysis = result["false_negatives"]
        detection = analysis["detection"]
        row = {"route": route, "n_tumours": detection["n_tumours"], "missed": detection["n_missed"]}
        _with_ci(row, "sensitivity", detection["sensitivity"])
        _with_ci(row, "false_negative_rate", detection["false_negative_rate"])
        row["false_positives"] = detection["n_false_positives"]
        routing = analysis["routing"] or {}
        row["wrong_plane_wrong_tumour"] = routing.get("wrong_plane_wrong_tumour")
        row["right_plane_wrong_tumour"] = routing.get("right_plane_wrong_tumour")
        rows.append(row)
    routing_columns = ["wrong_plane_wrong_tumour", "right_plane_wrong_tumour"]
    return pd.DataFrame(rows).astype({c: "Int64" for c in routing_columns})


def per_class_misses_table(metrics: dict) -> pd.DataFrame:
    """One row per (route, tumour class): images, missed as no_tumor (rate, Wilson CI), other class."""
    return pd.concat([pd.DataFrame(result["false_negatives"]["per_class"]).assign(route=route)
                      for route, result in metrics["routes"].items()], ignore_index=True)


def missed_tumours_table(metrics: dict) -> pd.DataFrame:
    """Every missed tumour of every route (id, route, labels, planes, probabilities)."""
    frames = [pd.DataFrame(result["false_negatives"]["missed"])
              for result in metrics["routes"].values()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["id", "route", "true_label", "pred_label"])


def calibration_table(metrics: dict) -> pd.DataFrame:
    """One row per route: ECE (15 equal-width bins, top label) and multiclass Brier score."""
    return pd.DataFrame([{"route": route, "ece": result["calibration"]["ece"],
                          "brier": result["calibration"]["brier"]}
                         for route, result in metrics["routes"].items()])


def coverage_table(metrics: dict) -> pd.DataFrame:
    """One row per route that referred images: coverage and accuracy on kept and referred images."""
    rows = []
    for route, result in metrics["routes"].items():
        coverage = result["coverage"]
        if coverage:
            row = {"route": route, "n_referred": coverage["n_referred"],
                   "coverage": coverage["coverage"]}
            _with_ci(row, "accuracy_kept", coverage["accuracy_accepted"])
            _with_ci(row, "accuracy_referred", coverage["accuracy_referred"])
            rows.append(row)
    return pd.DataFrame(rows)


def route_results(entry: Mapping) -> Mapping:
    """``{route: result}`` of one dataset, given its ``evaluate_predictions`` dict or that mapping."""
    return entry["routes"] if "routes" in entry else entry


# where each generalisation number sits in an ``evaluate_predictions`` route result
GENERALISATION_METRICS: dict[str, Callable[[Mapping], Mapping]] = {
    "accuracy": lambda result: result["headline"]["accuracy"],
    "false_negative_rate":
        lambda result: result["false_negatives"]["detection"]["false_negative_rate"],
}


def generalisation_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (dataset, route): n, accuracy and tumour false-negative rate with their CIs.

    ``results`` maps each dataset to its ``evaluate_predictions`` result (or its ``"routes"``).
    """
    rows = []
    for dataset, entry in results.items():
        for route, result in route_results(entry).items():
            row = {"dataset": dataset, "route": route, "n": result["n"]}
            for name, pick in GENERALISATION_METRICS.items():
                _with_ci(row, name, pick(result))
            rows.append(row)
    return pd.DataFrame(rows)


def per_class_recall_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (dataset, route, class): support and recall with its Wilson CI."""
    columns = ["class", "support", "recall", "recall_ci_low", "recall_ci_high"]
    return pd.DataFrame([{"dataset": dataset, "route": route, **{c: row[c] for c in columns}}
                         for dataset, entry in results.items()
                         for route, result in route_results(entry).items()
                         for row in result["per_class"]])


def error_table(pred: pd.DataFrame, *, ood_scores: Mapping[str, float] | pd.Series | None = None,
                classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Every misclassified image of a prediction table, so a reader can tell the model's errors from
    the labels': id, route, true and predicted label, confidence (top probability), the class
    probabilities and, when ``ood_scores`` maps ids to scores, each image's OOD score.

    Errors are listed per route, most confident first (confident errors are where wrong labels
    hide). Paths are left out: the table is committed, the images are not. ``classes`` defaults to the
    table's ``prob_<class>`` columns.
    """
    missing = [c for c in ("id", "route", "true_label", "pred_label") if c not in pred.columns]
    if missing:
        raise KeyError(f"prediction table lacks columns {missing}")
    classes = table_classes(pred) if classes is None else list(classes)
    errors = pred[pred["true_label"] != pred["pred_label"]]
    table = errors[["id", "route", "true_label", "pred_label"]].copy()
    proba = probabilities(errors, classes)
    table["confidence"] = proba.max(axis=1)
    for k, name in enumerate(classes):
        table[prob_column(name)] = proba[:, k]
    if ood_scores is not None:
        scores = pd.Series(ood_scores, dtype=float)
        unscored = sorted(set(table["id"]) - set(scores.index))
        if unscored:
            raise ValueError(f"ood_scores lacks {len(unscored)} misclassified ids, e.g. {unscored[0]!r}")
        table["ood_score"] = table["id"].map(scores).to_numpy(dtype=float)
    route_order = {r: i for i, r in enumerate(present_routes(pred))}
    table = table.assign(_route=table["route"].map(route_order))
    return (table.sort_values(["_route", "confidence"], ascending=[True, False], kind="stable")
            .drop(columns="_route").reset_index(drop=True))


def dataset_comparison_table(comparisons: Mapping[str, dict | Sequence[dict]]) -> pd.DataFrame:
    """:func:`comparison_table` for several datasets (e.g. McNemar flat vs hierarchical on each
    external set), with a leading ``dataset`` column; values are ``compare_routes`` results."""
    frames = [comparison_table([found] if isinstance(found, Mapping) else list(found))
              .assign(dataset=dataset) for dataset, found in comparisons.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["dataset"] + [c for c in table.columns if c != "dataset"]]


def ood_table(aurocs: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per dataset told apart from the in-distribution one: image counts and OOD AUROC with
    its CI; values are :func:`hierarchy.metrics.shift.ood_auroc` results."""
    rows = []
    for dataset, result in aurocs.items():
        row = {"dataset": dataset, "n_in": result["n_in"], "n_out": result["n_out"]}
        _with_ci(row, "ood_auroc", result)
        rows.append(row)
    return pd.DataFrame(rows)


def ood_coverage_table(curves: Mapping[str, Mapping[str, Mapping]]) -> pd.DataFrame:
    """One row per (dataset, route, coverage) of ``{dataset: {route: accuracy_coverage_curve}}``:
    images kept, the OOD threshold and accuracy on the kept images with its Wilson CI."""
    rows = []
    for dataset, by_route in curves.items():
        for route, curve in by_route.items():
            for i, coverage in enumerate(curve["coverage"]):
                row = {"dataset": dataset, "route": route, "coverage": coverage,
                       "n_kept": curve["n_kept"][i], "threshold": curve["threshold"][i]}
                _with_ci(row, "accuracy", {"value": curve["accuracy"][i],
                                           "ci": [curve["ci_low"][i], curve["ci_high"][i]]})
                rows.append(row)
    return pd.DataFrame(rows)


def conformal_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (dataset, route): target coverage ``1 - alpha``, empirical coverage with its
    Wilson CI, mean set size, and the empty and singleton fractions; values are
    :func:`hierarchy.metrics.conformal.conformal_evaluation` results."""
    rows = []
    for dataset, result in results.items():
        for route, summary in result["routes"].items():
            row = {"dataset": dataset, "route": route, "n": summary["n"],
                   "target_coverage": 1 - result["alpha"]}
            _with_ci(row, "coverage", summary["coverage"])
            row.update({k: summary[k] for k in ("mean_set_size", "empty", "singleton")})
            rows.append(row)
    return pd.DataFrame(rows)


def conformal_per_class_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (dataset, route, true class): images, coverage and mean set size within the class (Mondrian
    coverage when the sets were calibrated per class); values are ``conformal_evaluation`` results."""
    return pd.DataFrame([{"dataset": dataset, "route": route, "class": row["class"], "n": row["n"],
                          "target_coverage": 1 - result["alpha"], "coverage": row["coverage"],
                          "mean_set_size": row["mean_set_size"]}
                         for dataset, result in results.items()
                         for route, summary in result["routes"].items() for row in summary["per_class"]])
