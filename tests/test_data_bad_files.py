"""Every image decode goes through one guarded path: bad files are skipped and listed, or raise naming
the file; corrupt pixel data, decompression bombs and symlink loops never abort a run half-way."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hierarchy.cli import main
from hierarchy.data import ImageReadError, audit, index_dataset, load_image, with_phash


def corrupt_png_bytes(size: int = 32) -> bytes:
    """A PNG with a valid header and IEND chunk whose compressed pixel data is garbage."""
    buffer = io.BytesIO()
    Image.fromarray((np.arange(size * size) % 251).astype(np.uint8).reshape(size, size)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 6
    data[start:start + 10] = bytes(b ^ 0xFF for b in data[start:start + 10])
    return bytes(data)


def _kaggle_copy(tmp_path: Path, synthetic_root: Path, n: int = 8) -> tuple[Path, Path]:
    images = sorted((synthetic_root / "classification_task" / "train").rglob("*.jpg"))[::5][:n]
    folders = ("Training/glioma", "Training/no_tumor", "Testing/glioma", "Testing/no_tumor")
    for i, src in enumerate(images):
        dest = tmp_path / "kaggle" / folders[i % 4]
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest / f"img_{i}.jpg")
    return tmp_path / "kaggle", tmp_path / "kaggle" / "Training" / "glioma"


def test_corrupt_pixel_data_passes_the_header_check_but_not_the_decode(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(corrupt_png_bytes())
    with pytest.raises(ImageReadError, match="corrupt.png"):
        load_image(path)


def test_audit_lists_a_corrupt_png_instead_of_aborting(tmp_path, synthetic_root):
    root, folder = _kaggle_copy(tmp_path, synthetic_root)
    (folder / "corrupt.png").write_bytes(corrupt_png_bytes())
    report = audit(root, progress=False)
    assert [Path(u["path"]).name for u in report.unreadable] == ["corrupt.png"]
    assert report.n_images == 8
    assert "corrupt.png" in report.to_markdown()
    assert main(["audit", str(root), "--out", str(tmp_path / "a")]) == 0
    written = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert written["n_unreadable"] == 1


def test_with_phash_raises_or_skips_and_lists(tmp_path, synthetic_root):
    root, folder = _kaggle_copy(tmp_path, synthetic_root)
    (folder / "corrupt.png").write_bytes(corrupt_png_bytes())
    frame = index_dataset(root)
    assert len(frame) == 9  # the header check passes
    with pytest.raises(ImageReadError, match="corrupt.png"):
        with_phash(frame, progress=False)
    hashed = with_phash(frame, progress=False, skip_bad=True)
    assert len(hashed) == 8 and hashed["phash"].notna().all()
    assert [Path(s["path"]).name for s in hashed.attrs["skipped"]] == ["corrupt.png"]


@pytest.mark.parametrize("limit_factor", [0.75, 0.4], ids=["warning-range", "error-range"])
def test_decompression_bomb_is_the_librarys_error_naming_the_file(tmp_path, monkeypatch, limit_factor):
    path = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(64 * 64 * limit_factor))
    with pytest.raises(ImageReadError, match="big.png.*decompression-bomb"):
        load_image(path)


def test_symlink_loops_and_broken_links_are_listed(tmp_path, synthetic_root):
    root, folder = _kaggle_copy(tmp_path, synthetic_root)
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    os.symlink("meningioma", root / "Training" / "meningioma")
    with pytest.raises(ImageReadError, match="dangling.jpg: broken symlink"):
        index_dataset(root)
    frame = index_dataset(root, skip_bad=True)
    assert len(frame) == 8
    reasons = {Path(s["path"]).name: s["reason"] for s in frame.attrs["skipped"]}
    assert set(reasons) == {"loop.jpg", "dangling.jpg", "meningioma"}
    assert "symlink loop" in reasons["loop.jpg"] and "symlink loop" in reasons["meningioma"]
    assert "broken symlink" in reasons["dangling.jpg"]


def test_training_dataset_decodes_through_the_guarded_path(tmp_path, synthetic_root):
    pytest.importorskip("torch")
    from hierarchy.data import ImageDataset, PreprocessConfig

    root, folder = _kaggle_copy(tmp_path, synthetic_root)
    (folder / "corrupt.png").write_bytes(corrupt_png_bytes())
    frame = index_dataset(root)
    dataset = ImageDataset(frame, PreprocessConfig(image_size=32), target=None)
    bad = int(np.flatnonzero(frame["path"].str.endswith("corrupt.png"))[0])
    with pytest.raises(ImageReadError, match="corrupt.png"):
        dataset[bad]
