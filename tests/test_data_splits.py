"""Duplicate grouping and leakage-free train/val splits."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import (
    cv_folds,
    duplicate_groups,
    group_kfold,
    holdout_source,
    index_dataset,
    train_val_split,
    with_phash,
)
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


def _hash_frame(hashes: list[str], sha: list[str] | None = None, source: list[str] | None = None) -> pd.DataFrame:
    n = len(hashes)
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "sha256": sha or [f"s{i}" for i in range(n)],
                         "phash": hashes, "source": source or ["a"] * n})


def test_groups_are_transitive_and_ordered_by_first_appearance():
    # r0-r1 and r1-r2 differ in 3 bits, r0-r2 in 6: one group through r1; r3 = r5 by sha256 only
    frame = _hash_frame(["0000000000000000", "0000000000000007", "000000000000003f", "ffff000000000000",
                         "00000000ffffffff", "0f0f0f0f0f0f0f0f"],
                        sha=["a", "b", "c", "d", "e", "d"])
    assert duplicate_groups(frame).tolist() == [0, 0, 0, 1, 2, 1]
    assert duplicate_groups(frame, near=False).tolist() == [0, 1, 2, 3, 4, 3]
    assert duplicate_groups(frame.iloc[:0]).empty


def _closure_groups(hashes: np.ndarray, sha: np.ndarray, max_hamming: int) -> list[int]:
    """Reference grouping by breadth-first search over the duplicate relation."""
    labels = [-1] * len(hashes)
    group = 0
    for start in range(len(hashes)):
        if labels[start] >= 0:
            continue
        labels[start], todo = group, [start]
        while todo:
            i = todo.pop()
            for j in range(len(hashes)):
                if labels[j] < 0 and (sha[i] == sha[j] or bin(int(hashes[i] ^ hashes[j])).count("1") <= max_hamming):
                    labels[j] = group
                    todo.append(j)
        group += 1
    return labels


def test_connected_components_match_a_reference_closure():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=8, dtype=np.uint64)
    hashes = base[rng.integers(0, 8, size=120)] ^ (np.uint64(1) << rng.integers(0, 64, size=120).astype(np.uint64))
    sha = rng.integers(0, 100, size=120).astype(str)
    frame = _hash_frame([f"{h:016x}" for h in hashes], sha=list(sha))
    assert duplicate_groups(frame, max_hamming=2).tolist() == _closure_groups(hashes, sha, 2)


def test_holdout_source_removes_duplicates_of_held_out_images():
    frame = _hash_frame(["0000000000000000", "0000000000000001", "ffffffffffffffff", "ffffffff00000000",
                         "00000000ffffffff"], sha=["a", "b", "c", "d", "c"],
                        source=["brisc", "brisc", "brisc", "other", "other"])
    train, test = holdout_source(frame, "other")
    assert list(test.id) == ["r3", "r4"]
    assert list(train.id) == ["r0", "r1"]  # r2 is byte-identical to the held-out r4
    assert train.attrs["removed_as_holdout_duplicates"] == ["r2"]
    near_only = frame.assign(sha256=[f"x{i}" for i in range(5)], phash=[*frame.phash[:4], "0000000000000003"])
    train, _ = holdout_source(near_only, "other")
    assert list(train.id) == ["r2"]  # r0 and r1 are near duplicates of r4
    assert list(holdout_source(near_only, "other", near=False)[0].id) == ["r0", "r1", "r2"]
    with pytest.raises(ValueError, match=r"unknown source 'kaggle'.*'brisc', 'other'"):
        holdout_source(frame, "kaggle")
    with pytest.raises(ValueError, match="only one"):
        holdout_source(frame[frame.source == "brisc"], "brisc")
    with pytest.raises(ValueError, match="no 'source' column"):
        holdout_source(frame.drop(columns="source"), "brisc")


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_duplicates_are_grouped_across_sources(planted, tmp_path):
    frame, _ = planted
    other = tmp_path / "other" / "Training" / "glioma"
    other.mkdir(parents=True)
    train_rows = frame[frame.split == "train"]
    for i, path in enumerate(train_rows.path.iloc[:3]):
        Image.open(path).save(other / f"copy_{i}.jpg", quality=80)  # re-encoded copies in another dataset
    both = with_phash(index_dataset({"planted": frame.attrs["root"], "other": tmp_path / "other"}), progress=False)
    assert set(both.source) == {"planted", "other"} and both.id.is_unique
    groups = duplicate_groups(both)
    copied = both[both.source == "other"]
    originals = both[both.path.isin(train_rows.path.iloc[:3])]
    assert set(groups[copied.index]) == set(groups[originals.index])
    train, val = train_val_split(both, val_fraction=0.2)
    assert not set(groups[train.index]) & set(groups[val.index])


def test_cv_folds_hold_every_row_out_once_per_repeat_with_duplicate_groups_together(planted):
    frame, _ = planted
    folds = cv_folds(frame, k=3, repeats=2, seed=0)
    development = frame[frame["split"] != "test"]
    groups = duplicate_groups(development).set_axis(development["id"])
    for repeat in (0, 1):
        rows = folds[folds["repeat"] == repeat]
        assert sorted(rows["id"]) == sorted(development["id"])  # every row exactly once
        assert set(rows["fold"]) == {0, 1, 2}
        fold_of = rows.set_index("id")["fold"]
        # each duplicate group (the planted copies have some) lies in one fold
        assert (fold_of.groupby(groups.loc[fold_of.index].to_numpy()).nunique() == 1).all()
        assert (groups.value_counts() > 1).any()
    first, second = (folds[folds["repeat"] == r].set_index("id")["fold"] for r in (0, 1))
    assert not first.loc[second.index].equals(second)  # another shuffle per repeat
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        cv_folds(frame, k=3, repeats=0)
