"""The declared primary endpoint, the family of flat-vs-hierarchical tests, and results across models.

Every dataset (the primary subset of the test split, the whole test split, each external set) is scored the
same way for each trained model (seed or cross-validation fold): per route its accuracy with a percentile
bootstrap interval and bootstrap variance, and per compared pair the paired difference (the same resamples for
both routes), its interval and p-value (:func:`hierarchy.metrics.bootstrap_test`, so they agree) and McNemar's
exact and mid-p. Where images form duplicate groups (``groups``), whole groups are resampled (cluster
bootstrap). With several models, :func:`hierarchy.metrics.combined_interval` combines the between-model
variance with the mean within-model (test-sampling) variance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hierarchy.experiment.refit_control import CONTROL
from hierarchy.metrics import adjust_family, bootstrap_test, combined_interval, mcnemar_exact
from hierarchy.metrics.intervals import (
    bootstrap_indices,
    cluster_bootstrap_indices,
    percentile_interval,
)

Pair = tuple[str, str]  # (reference route, compared route): differences are compared minus reference


def pair_name(pair: Pair) -> str:
    """``"<compared>_vs_<reference>"``."""
    return f"{pair[1]}_vs_{pair[0]}"


def family_pairs(primary: Sequence[str], routes: Sequence[str]) -> list[Pair]:
    """The declared family of route pairs: the primary pair, and the refit control against the primary's
    compared route when that control was run (the like-for-like version of the same question)."""
    pairs = [(primary[0], primary[1])]
    if CONTROL in routes and CONTROL not in primary:
        pairs.append((CONTROL, primary[1]))
    return [p for p in pairs if p[0] in routes and p[1] in routes]


def _correctness(table: pd.DataFrame, routes: Sequence[str]) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Image ids, true labels and a (routes x images) matrix of correct predictions, aligned by id."""
    first = table[table["route"] == routes[0]].set_index("id")
    correct = []
    for route in routes:
        rows = table[table["route"] == route].set_index("id")
        if set(rows.index) != set(first.index):
            raise ValueError(f"routes {routes[0]!r} and {route!r} were not run on the same images")
        rows = rows.loc[first.index]
        correct.append((rows["pred_label"] == rows["true_label"]).to_numpy())
    return first.index, first["true_label"].to_numpy(), np.asarray(correct, dtype=float)


