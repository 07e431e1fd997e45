"""The prediction table shared by routing, metrics and reports.

One row per (image, route). Columns:

- ``id``: the image's identifier (dataset-relative path, file name, or ``input_<n>``)
- ``route``: ``flat``, ``hierarchical``, ``soft``, ``ensemble`` or ``oracle``
- ``pred_label`` and one ``prob_<class>`` column per tumour class (rows sum to 1)
- ``pred_plane`` and one ``plane_prob_<plane>`` column per plane (empty for the flat route); "plane" is the
  parent group, whatever column the training frame named it by (``Router(parent=...)``)
- ``expert``: the plane whose expert decided (hard routes), ``mixture`` (soft, ensemble) or ``flat``
- ``referred``: True when abstention (``reject_below``) referred the image to a human
- optional ground truth ``true_label`` and ``true_plane``, and ``path``
- for slices of DICOM/NIfTI volumes, ``SCANNER_COLUMNS``: the ``series``, the ``header_plane`` from the geometry
  with its ``plane_source`` (``header`` or ``oblique``) and ``plane_angle``, the slice's axis, index and
  position, and whether it holds ``brain``

The label sets are the table's own: ``table_classes`` and ``table_planes`` read them from the
``prob_<class>`` and ``plane_prob_<plane>`` columns (in column order); every reader (``probabilities``,
metrics, reports) uses them unless given others. ``prediction_table`` builds one route's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hierarchy.labels import to_indices

ROUTES: tuple[str, ...] = ("flat", "hierarchical", "soft", "ensemble", "oracle")
# Routes by the plane from the DICOM/NIfTI geometry where a slice has one (else as ``hierarchical``); only for
# inputs that carry header planes, so it is not among the default ROUTES.
HEADER_ROUTE = "header"
# What an index frame of DICOM/NIfTI slices adds to each prediction row (see hierarchy.data.scanner_index).
SCANNER_COLUMNS: tuple[str, ...] = ("series", "header_plane", "plane_source", "plane_angle", "slice_axis",
                                    "slice_index", "slice_position", "brain")
EXPERT_OF_ROUTE = {"flat": "flat", "soft": "mixture", "ensemble": "mixture"}
# Float32 softmax and CSV round trips may leave a probability this far outside [0, 1]; more is an error.
_PROB_TOLERANCE = 1e-6


def prob_column(label: str) -> str:
    """Column holding the probability of tumour class ``label``."""
    return f"prob_{label}"


def plane_prob_column(plane: str) -> str:
    """Column holding the probability of scan plane ``plane``."""
    return f"plane_prob_{plane}"


def table_classes(frame: pd.DataFrame) -> list[str]:
    """The tumour classes of a prediction table: its ``prob_<class>`` columns, in column order.

    Raises ``KeyError`` when the table has none.
    """
    classes = [str(c).removeprefix("prob_") for c in frame.columns if str(c).startswith("prob_")]
    if not classes:
        raise KeyError("prediction table has no prob_<class> columns, so its classes are unknown")
    return classes


def table_planes(frame: pd.DataFrame) -> list[str]:
    """The planes (parent groups) of a prediction table: its ``plane_prob_<plane>`` columns in column order;
    without such columns (a flat-only table), the sorted ``true_plane`` and ``pred_plane`` values."""
    planes = [str(c).removeprefix("plane_prob_") for c in frame.columns if str(c).startswith("plane_prob_")]
    if planes:
        return planes
    found = set()
    for column in ("true_plane", "pred_plane"):
        if column in frame.columns:
            found |= {str(v) for v in frame[column].dropna() if str(v)}
    return sorted(found)


def _row_name(frame: pd.DataFrame, position: int) -> str:
    row = frame.iloc[position]
    named = [f"{key} {row[key]!r}" for key in ("id", "route") if key in frame.columns]
    return f"row {position + 1}" + (f" ({', '.join(named)})" if named else "")


def probabilities(frame: pd.DataFrame, classes: Sequence[str] | None = None) -> np.ndarray:
    """The (n, len(classes)) tumour-probability matrix of a prediction table (``classes``: the table's own,
    ``table_classes``, unless given).

    A value outside [0, 1] (or missing) raises ``ValueError`` naming the first such row; it is never clipped.
    """
    classes = table_classes(frame) if classes is None else classes
    missing = [prob_column(c) for c in classes if prob_column(c) not in frame.columns]
    if missing:
        raise KeyError(f"prediction table lacks probability columns {missing}")
    try:
        proba = frame[[prob_column(c) for c in classes]].to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prediction table has non-numeric probabilities ({err})") from err
    outside = ~((proba >= -_PROB_TOLERANCE) & (proba <= 1 + _PROB_TOLERANCE))
    if outside.any():
        first = int(np.argmax(outside.any(axis=1)))
        raise ValueError(f"{_row_name(frame, first)} has probabilities outside [0, 1]: "
                         f"{proba[first].tolist()} ({int(outside.any(axis=1).sum())} such rows)")
    return proba


def plane_probabilities(frame: pd.DataFrame, planes: Sequence[str] | None = None) -> np.ndarray:
    """The (n, len(planes)) plane-probability matrix of a prediction table (``planes``: the table's own
    ``plane_prob_<plane>`` columns unless given)."""
    planes = table_planes(frame) if planes is None else planes
    missing = [plane_prob_column(p) for p in planes if plane_prob_column(p) not in frame.columns]
    if missing:
        raise KeyError(f"prediction table lacks plane-probability columns {missing}")
    return frame[[plane_prob_column(p) for p in planes]].to_numpy(dtype=float)


def label_indices(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Integer indices of ``labels`` in ``classes``; ``hierarchy.labels.to_indices`` with tumour classes."""
    return to_indices(labels, classes)


