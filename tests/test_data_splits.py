"""Duplicate grouping and leakage-free train/val splits."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import duplicate_groups, group_kfold, index_dataset, train_val_split, with_phash
from hierarchy.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Synthetic data with planted exact and near duplicates, one of them crossing into test."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("planted") / "d", n_per_cell_train=10,
                                  n_per_cell_test=2, seed=1)
    train = root / "classification_task" / "train"
    sources = sorted(train.rglob("*.jpg"))[::9]
    copies = {}
    for k, src in enumerate(sources):
        copy = src.with_name(src.name.replace("_t1", f"_t1copy{k}"))
        shutil.copy(src, copy)  # exact duplicate
        near = src.with_name(src.name.replace("_t1", f"_t1near{k}"))
        Image.open(src).save(near, quality=70)  # near duplicate: re-encoded
        copies[src.name] = (copy.name, near.name)
    shutil.copy(sources[0], root / "classification_task" / "test" / sources[0].parent.name / "brisc2025_test_09999_gl_ax_t1.jpg")
    return with_phash(index_dataset(root), progress=False), copies


def test_exact_and_near_groups(planted):
    frame, copies = planted
    by_name = frame.assign(name=frame.id.str.rsplit("/", n=1).str[-1]).set_index("name")
    exact = duplicate_groups(frame, near=False).set_axis(by_name.index)
    near = duplicate_groups(frame).set_axis(by_name.index)
    for src, (copy, re_encoded) in copies.items():
        assert exact[src] == exact[copy] != exact[re_encoded]
        assert near[src] == near[copy] == near[re_encoded]
    assert exact.nunique() == len(frame) - len(copies) - 1  # one more copy sits in test


def test_phash_is_cached(planted):
    frame, _ = planted
    assert frame.phash.str.fullmatch("[0-9a-f]{16}").all()
    fake = frame.assign(phash="0" * 16)  # cached values are trusted, not recomputed
    assert duplicate_groups(fake).nunique() == 1
    assert with_phash(fake, progress=False).phash.eq("0" * 16).all()


def test_train_val_split_keeps_groups_and_test_apart(planted):
    frame, _ = planted
    train, val = train_val_split(frame, val_fraction=0.2, seed=0)
    assert set(train.split) == set(val.split) == {"train"}
    assert not set(train.id) & set(val.id)
    assert len(train) + len(val) == (frame.split == "train").sum()
    groups = duplicate_groups(frame[frame.split == "train"])
    assert not set(groups[train.index]) & set(groups[val.index])
    assert 0.12 < len(val) / (len(train) + len(val)) < 0.28
    strata = val.groupby(["label", "plane"]).size()
    assert len(strata) == 12 and strata.min() >= 1  # every label x plane cell is represented


def test_split_is_seeded(planted):
    frame, _ = planted
    a, b, c = (train_val_split(frame, seed=s)[1] for s in (0, 0, 1))
    assert list(a.id) == list(b.id) and list(a.id) != list(c.id)


def test_group_kfold_partitions_train_rows(planted):
    frame, _ = planted
    folds = group_kfold(frame, k=3, seed=0)
    assert len(folds) == 3
    val_ids = pd.concat([val.id for _, val in folds])
    assert val_ids.is_unique and set(val_ids) == set(frame.id[frame.split == "train"])
    groups = duplicate_groups(frame[frame.split == "train"])
    for train, val in folds:
        assert not set(groups[train.index]) & set(groups[val.index])
    with pytest.raises(ValueError, match="at least 2"):
        group_kfold(frame, k=1)


def test_leak_into_test_is_warned(planted, caplog):
    frame, _ = planted
    train_val_split(frame)
    assert any("byte-identical to test" in r.message for r in caplog.records)


def test_only_test_rows_is_an_error(planted):
    frame, _ = planted
    with pytest.raises(ValueError, match="no train rows"):
        train_val_split(frame[frame.split == "test"])
