"""Preprocessing, augmentation, perturbations and the Dataset/DataLoader wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hierarchy.data import (
    PERTURBATIONS,
    ImageDataset,
    PreprocessConfig,
    eval_transform,
    index_dataset,
    make_loader,
    train_transform,
)
from hierarchy.data.preprocess import NORM_MEAN, NORM_STD, crop_to_foreground
from hierarchy.labels import PLANES, TUMOR_CLASSES

CFG = PreprocessConfig(image_size=48)


@pytest.fixture(scope="module")
def frame(synthetic_root):
    return index_dataset(synthetic_root)


@pytest.fixture(scope="module")
def slice_image(frame) -> Image.Image:
    return Image.open(frame.path.iloc[0]).convert("L")


def test_config_round_trip_and_fingerprint():
    cfg = PreprocessConfig(image_size=64, crop_foreground=False)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == PreprocessConfig(image_size=64, crop_foreground=False).fingerprint()
    assert cfg.fingerprint() != PreprocessConfig(image_size=65, crop_foreground=False).fingerprint()
    assert len(cfg.fingerprint()) == 16
    with pytest.raises(ValueError, match="imagesize"):
        PreprocessConfig.from_dict({"imagesize": 64})
    # a removed setting still loads from an older file at the value the pipeline now always uses
    assert PreprocessConfig.from_dict({"image_size": 64, "std": 0.226, "clahe_clip_limit": 0.01}) \
        == PreprocessConfig(image_size=64)
    with pytest.raises(ValueError, match=r"\['std'\] were removed"):
        PreprocessConfig.from_dict({"std": 0.5})


def test_eval_output_shape_dtype_and_normalisation(slice_image):
    tensor = eval_transform(CFG)(slice_image)
    assert tensor.shape == (1, 48, 48) and tensor.dtype == torch.float32
    raw = tensor * NORM_STD + NORM_MEAN  # back to the [0, 1] scale
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    assert raw.max() > 0.99  # robust scaling stretches to the full range
    assert torch.equal(tensor, eval_transform(CFG)(slice_image))  # deterministic


def test_letterbox_bars_are_removed(slice_image):
    array = np.asarray(slice_image)
    boxed = np.zeros((array.shape[0] + 30, array.shape[1] + 50), np.uint8)
    boxed[15:15 + array.shape[0], 25:25 + array.shape[1]] = array
    plain = eval_transform(CFG)(slice_image)
    letterboxed = eval_transform(CFG)(Image.fromarray(boxed))
    assert (plain - letterboxed).abs().mean() < 0.01
    assert crop_to_foreground(Image.fromarray(boxed)).size == crop_to_foreground(slice_image).size


def test_linear_contrast_and_brightness_are_removed(slice_image):
    array = np.asarray(slice_image).astype(np.float32)
    dimmer = Image.fromarray(np.clip(array * 0.6 + 30, 0, 255).astype(np.uint8))
    difference = (eval_transform(CFG)(slice_image) - eval_transform(CFG)(dimmer)).abs()
    assert difference.mean() * NORM_STD < 0.01  # under 1 % of the intensity range on average


def test_rgb_and_grey_give_the_same_tensor(slice_image):
    rgb = slice_image.convert("RGB")
    assert torch.allclose(eval_transform(CFG)(rgb), eval_transform(CFG)(slice_image))


def test_train_transform_augments_but_keeps_shape(slice_image):
    torch.manual_seed(0)
    transform = train_transform(CFG, "axial")
    a, b = transform(slice_image), transform(slice_image)
    assert a.shape == (1, 48, 48) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    assert not torch.equal(a, eval_transform(CFG)(slice_image))


@pytest.mark.parametrize(("plane", "flips"), [("axial", True), ("coronal", True), ("sagittal", False),
                                              (None, False)])
def test_flip_only_for_valid_planes(plane, flips):
    from torchvision.transforms import v2

    steps = train_transform(CFG, plane).geometric.transforms
    assert any(isinstance(step, v2.RandomHorizontalFlip) for step in steps) == flips


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_perturbations_are_deterministic_and_change_the_image(slice_image, name):
    out = PERTURBATIONS[name](slice_image)
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out), np.asarray(PERTURBATIONS[name](slice_image)))
    if name == "downscale_224":
        assert max(out.size) == 224
    else:
        assert out.size == slice_image.size
        assert not np.array_equal(np.asarray(out), np.asarray(slice_image))


def test_gamma_direction(slice_image):
    mid = np.asarray(slice_image).astype(float)
    assert np.asarray(PERTURBATIONS["gamma_0.8"](slice_image)).mean() > mid.mean()
    assert np.asarray(PERTURBATIONS["gamma_1.25"](slice_image)).mean() < mid.mean()
    assert np.asarray(PERTURBATIONS["contrast_0.8"](slice_image)).std() < mid.std()


def test_dataset_targets_and_items(frame):
    by_label = ImageDataset(frame, CFG, classes=TUMOR_CLASSES)
    x, y = by_label[0]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32
    assert by_label.classes == ("glioma", "meningioma", "pituitary", "no_tumor")
    assert y == by_label.classes.index(frame.label.iloc[0])
    by_plane = ImageDataset(frame, CFG, target="plane", classes=PLANES)
    assert [by_plane.classes[i] for i in by_plane.targets] == list(frame.plane)
    assert set(ImageDataset(frame, CFG, target=None).targets) == {-1}
    missing = frame.copy()
    missing.loc[0, "plane"] = None
    assert ImageDataset(missing, CFG, target="plane", classes=PLANES)[0][1] == -1


def test_dataset_errors_name_the_file(frame):
    bad = frame.head(3).copy()
    bad.loc[1, "label"] = "astrocytoma"
    with pytest.raises(ValueError, match=bad.path.iloc[1]):
        ImageDataset(bad, CFG, classes=TUMOR_CLASSES)
    with pytest.raises(ValueError, match="unknown perturbation"):
        ImageDataset(frame, CFG, target=None, perturbation="blur")


def test_dataset_perturbation_changes_the_input(frame):
    clean = ImageDataset(frame.head(2), CFG, target=None)[0][0]
    assert not torch.equal(clean, ImageDataset(frame.head(2), CFG, target=None, perturbation="gamma_0.8")[0][0])


def test_loader_is_seeded(frame):
    dataset = ImageDataset(frame.head(20), CFG, target=None, train=True)
    first = [torch.cat([x for x, _ in make_loader(dataset, 5, shuffle=True, num_workers=1, seed=s)])
             for s in (3, 3, 4)]
    assert first[0].shape == (20, 1, 48, 48)
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
