"""Leakage-free splits: duplicate groups (exact and perceptual), grouped stratified train/val and k-fold."""

from __future__ import annotations

import logging

import imagehash
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from hierarchy.data.image_io import read_images
from hierarchy.progress import progress_bar

log = logging.getLogger(__name__)

_HASH_DECODE_SIZE = 64  # phash works on 32x32; JPEG draft decoding at >= 64 px is plenty


def with_phash(frame: pd.DataFrame, *, progress: bool | None = None, skip_bad: bool = False) -> pd.DataFrame:
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
    images = read_images(progress_bar(out.loc[todo, "path"], enabled=progress, desc="perceptual hashes", leave=False),
                         target_size=_HASH_DECODE_SIZE, skip_bad=skip_bad, skipped=skipped)
    hashes = {path: str(imagehash.phash(image)) for path, image in images}
    out.loc[todo, "phash"] = out.loc[todo, "path"].map(hashes).astype(object)
    if skipped:
        out = out[out["phash"].notna()]
        out.attrs["skipped"] = [*frame.attrs.get("skipped", []), *skipped]
    return out


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
    within ``max_hamming`` bits when ``near``, share a group (transitively, and across sources when
    the frame holds several). Ids are 0..G-1 in order of first appearance; a row with no duplicate
    has a group of its own.
    """
    n = len(frame)
    if n == 0:
        return pd.Series([], index=frame.index, name="group", dtype=np.int64)
    same_file = pd.Series(np.arange(n)).groupby(frame["sha256"].to_numpy()).transform("first").to_numpy()
    edges = [np.stack([np.arange(n), same_file], axis=1)]
    if near:
        hashes = frame["phash"] if "phash" in frame.columns and frame["phash"].notna().all() \
            else with_phash(frame)["phash"]
        edges.append(_near_pairs(hashes, max_hamming))
    pairs = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, components = connected_components(graph, directed=False)
    return pd.Series(pd.factorize(components)[0], index=frame.index, name="group")


def duplicating_ids(frame: pd.DataFrame, reference_ids: set[str], candidate_ids: set[str]) -> list[str]:
    """Ids among ``candidate_ids`` (e.g. test images) whose duplicate group, exact or near (see
    :func:`duplicate_groups`), holds an image of ``reference_ids`` (e.g. the training pool): the images a
    model may have seen a copy of."""
    groups = duplicate_groups(frame, near=True)
    reference_groups = set(groups[frame["id"].isin(reference_ids)])
    return frame.loc[frame["id"].isin(candidate_ids) & groups.isin(reference_groups), "id"].tolist()


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
    """label x plane, and x source when the frame holds several sources."""
    stratum = frame["label"].astype(str) + "|" + frame["plane"].fillna("none").astype(str)
    if "source" in frame.columns and frame["source"].nunique() > 1:
        stratum = frame["source"].astype(str) + "|" + stratum
    return stratum.to_numpy()


def group_kfold(frame: pd.DataFrame, k: int = 5, seed: int = 0, *, near: bool = True,
                max_hamming: int = 4) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``k`` (train, val) folds of the non-test rows, stratified by label x plane (x source when
    there are several), with every duplicate group wholly inside one fold. Test rows are never used."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    rows = _development_rows(frame)
    if "phash" not in rows.columns and near:
        rows = with_phash(rows)
    groups = duplicate_groups(rows, near=near, max_hamming=max_hamming)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(rows.iloc[train], rows.iloc[val])
            for train, val in splitter.split(np.zeros(len(rows)), _stratum(rows), groups.to_numpy())]


def cv_folds(frame: pd.DataFrame, k: int, repeats: int = 1, seed: int = 0, *, near: bool = True,
             max_hamming: int = 4) -> pd.DataFrame:
    """Repeated duplicate-aware grouped ``k``-fold of the non-test rows (:func:`group_kfold`, seed ``seed + r``
    for repeat ``r``): one row per (repeat, image), columns ``id``, ``repeat`` and ``fold`` (the fold whose
    held-out part holds the image). Every image is held out exactly once per repeat, and every duplicate group
    lies in one fold."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    held = [pd.DataFrame({"id": val["id"].to_numpy(), "repeat": r, "fold": fold})
            for r in range(repeats)
            for fold, (_, val) in enumerate(group_kfold(frame, k=k, seed=seed + r, near=near,
                                                        max_hamming=max_hamming))]
    return pd.concat(held, ignore_index=True)


def train_val_split(frame: pd.DataFrame, *, val_fraction: float = 0.15, seed: int = 0, near: bool = True,
                    max_hamming: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the non-test rows into (train, val), stratified by label x plane, keeping every
    duplicate group on one side. The validation share is 1 / round(1 / val_fraction) (0.15 -> 1/7)
    because it is one fold of a grouped stratified k-fold."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    k = max(2, round(1 / val_fraction))
    return group_kfold(frame, k=k, seed=seed, near=near, max_hamming=max_hamming)[0]


def holdout_source(frame: pd.DataFrame, name: str, *, near: bool = True,
                   max_hamming: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a multi-source index into (train, test): every row of source ``name`` is test, the
    other sources' rows are train, less any row duplicating (exactly, or perceptually when
    ``near``) a held-out image. Rows keep their ``split`` column; the removed training rows' ids
    are listed in ``train.attrs["removed_as_holdout_duplicates"]``.

    Raises
    ------
    ValueError
        When the frame has no ``source`` column, ``name`` is not one of its sources, or no other
        source is left to train on.
    """
    if "source" not in frame.columns:
        raise ValueError("the frame has no 'source' column; index the datasets with index_dataset()")
    sources = sorted(frame["source"].unique())
    if name not in sources:
        raise ValueError(f"unknown source {name!r}; the frame holds {sources}")
    if len(sources) < 2:
        raise ValueError(f"source {name!r} is the only one: nothing is left to train on")
    held_out = (frame["source"] == name).to_numpy()
    groups = duplicate_groups(frame, near=near, max_hamming=max_hamming).to_numpy()
    duplicate = ~held_out & np.isin(groups, groups[held_out])
    train = frame[~held_out & ~duplicate].copy()
    train.attrs["removed_as_holdout_duplicates"] = frame.loc[duplicate, "id"].tolist()
    if duplicate.any():
        log.info("holdout %s: %d training image(s) removed as duplicates of held-out images",
                 name, int(duplicate.sum()))
    return train, frame[held_out].copy()
