"""Train-time augmentation: settings, presets, every part's effect, determinism under a seed, the
source-independent intensity standardisation, and the decode-once cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hierarchy.data import (
    AUGMENT_PRESETS,
    AugmentConfig,
    ImageDataset,
    PreprocessConfig,
    augment_preset,
    eval_transform,
    index_dataset,
    make_loader,
    train_transform,
)
from hierarchy.data.augment import RandomCurve, RandomDihedral, RandomGIN
from hierarchy.data.preprocess import NORM_MEAN, NORM_STD

SIZE = 48
# One switch per part, set so the part always runs.
PARTS = {
    "resample": {"resample_p": 1.0, "resample_side": (20, 24)},
    "jpeg": {"jpeg_p": 1.0, "jpeg_quality": (30, 30)},
    "crop": {"crop_scale": (0.5, 0.6)},
    "rotate": {"rotate_degrees": 20.0},
    "dihedral": {"dihedral_p": 1.0},
    "curve": {"curve_p": 1.0},
    "nonmonotonic_curve": {"nonmonotonic_curve_p": 1.0},
    "invert": {"invert_p": 1.0},
    "gin": {"gin_p": 1.0},
    "gamma": {"gamma_p": 1.0, "gamma": (0.6, 0.7)},
    "brightness_contrast": {"brightness": 0.3, "contrast": 0.3},
    "bias_field": {"bias_field_p": 1.0, "bias_field_strength": 0.5},
    "blur": {"blur_p": 1.0, "blur_sigma": (1.0, 1.5)},
    "noise": {"noise_p": 1.0, "noise_sigma": (0.05, 0.06)},
}


@pytest.fixture(scope="module")
def frame(synthetic_root):
    return index_dataset(synthetic_root)


@pytest.fixture(scope="module")
def scan(frame) -> Image.Image:
    return Image.open(frame.path.iloc[0]).convert("L")


def _cfg(augment="none", **kwargs) -> PreprocessConfig:
    return PreprocessConfig(image_size=SIZE, augment=augment, **kwargs)


def _unnormalised(tensor: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    return tensor * NORM_STD + NORM_MEAN


def test_config_round_trips_through_json_and_enters_the_fingerprint():
    for name in AUGMENT_PRESETS:
        cfg = _cfg(name)
        assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        assert AugmentConfig.from_dict(json.loads(json.dumps(cfg.augment.to_dict()))) == cfg.augment
    fingerprints = {_cfg(name).fingerprint() for name in AUGMENT_PRESETS}
    assert len(fingerprints) == len(AUGMENT_PRESETS)
    assert _cfg(augment_preset("robust").to_dict()) == _cfg("robust")
    assert PreprocessConfig().augment == augment_preset("light")  # the old augmentation stays the default
    assert _cfg(intensity_scaling="head").fingerprint() != _cfg().fingerprint()
    assert _cfg(clahe=True).fingerprint() != _cfg().fingerprint()


def test_robust_preset_switches_every_part_on():
    robust, none = augment_preset("robust"), AugmentConfig()
    for name, values in PARTS.items():
        assert any(getattr(robust, k) != getattr(none, k) for k in values), name
    assert robust != augment_preset("light")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"jpeg_p": 1.5}, "jpeg_p"), ({"gamma": (1.2, 0.8)}, "gamma"), ({"gamma": (0.0, 1.0)}, "gamma"),
    ({"crop_scale": (0.5, 1.2)}, "crop_scale"), ({"rotate_degrees": -1}, "rotate_degrees"),
    ({"noise_sigma": (0.1,)}, "noise_sigma")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


def test_bad_preprocess_settings_are_refused():
    with pytest.raises(ValueError, match="preset"):
        _cfg("heavy")
    with pytest.raises(ValueError, match="unknown AugmentConfig keys"):
        _cfg({"jpeg": 1.0})
    with pytest.raises(ValueError, match="intensity_scaling"):
        _cfg(intensity_scaling="volume")
    with pytest.raises(TypeError, match="augment"):
        _cfg(augment=3)


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_changes_the_image_within_range(scan, part):
    cfg = _cfg(AugmentConfig(**PARTS[part]))
    out = train_transform(cfg, "sagittal")(scan, seed=0)
    assert out.shape == (1, SIZE, SIZE) and out.dtype == torch.float32
    raw = _unnormalised(out, cfg)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert not torch.allclose(out, eval_transform(cfg)(scan), atol=1e-4)


@pytest.mark.parametrize("preset", ["light", "robust"])
def test_same_seed_same_tensor_other_seed_other_tensor(scan, preset):
    transform = train_transform(_cfg(preset), "axial")
    torch.manual_seed(123)
    first = transform(scan, seed=7)
    global_state = torch.get_rng_state()
    assert torch.equal(first, train_transform(_cfg(preset), "axial")(scan, seed=7))
    assert torch.equal(torch.get_rng_state(), global_state)  # a seeded call leaves the global RNG alone
    others = [transform(scan, seed=s) for s in range(8, 12)]
    assert all(not torch.equal(first, other) for other in others)


def test_monotonic_curve_keeps_order_and_nonmonotonic_does_not():
    ramp = torch.linspace(0, 1, 101).reshape(1, 1, 101)
    torch.manual_seed(0)
    assert (RandomCurve(monotonic=True)(ramp).diff() >= -1e-6).all()
    curves = [RandomCurve(monotonic=False)(ramp) for _ in range(5)]
    assert any((c.diff() < -1e-3).any() for c in curves)
    assert all(c.min() >= 0 and c.max() <= 1 for c in curves)


def test_dihedral_gives_a_flip_or_right_angle_rotation():
    x = torch.arange(16.0).reshape(1, 4, 4)
    group = [torch.rot90(x, k, dims=(-2, -1)).flip(-1) if f else torch.rot90(x, k, dims=(-2, -1))
             for k in range(4) for f in (False, True)]
    torch.manual_seed(0)
    outs = [RandomDihedral(1.0)(x) for _ in range(200)]
    assert all(any(torch.equal(o, g) for g in group[1:]) for o in outs)
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 7
    assert torch.equal(RandomDihedral(0.0)(x), x)


def test_gin_remaps_intensities_but_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(1, 32, 32)
    out = RandomGIN()(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


def _phantom(background: int) -> Image.Image:
    """A 64 px ellipse of intensities 80-250 on a flat ``background``."""
    yy, xx = np.mgrid[:64, :64]
    head = ((yy - 32) / 26) ** 2 + ((xx - 32) / 20) ** 2 < 1
    array = np.where(head, 80 + 170 * (yy / 63), background)
    return Image.fromarray(array.astype(np.uint8))


def test_head_scaling_ignores_the_background_level():
    head, image = _cfg(intensity_scaling="head"), _cfg()
    dark, grey = _phantom(10), _phantom(40)
    inside = _unnormalised(eval_transform(image)(dark), image) > 0.05
    def shift(cfg: PreprocessConfig) -> float:  # mean change inside the head, on the [0, 1] scale
        return float((eval_transform(cfg)(dark) - eval_transform(cfg)(grey))[inside].abs().median() * NORM_STD)

    assert shift(head) < 1e-4 < 0.02 < shift(image)
    assert _unnormalised(eval_transform(head)(grey), head)[inside].min() < 0.02  # darkest tissue -> 0


def test_clahe_equalises_deterministically(scan):
    cfg = _cfg(clahe=True)
    out = eval_transform(cfg)(scan)
    raw = _unnormalised(out, cfg)
    assert out.shape == (1, SIZE, SIZE) and raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert not torch.allclose(out, eval_transform(_cfg())(scan), atol=1e-3)
    assert torch.equal(out, eval_transform(cfg)(scan))


def test_decoded_image_is_bounded(frame):
    cfg = PreprocessConfig(image_size=16)
    assert max(eval_transform(cfg).decode(frame.path.iloc[0]).size) <= cfg.base_side == 19


def test_cache_gives_the_same_items_and_decodes_once(frame, monkeypatch):
    rows = frame.head(6)
    for train in (False, True):
        plain = ImageDataset(rows, _cfg("robust"), target=None, train=train, seed=3)
        cached = ImageDataset(rows, _cfg("robust"), target=None, train=train, seed=3, cache=True)
        for i in range(len(rows)):
            assert torch.equal(plain[i][0], cached[i][0])
    calls = []
    original = cached._eval.decode
    monkeypatch.setattr(cached._eval, "decode", lambda *a: calls.append(1) or original(*a))
    [cached[i] for i in range(len(rows))]
    assert calls == []  # every row came from the cache
    assert ImageDataset(rows, _cfg(), target=None, cache=True).prefill()._decoded.keys() == set(range(len(rows)))


def test_seeded_dataset_items_do_not_depend_on_order_or_workers(frame):
    rows = frame.head(8)
    dataset = ImageDataset(rows, _cfg("robust"), target=None, train=True, seed=5, cache=True)
    forwards = torch.stack([dataset[i][0] for i in range(8)])
    backwards = torch.stack([dataset[i][0] for i in reversed(range(8))]).flip(0)
    assert torch.equal(forwards, backwards)
    loaded = torch.cat([x for x, _ in make_loader(dataset, 4, num_workers=2)])
    assert torch.equal(loaded, forwards)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0][0], forwards[0])
    other_seed = ImageDataset(rows, _cfg("robust"), target=None, train=True, seed=6)
    assert not torch.equal(other_seed[0][0], forwards[0])



def test_eval_fingerprint_ignores_only_the_augmentation():
    assert _cfg("robust").eval_fingerprint() == _cfg("light").eval_fingerprint()
    assert _cfg("robust").fingerprint() != _cfg("light").fingerprint()
    assert _cfg(clahe=True).eval_fingerprint() != _cfg().eval_fingerprint()
