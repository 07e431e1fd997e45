"""The synthetic BRISC-layout generator."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from hierarchy.data.synthetic import make_synthetic_dataset


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [(p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]


def test_layout_counts_and_masks(synthetic_root):
    train = sorted((synthetic_root / "classification_task" / "train").rglob("*.jpg"))
    test = sorted((synthetic_root / "classification_task" / "test").rglob("*.jpg"))
    assert len(train) == 4 * 3 * 6 and len(test) == 4 * 3 * 3
    name = train[0].stem.split("_")
    assert name[0] == "brisc2025" and name[1] == "train" and len(name[2]) == 5 and name[5] == "t1"
    masks = list((synthetic_root / "segmentation_task" / "train" / "masks").glob("*.png"))
    assert len(masks) == 3 * 3 * 6  # tumour images only
    for mask in masks:
        assert any((synthetic_root / "classification_task" / "train").glob(f"*/{mask.stem}.jpg"))
        assert np.asarray(Image.open(mask)).max() == 255
    with Image.open(train[0]) as im:
        assert im.mode == "L" and im.size == (64, 64)


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_per_cell_train=1, n_per_cell_test=1, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", n_per_cell_train=1, n_per_cell_test=1, seed=3)
    c = make_synthetic_dataset(tmp_path / "c", n_per_cell_train=1, n_per_cell_test=1, seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        make_synthetic_dataset(tmp_path)
