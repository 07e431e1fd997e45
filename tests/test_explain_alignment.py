"""Masks put through the same crop and letterbox as the images they annotate."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hierarchy.data.preprocess import PreprocessConfig, eval_transform
from hierarchy.explain import align_mask_to_input, letterbox_mask, score_against_mask

# A 120 x 80 (w x h) "head" at (30, 20) on a 200 x 150 black scan, with a bright "tumour" in it.
HEAD = (30, 20, 150, 100)
TUMOUR = (100, 30, 130, 60)


def _scan_and_mask() -> tuple[Image.Image, Image.Image]:
    scan = np.zeros((150, 200), dtype=np.uint8)
    scan[HEAD[1]:HEAD[3], HEAD[0]:HEAD[2]] = 100
    scan[TUMOUR[1]:TUMOUR[3], TUMOUR[0]:TUMOUR[2]] = 250
    mask = np.zeros_like(scan)
    mask[TUMOUR[1]:TUMOUR[3], TUMOUR[0]:TUMOUR[2]] = 255
    return Image.fromarray(scan), Image.fromarray(mask)


@pytest.mark.parametrize(("crop", "box"), [(True, HEAD), (False, None)])
def test_aligned_mask_covers_the_tumour_in_the_preprocessed_input(crop: bool, box: tuple | None) -> None:
    scan, mask = _scan_and_mask()
    size = 64
    model_input = eval_transform(PreprocessConfig(image_size=size, crop_foreground=crop))(scan)[0].numpy()
    aligned = align_mask_to_input(mask, scan, crop_box=box, size=size)
    assert aligned.shape == (size, size)
    tumour_in_input = model_input > model_input.max() - 0.5  # the brightest pixels
    overlap = (aligned & tumour_in_input).sum() / (aligned | tumour_in_input).sum()
    assert overlap > 0.8
    # An attribution map on the input's tumour pixels scores fully inside the aligned mask.
    assert score_against_mask(tumour_in_input.astype(float), aligned)["inside_fraction"] > 0.9


def test_letterbox_pads_centred_to_a_square() -> None:
    mask = np.ones((10, 40), dtype=bool)  # 40 x 10 -> 20 x 5, padded 7 rows above and 8 below
    expected = np.zeros((20, 20), dtype=bool)
    expected[7:12] = True
    np.testing.assert_array_equal(letterbox_mask(mask, None, 20), expected)


def test_mask_and_image_must_share_a_grid() -> None:
    scan, mask = _scan_and_mask()
    with pytest.raises(ValueError, match="share a pixel grid"):
        align_mask_to_input(mask.resize((100, 75)), scan, crop_box=None, size=32)
    with pytest.raises(ValueError, match="crop box"):
        align_mask_to_input(mask, scan, crop_box=(0, 0, 500, 10), size=32)
