"""Simulated prediction tables with known behaviour, for tests, examples and checking a report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import softmax

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.predictions import ROUTES, plane_prob_column, prob_column


def simulate_predictions(n_images: int = 200, *, routes: Sequence[str] = ROUTES,
                         skill: float = 2.5, plane_skill: float = 4.0, refer_below: float | None = None,
                         seed: int = 0) -> pd.DataFrame:
    """A prediction table (see ``hierarchy.predictions``) for ``n_images`` simulated images per route.

    Each route's logits are ``skill`` on the true class plus unit Gaussian noise; the plane
    classifier's likewise with ``plane_skill``; the flat route has no plane columns. Rows whose top
    probability is below ``refer_below`` are marked ``referred``. Not data: never report these numbers.
    """
    if n_images < len(TUMOR_CLASSES):
        raise ValueError(f"n_images must be at least {len(TUMOR_CLASSES)}, got {n_images}")
    rng = np.random.default_rng(seed)
    true_idx = np.arange(n_images) % len(TUMOR_CLASSES)
    plane_idx = rng.integers(0, len(PLANES), n_images)
    frames = []
    for route in routes:
        proba = softmax(skill * np.eye(len(TUMOR_CLASSES))[true_idx]
                        + rng.normal(size=(n_images, len(TUMOR_CLASSES))), axis=1)
        frame = pd.DataFrame({"id": [f"img_{i:04d}.jpg" for i in range(n_images)], "route": route,
                              "pred_label": np.array(TUMOR_CLASSES)[proba.argmax(axis=1)]})
        for k, name in enumerate(TUMOR_CLASSES):
            frame[prob_column(name)] = proba[:, k]
        if route == "flat":
            frame["pred_plane"] = None
            frame["expert"] = "flat"
        else:
            plane_proba = softmax(plane_skill * np.eye(len(PLANES))[plane_idx]
                                  + rng.normal(size=(n_images, len(PLANES))), axis=1)
            frame["pred_plane"] = np.array(PLANES)[plane_proba.argmax(axis=1)]
            for k, name in enumerate(PLANES):
                frame[plane_prob_column(name)] = plane_proba[:, k]
            frame["expert"] = (frame["pred_plane"] if route in ("hierarchical", "oracle")
                               else "mixture")
        frame["referred"] = (proba.max(axis=1) < refer_below) if refer_below else False
        frame["true_label"] = np.array(TUMOR_CLASSES)[true_idx]
        frame["true_plane"] = np.array(PLANES)[plane_idx]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