def prediction_table(ids: Sequence[str], route: str, proba: np.ndarray, *, classes: Sequence[str],
                     planes: Sequence[str], plane_proba: np.ndarray | None, expert: Sequence[str] | None,
                     referred: np.ndarray, truth: pd.DataFrame | None = None,
                     parent: str = "plane") -> pd.DataFrame:
    """One route's rows of the prediction table.

    ``plane_proba`` is None for the flat route; ``expert`` is the deciding plane per image for the
    hierarchical and oracle routes (else the route's fixed value). ``truth``: the index frame of the images,
    whose ``label``, ``parent`` and ``path`` columns become ``true_label``, ``true_plane`` and ``path``.
    """
    n = len(ids)
    table = pd.DataFrame({"id": list(ids), "route": route})
    table["pred_label"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    for i, label in enumerate(classes):
        table[prob_column(label)] = proba[:, i]
    if plane_proba is None:
        table["pred_plane"] = None
        plane_proba = np.full((n, len(planes)), np.nan)
    else:
        table["pred_plane"] = np.asarray(planes, dtype=object)[plane_proba.argmax(axis=1)]
    for i, plane in enumerate(planes):
        table[plane_prob_column(plane)] = plane_proba[:, i]
    table["expert"] = EXPERT_OF_ROUTE[route] if route in EXPERT_OF_ROUTE else np.asarray(expert, dtype=object)
    table["referred"] = referred
    if truth is not None:
        for column, source in (("true_label", "label"), ("true_plane", parent), ("path", "path"),
                               *((c, c) for c in SCANNER_COLUMNS)):
            if source in truth.columns:
                table[column] = truth[source].to_numpy()
    return table


SERIES_TOP_SLICES = 3  # slices listed as having driven a series prediction


def series_predictions(table: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One prediction per (route, series) from a prediction table of DICOM/NIfTI slices.

    The aggregation: the mean tumour probability over the series' brain slices (``brain`` True; all its
    slices when none is), ``pred_label`` its argmax. ``driving_slices`` lists the ids of the
    ``SERIES_TOP_SLICES`` slices with the highest probability of that label. Also: ``n_slices``, ``n_used``,
    the most common ``header_plane`` and (of the used slices) ``pred_plane``, ``plane_agreement`` (share of
    used slices whose predicted plane is the header's), ``referred_fraction`` and the mean ``ood_score`` when
    the table has them, and ``true_label`` when every slice of the series has the same one. Rows without a
    series (plain images) are left out; a table without a ``series`` column gives an empty frame.
    ``classes``: the table's own (``table_classes``) unless given.
    """
    if "series" not in table.columns:
        return pd.DataFrame()
    classes = table_classes(table) if classes is None else list(classes)
    rows = []
    slices = table[table["series"].notna()]
    for (route, series), group in slices.groupby(["route", "series"], sort=True):
        brain = group["brain"].fillna(False).astype(bool) if "brain" in group.columns else None
        used = group[brain] if brain is not None and brain.any() else group
        proba = probabilities(used, classes).mean(axis=0)
        label = classes[int(np.argmax(proba))]
        top = used.assign(_p=used[prob_column(label)]).nlargest(SERIES_TOP_SLICES, "_p")["id"].tolist()
        row = {"series": series, "route": route, "pred_label": label,
               **{prob_column(c): float(p) for c, p in zip(classes, proba, strict=True)},
               "n_slices": len(group), "n_used": len(used), "driving_slices": ";".join(map(str, top))}
        header = group["header_plane"].dropna() if "header_plane" in group.columns else pd.Series([], dtype=object)
        row["header_plane"] = header.mode().iloc[0] if len(header) else None
        predicted = used["pred_plane"].dropna() if "pred_plane" in used.columns else pd.Series([], dtype=object)
        row["pred_plane"] = predicted.mode().iloc[0] if len(predicted) else None
        if len(predicted) and "header_plane" in used.columns:
            row["plane_agreement"] = float((used["pred_plane"] == used["header_plane"]).mean())
        if "referred" in used.columns:
            row["referred_fraction"] = float(used["referred"].astype(bool).mean())
        if "ood_score" in used.columns:
            row["ood_score"] = float(used["ood_score"].mean())
        if "true_label" in group.columns and group["true_label"].nunique(dropna=False) == 1:
            row["true_label"] = group["true_label"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def check_inputs(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``y_true`` as int indices and ``proba`` as a float ``(n, k)`` matrix."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2:
        raise ValueError(f"proba must be a 2-D (n, n_classes) array, got shape {proba.shape}")
    if y_true.shape != (proba.shape[0],):
        raise ValueError(f"y_true has shape {y_true.shape} but proba has {proba.shape[0]} rows")
    if len(y_true) == 0:
        raise ValueError("no predictions to evaluate")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba contains NaN or infinite values")
    if not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= proba.shape[1]:
        raise ValueError(f"y_true must hold class indices in [0, {proba.shape[1]})")
    return y_true.astype(int), proba
