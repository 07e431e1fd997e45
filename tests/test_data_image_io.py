"""Decoding images from every accepted source to 8-bit greyscale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hierarchy.data import ImageReadError, load_image


@pytest.fixture
def jpeg(tmp_path):
    rng = np.random.default_rng(0)
    array = (rng.random((300, 200, 3)) * 255).astype(np.uint8)
    path = tmp_path / "scan.jpg"
    Image.fromarray(array).save(path, quality=95)
    return path


def test_path_decodes_to_greyscale(jpeg):
    image = load_image(jpeg)
    assert image.mode == "L" and image.size == (200, 300)


def test_draft_decodes_large_jpeg_smaller_but_not_below_target(jpeg):
    image = load_image(jpeg, target_size=64)
    assert image.mode == "L"
    assert 64 <= min(image.size) < 200


def test_arrays_and_tensors():
    torch = pytest.importorskip("torch")
    grey = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) % 256
    assert np.array_equal(np.asarray(load_image(grey.astype(np.uint8))), grey)
    as_float = load_image(grey.astype(np.float32) / 255.0)
    assert np.abs(np.asarray(as_float).astype(int) - grey).max() <= 1
    rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    assert np.array_equal(np.asarray(load_image(rgb)), grey)
    chw = torch.from_numpy(grey.astype(np.float32) / 255.0)[None]
    assert load_image(chw).size == (48, 64)
    with pytest.raises(ImageReadError, match="dtype"):
        load_image(grey.astype(np.uint16))
    with pytest.raises(ImageReadError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(TypeError):
        load_image(42)


def test_pil_modes():
    assert load_image(Image.new("RGB", (8, 8), (255, 255, 255))).getpixel((0, 0)) == 255
    with pytest.raises(ImageReadError, match="16-bit"):
        load_image(Image.new("I;16", (8, 8)))


def test_truncated_and_missing_files_name_the_file(tmp_path, jpeg):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        load_image(cut)
    with pytest.raises(ImageReadError, match="absent.jpg"):
        load_image(tmp_path / "absent.jpg")
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    with pytest.raises(ImageReadError, match="fake.jpg"):
        load_image(fake)
