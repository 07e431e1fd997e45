"""How much of an attribution map falls on the radiologist's tumour mask."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from hierarchy.data.masks import binarise_mask

# Pointing-game tolerance: 15 px at 224 px, scaled with the map's size.
POINTING_TOLERANCE_AT_224 = 15.0
# Masks whose aspect ratio differs more than this from the map's were not aligned to the input.
_ASPECT_TOLERANCE = 0.02


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` (see :func:`binarise_mask`) as a bool array of ``shape`` (H, W), nearest-neighbour.

    Raises ``ValueError`` when the aspect ratios differ: the mask was not put through the
    input's crop and letterbox (see :func:`hierarchy.explain.align_mask_to_input`).
    """
    mask = binarise_mask(mask)
    if mask.shape == tuple(shape):
        return mask
    height, width = shape
    if abs(mask.shape[1] / mask.shape[0] - width / height) > _ASPECT_TOLERANCE * width / height:
        raise ValueError(
            f"mask of shape {mask.shape} has a different aspect ratio from the attribution map {tuple(shape)}; "
            "align it to the model input first (align_mask_to_input)"
        )
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(resized) > 0


def pointing_tolerance(shape: tuple[int, int]) -> float:
    """The pointing game's tolerance in pixels for a map of ``shape``: 15 px at 224 px, scaled."""
    return POINTING_TOLERANCE_AT_224 * max(shape) / 224.0


def near_mask(mask: np.ndarray) -> np.ndarray:
    """Pixels within the pointing tolerance of ``mask`` (a pointing-game hit wherever the peak lies in it)."""
    return ndimage.distance_transform_edt(~mask) <= pointing_tolerance(mask.shape)


def score_against_mask(attribution: np.ndarray, mask: np.ndarray) -> dict[str, float | bool | None]:
    """Score an (H, W) attribution map against a tumour mask (resized to (H, W), nearest).

    - ``inside_fraction``: share of the positive attribution mass that lies inside the mask.
    - ``pointing_hit``: whether the map's maximum lies within the mask or within
      ``15 * max(H, W) / 224`` px of it (pointing game with tolerance).

    An empty mask (no tumour) or a map with no positive value gives ``nan`` and ``None``.
    """
    attribution = np.asarray(attribution, dtype=float)
    if attribution.ndim != 2:
        raise ValueError(f"attribution must be an (H, W) map, got shape {attribution.shape}")
    mask = resize_mask(mask, attribution.shape)
    positive = np.clip(attribution, 0.0, None)
    total = positive.sum()
    if not mask.any() or total <= 0:
        return {"inside_fraction": math.nan, "pointing_hit": None}
    peak = np.unravel_index(np.argmax(positive), positive.shape)
    return {
        "inside_fraction": float(positive[mask].sum() / total),
        "pointing_hit": bool(near_mask(mask)[peak]),
    }


def mask_score_baselines(mask: np.ndarray, head: np.ndarray) -> dict[str, float | bool | None]:
    """What :func:`score_against_mask` gives by chance for one image, as the yardstick of its scores.

    - ``uniform_inside_fraction``: the inside fraction of an attribution spread evenly over the head
      (the mask's share of the head);
    - ``random_point_hit``: the pointing-game hit probability of a peak drawn uniformly in the head;
    - ``centre_point_hit``: whether a peak at the head's centre of mass would be a hit.

    ``head`` is the (H, W) head mask of the model input; an empty mask or head gives ``nan``/None.
    """
    mask = resize_mask(mask, head.shape)
    head = np.asarray(head, dtype=bool)
    if not mask.any() or not head.any():
        return {"uniform_inside_fraction": math.nan, "random_point_hit": math.nan, "centre_point_hit": None}
    near = near_mask(mask)
    centre = tuple(int(round(c)) for c in ndimage.center_of_mass(head))
    return {
        "uniform_inside_fraction": float((mask & head).sum() / head.sum()),
        "random_point_hit": float((near & head).sum() / head.sum()),
        "centre_point_hit": bool(near[centre]),
    }


def summarise_mask_scores(
    rows: pd.DataFrame, *, class_column: str = "true_label", route_column: str = "route"
) -> pd.DataFrame:
    """Mean ``inside_fraction`` and pointing-hit rate per route and class, plus ``all`` per route.

    ``rows`` holds one scored image per row (columns ``route_column``, ``class_column``,
    ``inside_fraction``, ``pointing_hit``); rows without a mask (``nan``) are left out.
    Returns columns ``route``, ``label``, ``n``, ``inside_fraction``, ``pointing_rate``.
    """
    needed = [route_column, class_column, "inside_fraction", "pointing_hit"]
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise KeyError(f"mask-score rows lack columns {missing}")
    scored = rows.loc[rows["inside_fraction"].notna() & rows["pointing_hit"].notna(), needed]
    scored = scored.astype({"inside_fraction": float, "pointing_hit": float})
    overall = scored.assign(**{class_column: "all"})
    summary = (
        pd.concat([scored, overall])
        .groupby([route_column, class_column], sort=True)
        .agg(
            n=("inside_fraction", "size"),
            inside_fraction=("inside_fraction", "mean"),
            pointing_rate=("pointing_hit", "mean"),
        )
        .reset_index()
        .rename(columns={route_column: "route", class_column: "label"})
    )
    return summary
