"""The prediction table shared by routing, metrics and reports.

One row per (image, route). Columns:

- ``id``: the image's identifier (dataset-relative path, file name, or ``input_<n>``)
- ``route``: ``flat``, ``hierarchical``, ``soft``, ``ensemble`` or ``oracle``
- ``pred_label`` and one ``prob_<class>`` column per tumour class (rows sum to 1)
- ``pred_plane`` and one ``plane_prob_<plane>`` column per plane (empty for the flat route)
- ``expert``: the plane whose expert decided (hard routes), ``mixture`` (soft, ensemble) or ``flat``
- ``referred``: True when abstention (``reject_below``) referred the image to a human
- optional ground truth ``true_label`` and ``true_plane``, and ``path``
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hierarchy.labels import PLANES, TUMOR_CLASSES

ROUTES: tuple[str, ...] = ("flat", "hierarchical", "soft", "ensemble", "oracle")
# Float32 softmax and CSV round trips may leave a probability this far outside [0, 1]; more is an error.
_PROB_TOLERANCE = 1e-6


def prob_column(label: str) -> str:
    """Column holding the probability of tumour class ``label``."""
    return f"prob_{label}"


def plane_prob_column(plane: str) -> str:
    """Column holding the probability of scan plane ``plane``."""
    return f"plane_prob_{plane}"


def _row_name(frame: pd.DataFrame, position: int) -> str:
    row = frame.iloc[position]
    named = [f"{key} {row[key]!r}" for key in ("id", "route") if key in frame.columns]
    return f"row {position + 1}" + (f" ({', '.join(named)})" if named else "")


def probabilities(frame: pd.DataFrame, classes: Sequence[str] = TUMOR_CLASSES) -> np.ndarray:
    """The (n, len(classes)) tumour-probability matrix of a prediction table.

    A value outside [0, 1] (or missing) raises ``ValueError`` naming the first such row; it is never clipped.
    """
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


def plane_probabilities(frame: pd.DataFrame, planes: Sequence[str] = PLANES) -> np.ndarray:
    """The (n, len(planes)) plane-probability matrix of a prediction table."""
    missing = [plane_prob_column(p) for p in planes if plane_prob_column(p) not in frame.columns]
    if missing:
        raise KeyError(f"prediction table lacks plane-probability columns {missing}")
    return frame[[plane_prob_column(p) for p in planes]].to_numpy(dtype=float)


def label_indices(labels: Sequence[str], classes: Sequence[str] = TUMOR_CLASSES) -> np.ndarray:
    """Integer indices of ``labels`` in ``classes``; an unknown label raises ``ValueError``."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if v not in lookup})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([lookup[v] for v in labels], dtype=int)
