"""Leakage-free splits: duplicate groups (exact and perceptual), grouped stratified train/val and k-fold."""

from __future__ import annotations

import logging

import imagehash
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from tqdm.auto import tqdm

from hierarchy.data.image_io import read_images

log = logging.getLogger(__name__)

_HASH_DECODE_SIZE = 64  # phash works on 32x32; JPEG draft decoding at >= 64 px is plenty


def with_phash(frame: pd.DataFrame, *, progress: bool = True, skip_bad: bool = False) -> pd.DataFrame:
    """A copy of ``frame`` with a ``phash`` column (64-bit perceptual hash as 16 hex digits).

    Rows that already have one keep it, so call this once and pass the result around. A file that
    cannot be decoded raises ``ImageReadError`` naming it; with ``skip_bad`` its row is dropped and
    listed in ``attrs["skipped"]`` (after the entries already there) as a ``{"path", "reason"}`` dict.
    """
    out = frame.copy()
    if "phash" not in out.columns:
        out["phash"] = None
    todo = out.index[out["phash"].isna()]
    skipped: list[dict[str, str]] = []
    images = read_images(tqdm(out.loc[todo, "path"], desc="perceptual hashes", disable=not progress, leave=False),
                         target_size=_HASH_DECODE_SIZE, skip_bad=skip_bad, skipped=skipped)
    hashes = {path: str(imagehash.phash(image)) for path, image in images}
    out.loc[todo, "phash"] = out.loc[todo, "path"].map(hashes).astype(object)
    if skipped:
        out = out[out["phash"].notna()]
        out.attrs["skipped"] = [*frame.attrs.get("skipped", []), *skipped]
    return out


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return int(i)

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _near_pairs(hex_hashes: pd.Series, max_hamming: int) -> np.ndarray:
    """(i, j) positions, i < j, whose hashes differ in at most ``max_hamming`` bits."""
    values = np.array([int(h, 16) for h in hex_hashes], dtype=np.uint64)
    pairs = []
    for start in range(0, len(values), 1024):
        block = values[start:start + 1024, None] ^ values[None, :]
        i, j = np.nonzero(np.bitwise_count(block) <= max_hamming)
        i = i + start
        keep = i < j
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)


def duplicate_groups(frame: pd.DataFrame, *, near: bool = True, max_hamming: int = 4) -> pd.Series:
    """Group id per row (index as ``frame``): rows with the same sha256, or with perceptual hashes
    within ``max_hamming`` bits when ``near``, share a group (transitively). Ids are 0..G-1 in
    order of first appearance; a row with no duplicate has a group of its own.
    """
    uf = _UnionFind(len(frame))
    for positions in pd.Series(range(len(frame))).groupby(frame["sha256"].to_numpy()).groups.values():
        first = positions[0]
        for other in positions[1:]:
            uf.union(first, other)
    if near and len(frame):
        hashes = frame["phash"] if "phash" in frame.columns and frame["phash"].notna().all() \
            else with_phash(frame)["phash"]
        for i, j in _near_pairs(hashes, max_hamming):
            uf.union(int(i), int(j))
    roots = [uf.find(i) for i in range(len(frame))]
    return pd.Series(pd.factorize(pd.Series(roots))[0], index=frame.index, name="group")


def _development_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that may be used for training or validation: everything not in the test split."""
    rows = frame[frame["split"] != "test"]
    if rows.empty:
        raise ValueError("no train rows to split (every row is in the test split)")
    leaked = set(rows["sha256"]) & set(frame.loc[frame["split"] == "test", "sha256"])
    if leaked:
        log.warning("%d train image(s) are byte-identical to test images; run `hierarchy audit` "
                    "and consider removing them", int(rows["sha256"].isin(leaked).sum()))
    return rows


def _stratum(frame: pd.DataFrame) -> np.ndarray:
    return (frame["label"].astype(str) + "|" + frame["plane"].fillna("none").astype(str)).to_numpy()


def group_kfold(frame: pd.DataFrame, k: int = 5, seed: int = 0, *, near: bool = True,
                max_hamming: int = 4) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``k`` (train, val) folds of the non-test rows, stratified by label x plane, with every
    duplicate group wholly inside one fold. Test rows are never used."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    rows = _development_rows(frame)
    if "phash" not in rows.columns and near:
        rows = with_phash(rows)
    groups = duplicate_groups(rows, near=near, max_hamming=max_hamming)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(rows.iloc[train], rows.iloc[val])
            for train, val in splitter.split(np.zeros(len(rows)), _stratum(rows), groups.to_numpy())]


def train_val_split(frame: pd.DataFrame, *, val_fraction: float = 0.15, seed: int = 0, near: bool = True,
                    max_hamming: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the non-test rows into (train, val), stratified by label x plane, keeping every
    duplicate group on one side. The validation share is 1 / round(1 / val_fraction) (0.15 -> 1/7)
    because it is one fold of a grouped stratified k-fold."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    k = max(2, round(1 / val_fraction))
    return group_kfold(frame, k=k, seed=seed, near=near, max_hamming=max_hamming)[0]
