"""Counterfactual images (paste-in, removal, background swap, style swap) on phantoms with known masks,
and the counterfactual training dataset built from them."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hierarchy.data import ImageDataset, PreprocessConfig, counterfactual_augment
from hierarchy.data.counterfactual import (
    REMOVAL_METHODS,
    FileStyle,
    head_of,
    healthy_region,
    match_intensity,
    paste_tumour,
    remove_tumour,
    restyle_like,
    swap_background,
)
from hierarchy.data.counterfactual_augment import CounterfactualAugment

SIZE = 96


def _brain(level: float = 100.0, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A head phantom: a bright skull ring around a textured brain, on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    image = np.zeros((size, size))
    image[r < 0.45 * size] = 190.0
    image[r < 0.40 * size] = level
    image += rng.normal(0, 3, image.shape) * (r < 0.45 * size)
    return np.clip(image, 0, 255).astype(np.uint8)


def _disc(cx: float, cy: float, radius: float, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(xx - cx, yy - cy) < radius


def _tumour_image(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    mask = _disc(0.35 * SIZE, 0.40 * SIZE, 0.08 * SIZE)
    image = _brain(seed=seed)
    image[mask] = 240
    return image, mask


def test_paste_tumour_puts_the_tumour_at_the_matching_position_in_the_recipients_intensities() -> None:
    donor, mask = _tumour_image()
    recipient = (_brain(level=60.0, seed=2) * 0.5).astype(np.uint8)  # a darker source
    composite, pasted = paste_tumour(recipient, donor, mask)
    assert composite.shape == recipient.shape and composite.dtype == np.uint8
    np.testing.assert_array_equal(pasted, mask)  # same shape: same place
    assert composite[mask].mean() > composite[~mask & _disc(SIZE / 2, SIZE / 2, 0.38 * SIZE)].mean() + 20
    assert composite[mask].max() <= recipient.max() + 1  # mapped onto the recipient's range, not the donor's 240
    far = ~_disc(0.35 * SIZE, 0.40 * SIZE, 0.2 * SIZE)
    np.testing.assert_array_equal(composite[far], recipient[far])


def test_paste_tumour_rescales_the_donor_to_the_recipients_shape() -> None:
    donor, mask = _tumour_image()
    recipient = np.asarray(Image.fromarray(_brain(seed=3)).resize((144, 120)))
    composite, pasted = paste_tumour(recipient, donor, mask)
    assert composite.shape == (120, 144) and pasted.shape == (120, 144)
    ys, xs = np.nonzero(pasted)
    assert abs(xs.mean() / 144 - 0.35) < 0.02 and abs(ys.mean() / 120 - 0.40) < 0.02


@pytest.mark.parametrize("method", REMOVAL_METHODS)
def test_remove_tumour_fills_the_region_with_brain(method: str) -> None:
    image, mask = _tumour_image()
    removed = remove_tumour(image, mask, method=method)
    brain_level = np.median(image[_disc(SIZE / 2, SIZE / 2, 0.38 * SIZE) & ~mask])
    assert abs(float(np.median(removed[mask])) - brain_level) < 15
    assert removed[mask].max() < 200
    far = ~_disc(0.35 * SIZE, 0.40 * SIZE, 0.2 * SIZE)
    np.testing.assert_array_equal(removed[far], image[far])


def test_smooth_removal_has_no_texture_and_diffusion_keeps_the_tissues() -> None:
    image, mask = _tumour_image()
    image = image.astype(np.float64)
    image[~mask] += np.random.default_rng(0).normal(0, 8, image.shape)[~mask]  # textured tissue around the tumour
    image = np.clip(image, 0, 255).astype(np.uint8)
    core = _disc(0.35 * SIZE, 0.40 * SIZE, 0.05 * SIZE)

    def roughness(method: str) -> float:  # pixel-to-pixel change inside the filled core
        filled = remove_tumour(image, mask, method=method).astype(np.float64)
        return float(np.abs(np.diff(filled, axis=1))[core[:, 1:] & core[:, :-1]].mean())

    tissue = float(np.abs(np.diff(image.astype(np.float64), axis=1))[~mask[:, 1:] & ~mask[:, :-1]
                                                                        & (image[:, 1:] > 50)].mean())
    assert roughness("smooth") < 0.2 * tissue < roughness("diffusion")


def test_remove_tumour_refuses_an_unknown_method_and_keeps_an_empty_mask() -> None:
    image, mask = _tumour_image()
    with pytest.raises(ValueError, match="unknown removal method"):
        remove_tumour(image, mask, method="magic")
    np.testing.assert_array_equal(remove_tumour(image, np.zeros_like(mask)), image)


def test_swap_background_keeps_the_tumour_and_takes_the_rest_from_the_normal() -> None:
    image, mask = _tumour_image()
    normal = _brain(level=150.0, seed=4)
    swapped = swap_background(image, mask, normal, margin=0.05)
    np.testing.assert_array_equal(swapped[mask], image[mask])
    far = ~_disc(0.35 * SIZE, 0.40 * SIZE, 0.25 * SIZE)
    np.testing.assert_array_equal(swapped[far], normal[far])


def test_match_intensity_maps_quantiles_onto_the_reference() -> None:
    rng = np.random.default_rng(0)
    source = rng.integers(0, 100, size=(50, 50)).astype(np.uint8)
    reference = (rng.integers(0, 100, size=(40, 40)) + 120).astype(np.uint8)
    matched = match_intensity(source, reference)
    assert abs(np.median(matched) - np.median(reference)) < 3
    assert np.all(np.diff(matched.ravel()[np.argsort(source.ravel(), kind="stable")]) >= -1e-9)  # order kept


def _jpeg(image: np.ndarray, *, mode: str, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


def test_restyle_like_takes_the_reference_files_size_histogram_and_quantisation() -> None:
    image, _ = _tumour_image()
    reference_file = _jpeg(np.asarray(Image.fromarray(_brain(level=160.0, seed=5)).resize((130, 110))),
                           mode="RGB", quality=30)
    reference = np.asarray(reference_file.convert("L"))
    style = FileStyle.of(reference_file)
    assert style.mode == "RGB" and style.size == (130, 110) and len(style.qtables) == 2
    restyled = restyle_like(image, reference, style)
    assert restyled.size == (130, 110) and restyled.mode == "L"
    assert abs(np.median(np.asarray(restyled)) - np.median(reference)) < 12
    png_style = FileStyle((10, 10), "L", None)
    assert png_style.reencode(Image.fromarray(image)).tobytes() == Image.fromarray(image).tobytes()


@pytest.fixture()
def cf_frame(tmp_path) -> pd.DataFrame:
    """Two tumour images with masks and two normals, all axial, as files."""
    rows = []
    for i in range(2):
        image, mask = _tumour_image(seed=10 + i)
        path, mask_path = tmp_path / f"t{i}.jpg", tmp_path / f"t{i}.png"
        Image.fromarray(image).save(path, quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        rows.append({"path": str(path), "label": "glioma", "plane": "axial", "mask_path": str(mask_path)})
    for i in range(2):
        path = tmp_path / f"n{i}.jpg"
        _jpeg(_brain(level=90.0, seed=20 + i), mode="RGB", quality=80).save(path)
        rows.append({"path": str(path), "label": "no_tumor", "plane": "axial", "mask_path": None})
    return pd.DataFrame(rows)


CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")


def _dataset(frame: pd.DataFrame, **augment: float) -> ImageDataset:
    pp = PreprocessConfig(image_size=64, augment="none")
    counterfactual = CounterfactualAugment(frame, CLASSES, **augment) if augment else None
    return ImageDataset(frame, pp, classes=CLASSES, train=True, seed=0, counterfactual=counterfactual,
                        return_masks=True)


def test_dataset_returns_masks_moved_with_the_image(cf_frame: pd.DataFrame) -> None:
    data = _dataset(cf_frame)
    x, target, mask = data[0]
    assert x.shape == (1, 64, 64) and mask.shape == (64, 64) and target == CLASSES.index("glioma")
    assert 0.01 < float(mask.mean()) < 0.2
    assert float(x[0][mask > 0.5].mean()) > float(x[0][mask < 0.5].mean())  # the mask lies on the bright tumour
    _, normal_target, normal_mask = data[2]
    assert normal_target == CLASSES.index("no_tumor") and float(normal_mask.abs().sum()) == 0.0
    unknown = cf_frame.assign(mask_path=None)
    assert float(_dataset(unknown)[0][2].min()) == -1.0  # a tumour without a mask: unknown


def test_dataset_pastes_in_and_removes_tumours_with_their_labels(cf_frame: pd.DataFrame) -> None:
    data = _dataset(cf_frame, paste_p=1.0, removal_p=1.0)
    _, pasted_target, pasted_mask = data[2]  # a normal row gets a glioma
    assert pasted_target == CLASSES.index("glioma") and float(pasted_mask.sum()) > 10
    x, removed_target, removed_mask = data[0]  # a tumour row loses it
    assert removed_target == CLASSES.index("no_tumor") and float(removed_mask.sum()) == 0.0
    original = _dataset(cf_frame)[0][0]
    assert float(x.max()) < float(original.max())


def test_dataset_counterfactuals_are_reproducible_per_seed_and_epoch(cf_frame: pd.DataFrame) -> None:
    first, second = (_dataset(cf_frame, paste_p=0.5, removal_p=0.5, style_swap_p=0.5) for _ in range(2))
    for row in range(len(cf_frame)):
        a, b = first[row], second[row]
        assert torch.equal(a[0], b[0]) and a[1] == b[1] and torch.equal(a[2], b[2])


def test_style_swap_does_not_change_labels(cf_frame: pd.DataFrame) -> None:
    data = _dataset(cf_frame, style_swap_p=1.0)
    plain = _dataset(cf_frame)
    assert [data[i][1] for i in range(4)] == [plain[i][1] for i in range(4)]
    assert any(not torch.equal(data[i][0], plain[i][0]) for i in range(4))


def test_counterfactual_settings_are_checked(cf_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="paste_p"):
        CounterfactualAugment(cf_frame, CLASSES, paste_p=1.5)
    with pytest.raises(ValueError, match="no_tumor"):
        CounterfactualAugment(cf_frame, ("glioma", "meningioma"), removal_p=0.5)
    with pytest.raises(ValueError, match="mask"):
        CounterfactualAugment(cf_frame.assign(mask_path=None), CLASSES, paste_p=0.5)
    with pytest.raises(ValueError, match="training datasets"):
        ImageDataset(cf_frame, PreprocessConfig(image_size=64), classes=CLASSES,
                     counterfactual=CounterfactualAugment(cf_frame, CLASSES, paste_p=0.5))


def test_healthy_region_keeps_the_shape_inside_the_head_and_away_from_the_tumour() -> None:
    image, tumour = _tumour_image()
    head = head_of(image)
    shape = _disc(30, 30, 6)
    for seed in range(5):
        region = healthy_region(shape, head, tumour, np.random.default_rng(seed), tries=20)
        assert region is not None and region.sum() == shape.sum()
        assert (region & head).sum() >= 0.8 * region.sum() and not (region & tumour).any()
    assert healthy_region(shape, head, np.ones_like(head), np.random.default_rng(0)) is None  # nowhere free
    assert healthy_region(np.zeros_like(shape), head, tumour, np.random.default_rng(0)) is None


def test_sham_rates_make_each_edit_as_common_under_both_labels(cf_frame: pd.DataFrame) -> None:
    # 2 masked tumours, 2 normals, removal 0.5, paste 0.5: of the 2 images labelled no tumour (a normal and a
    # removed tumour) 1 carries a fill; of the 2 labelled tumour (a tumour and a pasted normal) 1 carries a seam
    augment = CounterfactualAugment(cf_frame, CLASSES, paste_p=0.5, removal_p=0.5, sham_edits=True)
    assert augment.sham_rates() == pytest.approx((0.5, 0.5))
    # removal 0.25 alone: 0.5 removed tumours among 2.5 images labelled no tumour
    assert CounterfactualAugment(cf_frame, CLASSES, removal_p=0.25, sham_edits=True).sham_rates() == \
        pytest.approx((0.2, 0.0))
    assert CounterfactualAugment(cf_frame, CLASSES, paste_p=0.5).sham_fill_p == 0.0  # off unless asked
    with pytest.raises(ValueError, match="sham_edits"):
        CounterfactualAugment(cf_frame, CLASSES, style_swap_p=0.5, sham_edits=True)
    # a third tumour without a mask is never filled (the fill could cover it), so the two masked ones carry the
    # fill of all three: 0.5 removed among 2.5 labelled no tumour, 0.5 fills among 2.5 labelled tumour
    unmasked = pd.concat([cf_frame, cf_frame.iloc[[0]].assign(mask_path=None)], ignore_index=True)
    assert CounterfactualAugment(unmasked, CLASSES, removal_p=0.25, sham_edits=True).sham_rates() == \
        pytest.approx((1 / 3, 0.0))


def test_sham_edits_change_the_image_away_from_the_tumour_and_keep_label_and_mask(cf_frame: pd.DataFrame) -> None:
    augment = CounterfactualAugment(cf_frame, CLASSES, paste_p=0.5, removal_p=0.5, sham_edits=True)
    augment.paste_p = augment.removal_p = 0.0  # only the sham edits, forced on
    augment.sham_fill_p = augment.sham_paste_p = 1.0
    data = ImageDataset(cf_frame, PreprocessConfig(image_size=64, augment="none"), classes=CLASSES, train=True,
                        seed=0, counterfactual=augment, return_masks=True)
    for row, label in ((0, "glioma"), (2, "no_tumor")):
        original, mask = np.asarray(data.decoded(row)), data.mask(row)
        changed = [augment(data, row, data.decoded(row), label, mask, np.random.default_rng(seed))
                   for seed in range(4)]
        for image, new_label, new_mask in changed:
            assert new_label == label and np.array_equal(new_mask, mask)
            assert np.array_equal(np.asarray(image)[mask], original[mask])  # the tumour itself is untouched
        assert any(np.abs(np.asarray(image).astype(int) - original).sum() > 0 for image, _, _ in changed)
    # a tumour whose mask is unknown is left alone
    image = data.decoded(0)
    assert np.array_equal(np.asarray(augment(data, 0, image, "glioma", None, np.random.default_rng(0))[0]),
                          np.asarray(image))


def test_removal_fills_are_drawn_from_the_named_fills_and_contralateral_only_where_a_mirror_exists(
        cf_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CounterfactualAugment(cf_frame, CLASSES, removal_p=0.5).fill_method(0, np.random.default_rng(0)) == \
        "contralateral"  # the axial plane's one training fill
    frame = pd.concat([cf_frame, cf_frame.iloc[[0]].assign(plane="sagittal")], ignore_index=True)
    augment = CounterfactualAugment(frame, CLASSES, removal_p=0.5, removal_fills=("contralateral", "biharmonic"))
    rng = np.random.default_rng(0)
    assert {augment.fill_method(0, rng) for _ in range(40)} == {"contralateral", "biharmonic"}
    assert {augment.fill_method(4, rng) for _ in range(40)} == {"biharmonic"}  # a sagittal slice has no mirror
    only_mirror = CounterfactualAugment(frame, CLASSES, removal_p=0.5, removal_fills=("contralateral",))
    assert only_mirror.fill_method(4, rng) == "diffusion"  # none usable: the plane's training fill
    with pytest.raises(ValueError, match="removal_fills"):
        CounterfactualAugment(cf_frame, CLASSES, removal_p=0.5, removal_fills=("telea",))
    # the drawn fill is the one applied, to real removals and sham fills alike
    used: list[str] = []
    monkeypatch.setattr(counterfactual_augment, "remove_tumour",
                        lambda image, region, *, method, margin, seed: used.append(method) or image)
    data = _dataset(cf_frame)
    biharmonic = CounterfactualAugment(cf_frame, CLASSES, removal_p=1.0, removal_fills=("biharmonic",))
    biharmonic(data, 0, data.decoded(0), "glioma", data.mask(0), np.random.default_rng(0))
    assert used == ["biharmonic"]