def paired_accuracy(table: pd.DataFrame, routes: Sequence[str], pairs: Sequence[Pair], *,
                    groups: Mapping[str, Any] | None = None, n_bootstrap: int = 1000, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy of each route and the paired accuracy difference of each pair on one prediction table.

    ``groups`` maps image id to duplicate group (cluster bootstrap over groups, stratified by the class of a
    group's first image); without it images are resampled one by one, stratified by class.

    Returns
    -------
    dict
        ``{"n", "n_groups", "routes": {route: {"accuracy", "ci", "variance"}}, "differences": {pair_name:
        {"reference", "compared", "difference", "ci", "p_value", "variance", "mcnemar"}}}``.
    """
    routes = list(dict.fromkeys([*routes, *(r for p in pairs for r in p)]))
    ids, y_true, correct = _correctness(table, routes)
    if groups is None:
        cluster, indices = None, bootstrap_indices(y_true, n_bootstrap, seed)
    else:
        cluster = pd.factorize(ids.map(lambda i: groups.get(i)).to_numpy(dtype=object))[0]
        if (cluster < 0).any():
            raise ValueError(f"{int((cluster < 0).sum())} images have no duplicate group")
        indices = cluster_bootstrap_indices(y_true, cluster, n_bootstrap, seed)
    samples = np.stack([correct[:, rows].mean(axis=1) for rows in indices], axis=1)  # routes x resamples
    at = {route: i for i, route in enumerate(routes)}
    result = {"n": len(ids), "n_groups": None if cluster is None else int(len(np.unique(cluster))),
              "routes": {route: {"accuracy": float(correct[i].mean()),
                                 "ci": percentile_interval(samples[i], confidence),
                                 "variance": float(samples[i].var(ddof=1)) if n_bootstrap > 1 else 0.0}
                         for route, i in at.items()},
              "differences": {}}
    for reference, compared in pairs:
        delta = samples[at[compared]] - samples[at[reference]]
        result["differences"][pair_name((reference, compared))] = {
            "reference": reference, "compared": compared,
            "difference": float(correct[at[compared]].mean() - correct[at[reference]].mean()),
            **bootstrap_test(delta, confidence), "variance": float(delta.var(ddof=1)) if n_bootstrap > 1 else 0.0,
            "mcnemar": mcnemar_exact(correct[at[reference]].astype(bool), correct[at[compared]].astype(bool))}
    return result


def across_models(per_model: Mapping[str, dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """:func:`hierarchy.metrics.combined_interval` of every route's accuracy and every pair's difference over
    the models' :func:`paired_accuracy` results (at least two models)."""
    results = list(per_model.values())
    routes = [r for r in results[0]["routes"] if all(r in m["routes"] for m in results)]
    pairs = [p for p in results[0]["differences"] if all(p in m["differences"] for m in results)]
    return {
        "routes": {route: combined_interval([m["routes"][route]["accuracy"] for m in results],
                                            [m["routes"][route]["variance"] for m in results], confidence)
                   for route in routes},
        "differences": {pair: {"reference": results[0]["differences"][pair]["reference"],
                               "compared": results[0]["differences"][pair]["compared"],
                               **combined_interval([m["differences"][pair]["difference"] for m in results],
                                                   [m["differences"][pair]["variance"] for m in results],
                                                   confidence)}
                        for pair in pairs},
    }


def evaluate_datasets(datasets: Mapping[str, tuple[Mapping[str, pd.DataFrame], Mapping[str, Any] | None]],
                      routes: Sequence[str], primary: Sequence[str], *, n_bootstrap: int,
                      seed: int) -> dict[str, Any]:
    """Per dataset label: ``{"per_model": {model: paired_accuracy}, "combined": across_models or None,
    "pairs": [...]}``; ``datasets[label]`` is (prediction table per model, duplicate groups or None)."""
    out = {}
    for label, (tables, groups) in datasets.items():
        present = set.intersection(*(set(t["route"]) for t in tables.values()))
        used = [r for r in routes if r in present]
        pairs = family_pairs(primary, used)
        per_model = {model: paired_accuracy(table, used, pairs, groups=groups, n_bootstrap=n_bootstrap, seed=seed)
                     for model, table in tables.items()}
        out[label] = {"per_model": per_model, "pairs": [pair_name(p) for p in pairs],
                      "combined": across_models(per_model) if len(per_model) > 1 else None}
    return out


def estimate(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The declared estimate of one dataset: across models when there are several, else the one model's.

    Returns ``{"models", "routes": {route: {"accuracy", "ci"}}, "differences": {pair: {"reference", "compared",
    "difference", "ci", "p_value", ...}}}``.
    """
    combined = evaluation["combined"]
    if combined is None:
        only = next(iter(evaluation["per_model"].values()))
        return {"models": 1, "n": only["n"], "n_groups": only["n_groups"],
                "routes": {r: {"accuracy": v["accuracy"], "ci": v["ci"]} for r, v in only["routes"].items()},
                "differences": only["differences"]}
    first = next(iter(evaluation["per_model"].values()))
    return {"models": len(evaluation["per_model"]), "n": first["n"], "n_groups": first["n_groups"],
            "routes": {r: {"accuracy": v["mean"], "ci": v["ci"], "sd": v["sd"]} for r, v in combined["routes"].items()},
            "differences": {p: {**v, "difference": v["mean"]} for p, v in combined["differences"].items()}}


def comparison_family(evaluations: Mapping[str, dict[str, Any]], *, method: str = "holm",
                      level: float = 0.05) -> dict[str, Any]:
    """Every pair of every dataset's declared estimate, as one family adjusted for multiplicity."""
    tests = {f"{pair} | {label}": estimate(evaluation)["differences"][pair]
             for label, evaluation in evaluations.items() for pair in evaluation["pairs"]}
    adjusted = adjust_family({name: t["p_value"] for name, t in tests.items()}, method=method, level=level)
    return {"method": method, "level": level, "m": len(tests),
            "tests": [{**row, "pair": name.split(" | ")[0], "dataset": name.split(" | ")[1],
                       "difference": tests[name]["difference"], "ci": tests[name]["ci"]}
                      for row, name in zip(adjusted, tests, strict=True)]}
