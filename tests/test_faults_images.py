"""Images are read as they are displayed, and every file that is not read is named with why (issue 24)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from hierarchy.data import index_dataset
from hierarchy.data.image_io import (
    MIN_IMAGE_SIDE,
    ImageReadError,
    decode_bytes,
    inspect_image_bytes,
    load_image,
)


def _scan(width: int = 64, height: int = 48) -> np.ndarray:
    """A non-symmetric test image: a bright block in the top-left corner, a gradient elsewhere."""
    array = np.tile(np.linspace(10, 120, width, dtype=np.uint8), (height, 1))
    array[:8, :16] = 250
    return array


def _jpeg(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    array = _scan()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg(array, exif=exif.tobytes()))
    image = np.asarray(load_image(path))
    assert image.shape == (64, 48)  # displayed upright: width and height swapped
    assert image[:16, -8:].mean() > 200  # the bright corner moved to the top right
    assert inspect_image_bytes(path.read_bytes(), "phone.jpg")[:2] == (48, 64)


@pytest.mark.parametrize("fmt", ["TIFF", "GIF"])
def test_multi_frame_files_are_refused(tmp_path, fmt):
    frames = [Image.fromarray(np.zeros((32, 32), np.uint8)), Image.fromarray(_scan(32, 32))]
    path = tmp_path / f"stack.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="2 frames"):
        load_image(path)
    with pytest.raises(ImageReadError, match="2 frames"):
        inspect_image_bytes(path.read_bytes(), str(path))


def test_truncated_jpeg_with_end_marker_put_back_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    data = _jpeg((rng.random((128, 128)) * 255).astype(np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * 0.6)] + b"\xff\xd9")
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        load_image(path)
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        load_image(path, target_size=32)  # decoded at a reduced DCT scale too
    assert np.asarray(decode_bytes(data, "whole.jpg")).shape == (128, 128)
    grey = _jpeg(np.full((64, 64), 128, np.uint8))  # an image that is all mid-grey is whole
    assert np.asarray(decode_bytes(grey, "grey.jpg")).mean() == pytest.approx(128, abs=1)


def test_jpeg_with_trailing_garbage_is_refused(tmp_path):
    data = _jpeg(_scan()) + b"GARBAGE" * 20
    with pytest.raises(ImageReadError, match="after the JPEG end marker"):
        decode_bytes(data, "spliced.jpg")
    with pytest.raises(ImageReadError, match="after the JPEG end marker"):
        inspect_image_bytes(data, "spliced.jpg")
    assert decode_bytes(_jpeg(_scan()) + b"\x00" * 16, "padded.jpg").size == (64, 48)


@pytest.mark.parametrize("size", [(1, 1), (MIN_IMAGE_SIDE - 1, 64)])
def test_images_below_the_minimum_size_are_refused(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("L", size).save(path)
    with pytest.raises(ImageReadError, match=f"minimum of {MIN_IMAGE_SIDE} px"):
        load_image(path)
    with pytest.raises(ImageReadError, match="minimum"):
        inspect_image_bytes(path.read_bytes(), str(path))


def test_inputs_sharing_a_file_name_get_distinct_ids(tmp_path):
    from hierarchy.routing.inputs import resolve_inputs

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_scan()).save(tmp_path / folder / "scan.png")
    inputs = resolve_inputs([tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"])
    assert len(set(inputs.ids)) == 2
    assert len(set(resolve_inputs([tmp_path / "a", tmp_path / "b"]).ids)) == 2
    assert len(set(resolve_inputs([tmp_path / "a" / "scan.png"] * 2).ids)) == 2


def _lock(folder, monkeypatch) -> None:
    """``folder`` made unreadable (chmod 0), and unreadable for root too (root ignores permissions)."""
    folder.chmod(0)
    denied = str(folder)
    for name in ("listdir", "scandir"):
        real = getattr(os, name)

        def refuse(path=".", _real=real):
            if os.fspath(path) == denied:
                raise PermissionError(13, "Permission denied", denied)
            return _real(path)
        monkeypatch.setattr(os, name, refuse)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: os.fspath(path) != denied and real_access(path, mode, **kw))


def test_every_skipped_path_is_listed_with_why(tmp_path, monkeypatch):
    from hierarchy.routing.inputs import resolve_inputs

    folder = tmp_path / "scans"
    (folder / "locked").mkdir(parents=True)
    Image.fromarray(_scan()).save(folder / "good.png")
    Image.fromarray(_scan()).save(folder / "locked" / "hidden_from_us.png")
    (folder / "broken.png").symlink_to(tmp_path / "gone.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    _lock(folder / "locked", monkeypatch)
    try:
        sources = resolve_inputs(folder).sources
        reasons = {}
        for source in sources:
            try:
                load_image(source)
            except ImageReadError as err:
                reasons[os.path.basename(source)] = str(err)
        assert set(reasons) == {"broken.png", "loop.png", "locked"}, reasons
        assert "broken symlink" in reasons["broken.png"] and "symlink loop" in reasons["loop.png"]
        assert "permission denied" in reasons["locked"]
        with pytest.raises(FileNotFoundError, match="symlink loop"):
            resolve_inputs(folder / "loop.png")
    finally:
        (folder / "locked").chmod(0o755)


def test_index_lists_an_unreadable_class_folder(synthetic_root, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    locked = sorted((root / "classification_task" / "test").iterdir())[0]
    _lock(locked, monkeypatch)
    try:
        frame = index_dataset(root, skip_bad=True)
        reasons = [s["reason"] for s in frame.attrs["skipped"]]
        assert any(str(locked) in r and "permission denied" in r for r in reasons), reasons
        with pytest.raises(ImageReadError, match="permission denied"):
            index_dataset(root)
    finally:
        locked.chmod(0o755)


def test_missed_tumour_gallery_leaves_out_a_decompression_bomb(tmp_path, monkeypatch):
    import pandas as pd

    from hierarchy.reports.figures import missed_gallery_figure

    good, bomb = tmp_path / "good.png", tmp_path / "bomb.png"
    Image.fromarray(_scan()).save(good)
    Image.fromarray(_scan()).save(bomb)
    missed = pd.DataFrame({"id": ["good", "bomb"], "path": [str(good), str(bomb)],
                           "true_label": "glioma", "pred_label": "no_tumor"})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # both 64x48 images are now "bombs"
    assert missed_gallery_figure(missed) is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**8)
    assert missed_gallery_figure(missed) is not None
