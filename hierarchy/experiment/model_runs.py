"""The models an experiment trains: one per training seed, or one per cross-validation fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hierarchy.csv_io import read_csv


@dataclass(frozen=True)
class ModelRun:
    """One trained model: its name in tables, its key in stage and file names, its folder under ``work/``, its
    training seed and the rows it trains on and validates on (early stopping, ensemble weight, temperatures)."""

    name: str
    key: str
    folder: str
    seed: int
    train: pd.DataFrame
    val: pd.DataFrame


def seed_runs(seeds: Sequence[int], train: pd.DataFrame, val: pd.DataFrame) -> list[ModelRun]:
    """One model per seed on the same train/validation split."""
    return [ModelRun(str(seed), f"seed{seed}", f"seed_{seed}", seed, train, val) for seed in seeds]


def fold_runs(pool: pd.DataFrame, folds: pd.DataFrame, seed: int) -> list[ModelRun]:
    """One model per (repeat, fold) of ``folds`` (``hierarchy.data.cv_folds`` of ``pool``): it validates on the
    fold's rows and trains on the rest of ``pool``; every fold model uses training seed ``seed``."""
    runs = []
    for (repeat, fold), held in folds.groupby(["repeat", "fold"], sort=True):
        out = pool["id"].isin(set(held["id"]))
        name = f"r{repeat}f{fold}"
        runs.append(ModelRun(name, name, f"cv_r{repeat}_f{fold}", seed, pool[~out].reset_index(drop=True),
                             pool[out].reset_index(drop=True)))
    return runs


def saved_fold_run(frame: pd.DataFrame, path: str | Path, fold: int, repeat: int = 0, seed: int = 0) -> ModelRun:
    """Fold ``fold`` of repeat ``repeat`` of a fold list an experiment wrote (``work/folds.csv``: ``id``,
    ``repeat``, ``fold``), as :func:`fold_runs` makes it: it validates on the fold's rows of ``frame`` and trains
    on the other folds' rows (rows of ``frame`` in no fold, such as calibration rows, are in neither).

    Raises ``ValueError`` naming ``path`` when a column is missing, ``repeat`` or ``fold`` is absent, an id
    appears twice in the repeat or is not an id of ``frame``."""
    folds = read_csv(path, "fold list", required={"id", "repeat", "fold"}, dtype={"id": str})
    for column in ("repeat", "fold"):
        if not pd.api.types.is_integer_dtype(folds[column]):
            raise ValueError(f"{path}: column {column!r} holds non-integer values (expected a fold list)")
    part = folds[folds["repeat"] == repeat]
    if part.empty:
        raise ValueError(f"{path}: no repeat {repeat} (repeats: {sorted(folds['repeat'].unique().tolist())})")
    if fold not in set(part["fold"]):
        raise ValueError(f"{path}: no fold {fold} in repeat {repeat} (folds: {sorted(part['fold'].unique().tolist())})")
    twice = part.loc[part["id"].duplicated(), "id"]
    if len(twice):
        raise ValueError(f"{path}: {len(twice)} id(s) listed twice in repeat {repeat}, e.g. {twice.iloc[0]!r}")
    unknown = sorted(set(part["id"]) - set(frame["id"]))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} of its {len(part)} ids (repeat {repeat}) are not in the data "
                         f"root's index, e.g. {unknown[0]!r}: a fold list of another dataset or layout?")
    pool = frame[frame["id"].isin(set(part["id"]))].reset_index(drop=True)
    return next(run for run in fold_runs(pool, part, seed) if run.name == f"r{repeat}f{fold}")
