"""Scores of attribution maps against tumour masks, and their per-route summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hierarchy.explain import binarise_mask, resize_mask, score_against_mask, summarise_mask_scores


def _blob(size: int, centre: tuple[int, int], radius: int = 4) -> np.ndarray:
    """A map peaking at ``centre`` and falling to zero ``radius`` px away."""
    rows, cols = np.mgrid[:size, :size]
    return np.clip(1.0 - np.hypot(rows - centre[0], cols - centre[1]) / radius, 0.0, None)


def test_inside_fraction_is_the_share_of_positive_mass() -> None:
    attribution = np.zeros((4, 4))
    attribution[0, 0] = 3.0
    attribution[3, 3] = 1.0
    attribution[2, 2] = -5.0  # negative evidence is not mass
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[0, 0] = 255
    assert score_against_mask(attribution, mask)["inside_fraction"] == pytest.approx(0.75)


def test_pointing_game_tolerance_scales_with_image_size() -> None:
    mask = np.zeros((224, 224), dtype=bool)
    mask[100:120, 100:120] = True
    near = _blob(224, (110, 132))  # 12 px right of the mask: within 15 px
    far = _blob(224, (110, 140))  # 20 px away
    assert score_against_mask(near, mask)["pointing_hit"] is True
    assert score_against_mask(far, mask)["pointing_hit"] is False
    # At 56 px the tolerance is 15 * 56 / 224 = 3.75 px: 3 px off still hits, 5 px misses.
    small_mask = np.zeros((56, 56), dtype=bool)
    small_mask[25:30, 25:30] = True
    assert score_against_mask(_blob(56, (27, 32)), small_mask)["pointing_hit"] is True
    assert score_against_mask(_blob(56, (27, 34)), small_mask)["pointing_hit"] is False


def test_mask_is_resized_to_the_map_with_nearest_neighbour() -> None:
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[64:, 64:] = 1
    attribution = np.zeros((32, 32))
    attribution[20, 20] = 1.0
    assert score_against_mask(attribution, mask) == {"inside_fraction": 1.0, "pointing_hit": True}
    resized = resize_mask(mask, (32, 32))
    assert resized.dtype == bool and resized.sum() == 16 * 16


def test_misaligned_aspect_ratio_is_an_error() -> None:
    with pytest.raises(ValueError, match="align_mask_to_input"):
        score_against_mask(np.ones((64, 64)), np.ones((512, 640), dtype=bool))


@pytest.mark.parametrize(
    ("attribution", "mask"),
    [
        (np.ones((32, 32)), np.zeros((32, 32), dtype=bool)),  # no tumour (no_tumor images)
        (np.zeros((32, 32)), np.ones((32, 32), dtype=bool)),  # nothing attributed
    ],
    ids=["empty-mask", "empty-map"],
)
def test_nothing_to_score_gives_nan_and_none(attribution: np.ndarray, mask: np.ndarray) -> None:
    score = score_against_mask(attribution, mask)
    assert math.isnan(score["inside_fraction"]) and score["pointing_hit"] is None


def test_summary_per_route_and_class_skips_unscored_rows() -> None:
    rows = pd.DataFrame(
        {
            "route": ["flat", "flat", "flat", "hierarchical", "flat"],
            "true_label": ["glioma", "glioma", "pituitary", "glioma", "no_tumor"],
            "inside_fraction": [0.2, 0.6, 1.0, 0.9, math.nan],
            "pointing_hit": [False, True, True, True, None],
        }
    )
    summary = summarise_mask_scores(rows).set_index(["route", "label"])
    assert summary.loc[("flat", "glioma"), "n"] == 2
    assert summary.loc[("flat", "glioma"), "inside_fraction"] == pytest.approx(0.4)
    assert summary.loc[("flat", "glioma"), "pointing_rate"] == pytest.approx(0.5)
    assert summary.loc[("flat", "all"), "n"] == 3
    assert summary.loc[("flat", "all"), "pointing_rate"] == pytest.approx(2 / 3)
    assert ("flat", "no_tumor") not in summary.index
    assert summary.loc[("hierarchical", "glioma"), "inside_fraction"] == pytest.approx(0.9)


def test_faint_mask_edges_are_not_tumour() -> None:
    # BRISC masks are 8-bit with faint non-zero values (1..7) around the 255 tumour region.
    mask = np.array([[0, 3, 255], [7, 254, 128]], dtype=np.uint8)
    np.testing.assert_array_equal(binarise_mask(mask), [[False, False, True], [False, True, True]])
    np.testing.assert_array_equal(binarise_mask(np.array([[0, 1]], dtype=np.uint8)), [[False, True]])
    np.testing.assert_array_equal(binarise_mask(np.array([[0.2, 0.9]])), [[False, True]])
