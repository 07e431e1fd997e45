"""The models an experiment trains: one per training seed, or one per cross-validation fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


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
