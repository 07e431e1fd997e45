"""Missed tumours: tumour-vs-no-tumour sensitivity, per-class misses, and errors caused by routing.

Functions take the prediction-table rows of one route (see :mod:`hierarchy.predictions`) with a
``true_label`` column; predictions are the table's ``pred_label``. A missed tumour is a tumour image
(``true_label`` not ``no_tumor``) called ``no_tumor``: ``missed_mask`` is that definition's one home. The
classes are the table's own (``table_classes``) unless given; without a ``no_tumor`` class there is no
missed tumour to count and ``false_negative_analysis`` gives None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hierarchy.labels import NO_TUMOR
from hierarchy.metrics.intervals import proportion
from hierarchy.predictions import prob_column, table_classes

MISSED_COLUMNS = ("id", "route", "true_label", "pred_label", "true_plane", "pred_plane", "expert")


def missed_mask(true_labels: Sequence[str], pred_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(tumour, missed): which images are tumours (truth not ``no_tumor``) and which of them were called
    ``no_tumor``; the one definition of a missed tumour (tumour false negative)."""
    tumour = np.asarray(true_labels, dtype=object) != NO_TUMOR
    return tumour, tumour & (np.asarray(pred_labels, dtype=object) == NO_TUMOR)


def tumour_detection(frame: pd.DataFrame, confidence: float = 0.95) -> dict:
    """Tumour-vs-no-tumour sensitivity and false-negative rate (tumour called ``no_tumor``), both
    as ``{"value", "ci" (Wilson), "successes", "n"}``, and the false-positive count."""
    tumour, missed_tumour = missed_mask(frame["true_label"], frame["pred_label"])
    called_clear = frame["pred_label"].to_numpy(dtype=object) == NO_TUMOR
    n_tumours = int(tumour.sum())
    missed = int(missed_tumour.sum())
    return {
        "n_tumours": n_tumours,
        "n_missed": missed,
        "sensitivity": proportion(n_tumours - missed, n_tumours, confidence),
        "false_negative_rate": proportion(missed, n_tumours, confidence),
        "n_false_positives": int((~tumour & ~called_clear).sum()),
    }


def detection_rates(true_labels: Sequence[str], pred_labels: Sequence[str],
                    confidence: float = 0.95) -> dict[str, dict | None]:
    """No-tumour recall and tumour false-negative rate (a tumour called ``no_tumor``) of paired label lists,
    each a ``proportion`` dict (Wilson CI); None where there is no such image."""
    tumour, missed = missed_mask(true_labels, pred_labels)
    normal = ~tumour
    called_clear = np.asarray(pred_labels, dtype=object) == NO_TUMOR
    return {"no_tumor_recall": proportion(int((normal & called_clear).sum()), int(normal.sum()), confidence)
            if normal.any() else None,
            "tumor_fnr": proportion(int(missed.sum()), int(tumour.sum()), confidence)
            if tumour.any() else None}


def per_class_misses(frame: pd.DataFrame, classes: Sequence[str] | None = None,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Per tumour class: images, how many were called ``no_tumor`` (with rate and Wilson CI), and
    how many were given another tumour class."""
    rows = []
    for name in table_classes(frame) if classes is None else classes:
        if name == NO_TUMOR:
            continue
        truth = frame[frame["true_label"] == name]
        n = len(truth)
        as_clear = int((truth["pred_label"] == NO_TUMOR).sum())
        wrong_tumour = int(((truth["pred_label"] != NO_TUMOR) & (truth["pred_label"] != name)).sum())
        rate = proportion(as_clear, n, confidence)
        rows.append({"class": name, "n": n, "missed_as_no_tumor": as_clear,
                     "missed_rate": rate["value"], "missed_rate_ci_low": rate["ci"][0],
                     "missed_rate_ci_high": rate["ci"][1], "other_tumour_class": wrong_tumour})
    return pd.DataFrame(rows)


def missed_tumours(frame: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Every tumour image predicted ``no_tumor``: id, route, labels, planes, expert, path and the
    class probabilities (columns the table lacks are left out)."""
    classes = table_classes(frame) if classes is None else classes
    missed = frame[missed_mask(frame["true_label"], frame["pred_label"])[1]]
    columns = [c for c in MISSED_COLUMNS if c in frame.columns]
    columns += [prob_column(c) for c in classes if prob_column(c) in frame.columns]
    return missed[columns].reset_index(drop=True)


def rows_with_planes(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Rows with both a true and a predicted plane, or None when there are none (e.g. the flat route)."""
    if "true_plane" not in frame.columns or "pred_plane" not in frame.columns:
        return None
    known = frame.dropna(subset=["true_plane", "pred_plane"])
    known = known[(known["true_plane"] != "") & (known["pred_plane"] != "")]
    return None if known.empty else known


def routing_errors(frame: pd.DataFrame) -> dict | None:
    """Tumour-class errors split by whether the plane classifier was right.

    Uses rows with both ``true_plane`` and ``pred_plane``; returns None when there are none (e.g. the
    flat route). ``wrong_plane_wrong_tumour`` are errors that routing to the wrong expert may explain;
    ``right_plane_wrong_tumour`` are the expert's own.
    """
    known = rows_with_planes(frame)
    if known is None:
        return None
    wrong_plane = known["true_plane"] != known["pred_plane"]
    wrong_tumour = known["true_label"] != known["pred_label"]
    return {
        "n": len(known),
        "n_wrong_plane": int(wrong_plane.sum()),
        "n_wrong_tumour": int(wrong_tumour.sum()),
        "wrong_plane_wrong_tumour": int((wrong_plane & wrong_tumour).sum()),
        "wrong_plane_right_tumour": int((wrong_plane & ~wrong_tumour).sum()),
        "right_plane_wrong_tumour": int((~wrong_plane & wrong_tumour).sum()),
    }


def false_negative_analysis(frame: pd.DataFrame, classes: Sequence[str] | None = None,
                            confidence: float = 0.95) -> dict | None:
    """All of the above for one route, JSON-ready: ``{"detection", "per_class" (records),
    "missed" (records), "routing"}``; None when ``classes`` has no ``no_tumor``."""
    classes = table_classes(frame) if classes is None else classes
    if NO_TUMOR not in classes:
        return None
    missed = missed_tumours(frame, classes).astype(object)
    return {
        "detection": tumour_detection(frame, confidence),
        "per_class": per_class_misses(frame, classes, confidence).to_dict(orient="records"),
        "missed": missed.where(missed.notna(), None).to_dict(orient="records"),
        "routing": routing_errors(frame),
    }
