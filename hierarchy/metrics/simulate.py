"""Simulated prediction tables with known behaviour, for tests, examples and checking a report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import softmax

from hierarchy.predictions import ROUTES, plane_prob_column, prob_column


def simulate_predictions(n_images: int = 200, *, classes: Sequence[str], planes: Sequence[str],
                         routes: Sequence[str] = ROUTES, skill: float = 2.5, plane_skill: float = 4.0,
                         refer_below: float | None = None, seed: int = 0) -> pd.DataFrame:
    """A prediction table (see ``hierarchy.predictions``) for ``n_images`` simulated images per route.

    ``classes`` and ``planes`` are the label sets, required (``hierarchy.labels.TUMOR_CLASSES`` and ``PLANES``
    for tables like BRISC's).
    Each route's logits are ``skill`` on the true class plus unit Gaussian noise; the plane
    classifier's likewise with ``plane_skill``; the flat route has no plane columns. Rows whose top
    probability is below ``refer_below`` are marked ``referred``. Not data: never report these numbers.
    """
    classes, planes = list(classes), list(planes)
    if n_images < len(classes):
        raise ValueError(f"n_images must be at least {len(classes)}, got {n_images}")
    rng = np.random.default_rng(seed)
    true_idx = np.arange(n_images) % len(classes)
    plane_idx = rng.integers(0, len(planes), n_images)
    frames = []
    for route in routes:
        proba = softmax(skill * np.eye(len(classes))[true_idx]
                        + rng.normal(size=(n_images, len(classes))), axis=1)
        frame = pd.DataFrame({"id": [f"img_{i:04d}.jpg" for i in range(n_images)], "route": route,
                              "pred_label": np.array(classes)[proba.argmax(axis=1)]})
        for k, name in enumerate(classes):
            frame[prob_column(name)] = proba[:, k]
        if route == "flat":
            frame["pred_plane"] = None
            frame["expert"] = "flat"
        else:
            plane_proba = softmax(plane_skill * np.eye(len(planes))[plane_idx]
                                  + rng.normal(size=(n_images, len(planes))), axis=1)
            frame["pred_plane"] = np.array(planes)[plane_proba.argmax(axis=1)]
            for k, name in enumerate(planes):
                frame[plane_prob_column(name)] = plane_proba[:, k]
            frame["expert"] = (frame["pred_plane"] if route in ("hierarchical", "oracle")
                               else "mixture")
        frame["referred"] = (proba.max(axis=1) < refer_below) if refer_below else False
        frame["true_label"] = np.array(classes)[true_idx]
        frame["true_plane"] = np.array(planes)[plane_idx]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
