"""Overlay PNGs of attribution maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hierarchy.explain import save_overlay


@pytest.mark.parametrize("with_mask", [True, False])
def test_overlay_png_is_written(tmp_path: Path, with_mask: bool) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(48, 48))
    attribution = rng.uniform(size=(48, 48))
    mask = np.zeros((96, 96), dtype=np.uint8)
    mask[20:50, 30:70] = 255
    path = save_overlay(
        image, attribution, tmp_path / "sub" / "overlay.png", mask=mask if with_mask else None, title="glioma"
    )
    assert path == tmp_path / "sub" / "overlay.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and min(png.size) > 100


def test_overlay_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one shape"):
        save_overlay(np.zeros((32, 32)), np.zeros((16, 16)), tmp_path / "x.png")
