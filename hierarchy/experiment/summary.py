"""``summary.json``: the machine-readable headline of one experiment (fractions, not percentages)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hierarchy.experiment.profiles import ExperimentConfig
from hierarchy.metrics import evaluate_predictions


def route_summary(route_metrics: dict[str, Any], images_per_second: float | None = None) -> dict[str, Any]:
    """The headline keys of one route: accuracy with CI, macro AUC and F1, tumour FNR, ECE, speed."""
    headline = route_metrics["headline"]
    detection = route_metrics["false_negatives"]["detection"]
    return {
        "n": route_metrics["n"],
        "accuracy": headline["accuracy"]["value"],
        "accuracy_ci": headline["accuracy"]["ci"],
        "balanced_accuracy": headline["balanced_accuracy"]["value"],
        "macro_auc": headline["macro_auc"]["value"],
        "macro_auc_ci": headline["macro_auc"]["ci"],
        "macro_f1": headline["macro_f1"]["value"],
        "macro_f1_ci": headline["macro_f1"]["ci"],
        "tumor_fnr": detection["false_negative_rate"]["value"],
        "tumor_fnr_ci": detection["false_negative_rate"]["ci"],
        "ece": route_metrics["calibration"]["ece"],
        "brier": route_metrics["calibration"]["brier"],
        "images_per_second": images_per_second,
    }


def summarise(*, config: ExperimentConfig, dataset: str, metrics: dict[str, Any], comparisons: list[dict[str, Any]],
              predictions: pd.DataFrame,
              per_seed: dict[str, Any] | None, robustness: dict[str, dict[str, float]],
              external: dict[str, Any], throughput: dict[str, float], shortcut: dict[str, Any],
              audit: dict[str, Any], leaked_test_ids: list[str], weights: dict[str, Any],
              calibration: dict[str, dict[str, float]], stage_seconds: dict[str, float]) -> dict[str, Any]:
    """Assemble ``summary.json`` from the evaluation of the first seed and the run's side results."""
    routes = {route: route_summary(m, throughput.get(route)) for route, m in metrics["routes"].items()}
    plane = next((m["plane"] for m in metrics["routes"].values() if m.get("plane")), None)
    compared = {f"{c['route_a']}_vs_{c['route_b']}": c for c in comparisons}
    unseen = predictions[~predictions["id"].isin(set(leaked_test_ids))]
    unseen_metrics = evaluate_predictions(unseen, n_bootstrap=config.n_bootstrap) if len(unseen) else None
    clean = {route: values["accuracy"] for route, values in routes.items()}
    return {
        "dataset": dataset,
        "profile": config.profile,
        "seeds": list(config.seeds),
        "n_test": int(predictions["id"].nunique()),
        "plane_accuracy": None if plane is None else plane["accuracy"]["value"],
        "plane_accuracy_ci": None if plane is None else plane["accuracy"]["ci"],
        "routes": routes,
        "test_without_training_duplicates": {
            "n_removed": len(set(leaked_test_ids)),
            "n": int(unseen["id"].nunique()),
            "routes": {} if unseen_metrics is None else
            {route: route_summary(m) for route, m in unseen_metrics["routes"].items()},
        },
        "mcnemar_p": compared.get("flat_vs_hierarchical", {}).get("mcnemar", {}).get("p_value"),
        "comparisons": compared,
        "seeds_aggregate": per_seed,
        "robustness": {p: {route: {"accuracy": acc, "drop": clean[route] - acc}
                           for route, acc in by_route.items() if route in clean}
                       for p, by_route in robustness.items()},
        "external": {name: {"n_indexed": r["record"]["n_indexed"],
                            "n_removed_as_training_duplicates": r["record"]["n_removed_as_training_duplicates"],
                            **{route: route_summary(m) for route, m in r["metrics"]["routes"].items()}}
                     for name, r in external.items()},
        "shortcut": shortcut,
        "audit": {k: audit.get(k) for k in ("n_images", "exact_duplicate_groups", "exact_duplicate_files",
                                            "cross_split_duplicate_groups", "plane_conflict_groups",
                                            "rgb_fraction_by_class")},
        "weights": weights,
        "temperature_scaling": calibration,
        "stage_seconds": stage_seconds,
        "config": config.to_dict(),
    }
