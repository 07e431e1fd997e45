"""Several training seeds: seed-ensemble routes, and each route's spread across seeds.

A seed-ensemble route ``<route>_seeds`` averages, per image, the class (and plane) probabilities that
the routers of every seed gave along ``<route>``; it is a new route of the prediction table, evaluated
like the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hierarchy.metrics import aggregate_seeds
from hierarchy.predictions import plane_prob_column, prob_column, table_classes

SEED_SUFFIX = "_seeds"
# Columns recomputed from the averaged probabilities; every other column is copied from the first seed.
_DERIVED = ("route", "pred_label", "pred_plane", "expert", "referred")


def seed_route(route: str) -> str:
    """The name of the seed-ensemble route of ``route``."""
    return f"{route}{SEED_SUFFIX}"


def _route_rows(table: pd.DataFrame, route: str, seed: int) -> pd.DataFrame:
    rows = table[table["route"] == route]
    if rows.empty:
        raise ValueError(f"seed {seed} has no predictions of route {route!r}")
    return rows.set_index("id")


def seed_ensemble(predictions: Mapping[int, pd.DataFrame], routes: Sequence[str], *,
                  classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the routes ``<route>_seeds``: per image, the mean over seeds of ``route``'s probabilities.

    Parameters
    ----------
    predictions : mapping of int to DataFrame
        One prediction table per seed (``hierarchy.predictions`` schema), all on the same images.
    routes : sequence of str
        Base routes to average; each gives one route ``<route>_seeds``.
    classes : sequence of str
        Tumour classes, in the order of the probability columns; by default the first seed's
        ``prob_<class>`` columns.

    Returns
    -------
    DataFrame
        Prediction rows; ``pred_label`` (and ``pred_plane`` where planes were predicted) is the arg-max
        of the averaged probabilities, ``expert`` is ``"seeds"``, and an ``ood_score`` column is
        averaged too.

    Raises
    ------
    ValueError
        With fewer than two seeds, a route missing from a seed, or seeds predicted on other images.
    """
    if len(predictions) < 2:
        raise ValueError(f"a seed ensemble needs at least two seeds, got {list(predictions)}")
    seeds = list(predictions)
    classes = table_classes(predictions[seeds[0]]) if classes is None else list(classes)
    tables = []
    for route in routes:
        per_seed = [_route_rows(predictions[seed], route, seed) for seed in seeds]
        first = per_seed[0]
        for seed, rows in zip(seeds[1:], per_seed[1:], strict=True):
            if set(rows.index) != set(first.index):
                raise ValueError(f"seeds {seeds[0]} and {seed} predicted route {route!r} on different "
                                 f"images ({len(set(rows.index) ^ set(first.index))} ids differ)")
        averaged = [c for c in first.columns
                    if c.startswith(("prob_", "plane_prob_")) or c == "ood_score"]
        mean = sum(rows.loc[first.index, averaged].to_numpy(dtype=float) for rows in per_seed) / len(seeds)
        table = first.drop(columns=[c for c in _DERIVED if c in first.columns]).copy()
        table[averaged] = mean
        proba = table[[prob_column(c) for c in classes]].to_numpy()
        table["pred_label"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        planes = [c.removeprefix("plane_prob_") for c in averaged if c.startswith("plane_prob_")]
        plane_proba = table[[plane_prob_column(p) for p in planes]].to_numpy() if planes else None
        table["pred_plane"] = (np.asarray(planes, dtype=object)[plane_proba.argmax(axis=1)]
                               if plane_proba is not None and np.isfinite(plane_proba).all() else None)
        table["expert"] = "seeds"
        table["referred"] = False
        tables.append(table.reset_index().assign(route=seed_route(route)))
    return pd.concat(tables, ignore_index=True)


def per_seed_results(evaluations: Mapping[int, dict]) -> dict[str, dict[str, dict]]:
    """``{route: {seed: {"accuracy", "accuracy_ci"}}}`` from one ``evaluate_predictions`` result per seed
    (seed-ensemble routes, which belong to no one seed, are left out)."""
    routes: dict[str, dict[str, dict]] = {}
    for seed, metrics in evaluations.items():
        for route, result in metrics["routes"].items():
            if route.endswith(SEED_SUFFIX):
                continue
            accuracy = result["headline"]["accuracy"]
            routes.setdefault(route, {})[str(seed)] = {"accuracy": accuracy["value"],
                                                       "accuracy_ci": accuracy["ci"]}
    return routes


def seed_spread(evaluations: Mapping[int, dict]) -> dict | None:
    """``aggregate_seeds`` of the per-seed evaluations; None for a single seed (nothing to spread)."""
    if len(evaluations) < 2:
        return None
    return aggregate_seeds(list(evaluations.values()))


def train_seconds(stage_seconds: Mapping[str, float], stages: Mapping[str, str]) -> dict[str, float | None]:
    """Wall time of each model's training stage (``stages``: model name -> its stage in the stage log, such as
    ``train_seed0``), None if unlogged."""
    return {name: stage_seconds.get(stage) for name, stage in stages.items()}
