"""Test-time augmentation views of a preprocessed batch."""

from __future__ import annotations

import pytest
import torch

from hierarchy.data import (
    DEFAULT_TTA,
    TTA_VIEWS,
    PreprocessConfig,
    eval_transform,
    index_dataset,
    tta_views,
)


@pytest.fixture(scope="module")
def batch(synthetic_root) -> torch.Tensor:
    frame = index_dataset(synthetic_root).head(3)
    transform = eval_transform(PreprocessConfig(image_size=32))
    return torch.stack([transform(p) for p in frame.path])


def test_every_view_keeps_shape_and_is_deterministic(batch):
    views = tta_views(batch, list(TTA_VIEWS))
    assert len(views) == len(TTA_VIEWS)
    for name, view in zip(TTA_VIEWS, views, strict=True):
        assert view.shape == batch.shape and view.dtype == batch.dtype, name
        assert torch.equal(view, tta_views(batch, [name])[0]), name
        if name != "identity":
            assert not torch.equal(view, batch), name


def test_named_views_do_what_they_say(batch):
    identity, hflip = tta_views(batch)
    assert DEFAULT_TTA == ("identity", "hflip")
    assert torch.equal(identity, batch) and torch.equal(hflip, batch.flip(-1))
    vflip, rot90, rot180 = tta_views(batch, ["vflip", "rot90", "rot180"])
    assert torch.equal(vflip, batch.flip(-2)) and torch.equal(rot180, batch.flip(-2).flip(-1))
    assert torch.equal(tta_views(rot90, ["rot270"])[0], batch)
    single = tta_views(batch[0], ["hflip"])[0]
    assert torch.equal(single, batch[0].flip(-1))


def test_views_fill_uncovered_pixels_with_the_background(batch):
    zoom_out, rotated = tta_views(batch, ["zoom_out", "rotate_5"])
    background = batch.amin(dim=(1, 2, 3))
    for out in (zoom_out, rotated):
        assert torch.allclose(out[:, 0, 0, 0], background)
        assert (out >= background[:, None, None, None] - 1e-5).all()


def test_unknown_view_is_refused(batch):
    with pytest.raises(ValueError, match="hflip"):
        tta_views(batch, ["mirror"])
    with pytest.raises(ValueError, match="no TTA views"):
        tta_views(batch, [])
    with pytest.raises(ValueError, match="shape"):
        tta_views(batch[0, 0], ["identity"])
