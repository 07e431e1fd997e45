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

from hierarchy.labels import PLANES, TUMOR_CLASSES, to_indices

ROUTES: tuple[str, ...] = ("flat", "hierarchical", "soft", "ensemble", "oracle")


def prob_column(label: str) -> str:
    """Column holding the probability of tumour class ``label``."""
    return f"prob_{label}"


def plane_prob_column(plane: str) -> str:
    """Column holding the probability of scan plane ``plane``."""
    return f"plane_prob_{plane}"


def probabilities(frame: pd.DataFrame, classes: Sequence[str] = TUMOR_CLASSES) -> np.ndarray:
    """The (n, len(classes)) tumour-probability matrix of a prediction table."""
    missing = [prob_column(c) for c in classes if prob_column(c) not in frame.columns]
    if missing:
        raise KeyError(f"prediction table lacks probability columns {missing}")
    return frame[[prob_column(c) for c in classes]].to_numpy(dtype=float)


def plane_probabilities(frame: pd.DataFrame, planes: Sequence[str] = PLANES) -> np.ndarray:
    """The (n, len(planes)) plane-probability matrix of a prediction table."""
    missing = [plane_prob_column(p) for p in planes if plane_prob_column(p) not in frame.columns]
    if missing:
        raise KeyError(f"prediction table lacks plane-probability columns {missing}")
    return frame[[plane_prob_column(p) for p in planes]].to_numpy(dtype=float)


def label_indices(labels: Sequence[str], classes: Sequence[str] = TUMOR_CLASSES) -> np.ndarray:
    """Integer indices of ``labels`` in ``classes``; ``hierarchy.labels.to_indices`` with tumour classes."""
    return to_indices(labels, classes)
