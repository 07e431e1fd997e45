"""Masks put through the same crop and letterbox as the images they annotate."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hierarchy.data.preprocess import NORM_STD, PreprocessConfig, eval_transform, foreground_box
from hierarchy.explain import align_mask_to_input, letterbox_mask, score_against_mask

# BRISC 2025 test slices with lesion masks (512 px JPEGs: decoded at a reduced DCT scale), one per class.
BRISC_CASES = ("brisc2025_test_00015_gl_ax_t1", "brisc2025_test_00435_me_co_t1", "brisc2025_test_00925_pi_sa_t1")
BRISC_CLASS = {"gl": "glioma", "me": "meningioma", "pi": "pituitary"}

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


def test_foreground_box_is_the_head() -> None:
    scan, _ = _scan_and_mask()
    box = foreground_box(scan)
    assert box is not None and np.abs(np.subtract(box, HEAD)).max() <= 1  # the blur widens it by a pixel
    assert foreground_box(Image.new("L", (40, 30), 0)) is None


@pytest.mark.parametrize("crop", [True, False])
def test_aligned_mask_covers_the_tumour_in_the_preprocessed_input(crop: bool) -> None:
    scan, mask = _scan_and_mask()
    size = 64
    preprocess = PreprocessConfig(image_size=size, crop_foreground=crop)
    model_input = eval_transform(preprocess)(scan)[0].numpy()
    aligned = align_mask_to_input(mask, scan, preprocess)
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
        align_mask_to_input(mask.resize((100, 75)), scan, PreprocessConfig(image_size=32))
    with pytest.raises(ValueError, match="crop box"):
        letterbox_mask(mask, (0, 0, 500, 10), 32)


@pytest.mark.parametrize("case", BRISC_CASES)
def test_aligned_brisc_mask_covers_the_tumour_in_the_model_input(brisc_root, case: str) -> None:
    """The tumour in the model input is found by blacking out the mask in the decoded scan and
    seeing which input pixels darken; the aligned mask must overlap it closely."""
    image = brisc_root / "classification_task" / "test" / BRISC_CLASS[case.split("_")[3]] / f"{case}.jpg"
    mask_path = brisc_root / "segmentation_task" / "test" / "masks" / f"{case}.png"
    preprocess = PreprocessConfig(image_size=224)
    aligned = align_mask_to_input(mask_path, image, preprocess)
    tumour = np.asarray(Image.open(mask_path)) >= 128

    def blacken(decoded: Image.Image) -> Image.Image:
        on_grid = Image.fromarray(tumour).resize(decoded.size, Image.Resampling.NEAREST)
        return Image.fromarray(np.where(np.asarray(on_grid), 0, np.asarray(decoded)).astype(np.uint8))

    transform = eval_transform(preprocess)
    darkened = ((transform(image, perturb=blacken) - transform(image))[0].numpy() * NORM_STD) < -0.05
    assert aligned.shape == (224, 224)
    assert (aligned & darkened).sum() / (aligned | darkened).sum() > 0.8
