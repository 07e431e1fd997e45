"""Explain routed predictions with the model that actually decided each one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hierarchy.explain.attribution import explain
from hierarchy.labels import to_indices


def _class_indices(labels: pd.Series, classes: Sequence[str] | None) -> np.ndarray:
    """``pred_label`` values as class indices; integers pass through, names are looked up in ``classes``."""
    if pd.api.types.is_integer_dtype(labels):
        return labels.to_numpy(dtype=int)
    if classes is None:
        raise ValueError("pred_label holds class names: give classes (the model's classes_) to map them to outputs")
    return to_indices(labels, classes, what="pred_label")


def explain_predictions(
    models_by_expert: Mapping[str, nn.Module],
    images: torch.Tensor,
    pred: pd.DataFrame,
    *,
    method: str = "gradcam",
    classes: Sequence[str] | None = None,
    **kwargs,
) -> np.ndarray:
    """Attribution maps (N, H, W) for prediction rows ``pred``, row ``i`` describing ``images[i]``.

    Each image is explained by the model named in its ``expert`` column (a plane whose expert
    decided, or ``flat``), for its ``pred_label`` (a class index, or a name in ``classes``, which is then
    required).
    ``method`` and ``kwargs`` go to :func:`hierarchy.explain.explain`. Mixture rows (soft,
    ensemble routes) have no single deciding model and raise ``ValueError``, as does an expert
    missing from ``models_by_expert``.
    """
    for column in ("expert", "pred_label"):
        if column not in pred.columns:
            raise KeyError(f"prediction rows lack the {column!r} column")
    if len(pred) != len(images):
        raise ValueError(f"got {len(pred)} prediction rows for {len(images)} images")
    experts = pred["expert"].astype(str).to_numpy()
    unknown = sorted(set(experts) - set(models_by_expert))
    if unknown:
        raise ValueError(
            f"no model for experts {unknown} (mixture routes have no single deciding expert); "
            f"models given: {sorted(models_by_expert)}"
        )
    targets = _class_indices(pred["pred_label"], classes)
    maps = np.zeros((len(images), *images.shape[-2:]), dtype=np.float32)
    for expert in dict.fromkeys(experts):
        rows = np.flatnonzero(experts == expert)
        maps[rows] = explain(
            models_by_expert[expert], images[rows], targets[rows].tolist(), method=method, **kwargs
        )
    return maps
