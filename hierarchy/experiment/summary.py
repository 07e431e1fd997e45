"""``summary.json``: the machine-readable headline of one experiment (fractions, not percentages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hierarchy.experiment.generalisation import Generalisation, perturbation_label
from hierarchy.experiment.profiles import ExperimentConfig
from hierarchy.experiment.seeds import per_seed_results, seed_spread, train_seconds
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


def _accuracy_and_fnr(route_metrics: dict[str, Any]) -> dict[str, Any]:
    summary = route_summary(route_metrics)
    return {k: summary[k] for k in ("n", "accuracy", "accuracy_ci", "tumor_fnr", "tumor_fnr_ci")}


def generalisation_summary(result: Generalisation) -> dict[str, Any]:
    """Per dataset (test split, external sets, perturbed test split): its kind, and per route accuracy
    and tumour false-negative rate with their CIs."""
    return {label: {"kind": result.kinds[label],
                    "routes": {route: _accuracy_and_fnr(m) for route, m in metrics["routes"].items()}}
            for label, metrics in result.datasets.items()}


def _conformal_datasets(evaluations: dict[str, dict]) -> dict[str, Any]:
    return {label: {route: {"n": r["n"], "coverage": r["coverage"]["value"], "coverage_ci": r["coverage"]["ci"],
                            "mean_set_size": r["mean_set_size"], "empty": r["empty"], "singleton": r["singleton"],
                            "coverage_per_class": {c["class"]: c["coverage"] for c in r["per_class"]}}
                    for route, r in evaluation["routes"].items()}
            for label, evaluation in evaluations.items()}


def conformal_summary(result: Generalisation) -> dict[str, Any] | None:
    """Coverage (with CI), mean set size, empty and singleton fractions and coverage per true class of the
    conformal sets, per dataset and route: marginal (``datasets``) and Mondrian (``mondrian``, None when not
    calibrated), with the ``allow_empty`` setting."""
    if not result.conformal:
        return None
    first = next(iter(result.conformal.values()))
    return {"alpha": first["alpha"], "score": first["score"], "calibrated_on": result.calibrated_on,
            "allow_empty": result.allow_empty, "datasets": _conformal_datasets(result.conformal),
            "mondrian": _conformal_datasets(result.conformal_mondrian) if result.conformal_mondrian else None}


def source_summary(result: Generalisation) -> dict[str, Any]:
    """``per_source.<source>.<route>``: the headline keys on the test images of each source."""
    return {source: {route: route_summary(m) for route, m in result.datasets[label]["routes"].items()}
            for source, label in result.sources.items()}


def _auroc_summary(auroc: dict) -> dict[str, Any]:
    return {k: auroc[k] for k in ("value", "ci", "n_in", "n_out")}


def external_summary(result: Generalisation) -> dict[str, Any]:
    """``external.<name>``: cleaning counts, per route the headline keys, ``ood_auroc`` (also
    ``ood_auroc_by_class``) and ``mcnemar_p``."""
    summary = {}
    for name, external in result.external.items():
        auroc = external.ood_auroc
        summary[name] = {
            **{k: external.record[k] for k in ("n_indexed", "n_removed_as_training_duplicates", "n_evaluated")},
            **{route: route_summary(m) for route, m in external.metrics["routes"].items()},
            "ood_auroc": None if auroc is None else _auroc_summary(auroc),
            "ood_auroc_by_class": {label: _auroc_summary(a) for label, a in external.ood_auroc_by_class.items()},
            "mcnemar_p": None if external.comparison is None else external.comparison["mcnemar"]["p_value"],
        }
    return summary


def robustness_summary(result: Generalisation, perturbations: Sequence[str],
                       clean: dict[str, float]) -> dict[str, Any]:
    """Per perturbation and route: accuracy and tumour FNR with CIs, and the accuracy drop against clean."""
    summary = {}
    for perturbation in perturbations:
        metrics = result.datasets[perturbation_label(perturbation)]
        summary[perturbation] = {route: {**_accuracy_and_fnr(m),
                                         "drop": clean[route] - m["headline"]["accuracy"]["value"]}
                                 for route, m in metrics["routes"].items() if route in clean}
    return summary


def plane_summary(metrics: dict[str, Any], predictions: pd.DataFrame, audit: dict[str, Any]) -> dict[str, Any]:
    """Plane accuracy of every route that predicts a plane, on all test images and on those whose plane label
    is unambiguous: the audit's exact duplicates labelled with two planes cannot all be right, so their
    errors are counted apart (``errors_on_conflicts``)."""
    conflicting = {i for group in audit.get("exact_duplicates", []) if group.get("plane_conflict")
                   for i in group["ids"]}
    out = {}
    for route, route_metrics in metrics["routes"].items():
        plane = route_metrics.get("plane")
        if not plane:
            continue
        rows = predictions[(predictions["route"] == route) & predictions["pred_plane"].notna()
                           & predictions["true_plane"].notna()]
        wrong = rows["pred_plane"] != rows["true_plane"]
        on_conflict = rows["id"].isin(conflicting)
        clear = rows[~on_conflict]
        out[route] = {"n": plane["n"], "accuracy": plane["accuracy"]["value"], "accuracy_ci": plane["accuracy"]["ci"],
                      "errors": int(wrong.sum()), "n_conflicting_labels": int(on_conflict.sum()),
                      "errors_on_conflicts": int((wrong & on_conflict).sum()),
                      "accuracy_unambiguous": float((clear["pred_plane"] == clear["true_plane"]).mean())
                      if len(clear) else None}
    return out


def with_seed_spread(routes: dict[str, dict[str, Any]], spread: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each route's summary with ``accuracy_mean`` and ``accuracy_sd`` over seeds (the one seed's accuracy
    and None with a single seed; None for routes not trained per seed, such as seed ensembles)."""
    out = {}
    for route, values in routes.items():
        if spread is None:
            mean, sd = values["accuracy"], None
        else:
            accuracy = spread["routes"].get(route, {}).get("accuracy", {})
            mean, sd = accuracy.get("mean"), accuracy.get("std")
        out[route] = {**values, "accuracy_mean": mean, "accuracy_sd": sd}
    return out


def summarise(*, config: ExperimentConfig, dataset: str, metrics: dict[str, Any], comparisons: list[dict[str, Any]],
              predictions: pd.DataFrame, seed_evaluations: dict[str, dict[str, Any]],
              generalisation: Generalisation, throughput: dict[str, float], shortcut: dict[str, Any],
              audit: dict[str, Any], leaked_test_ids: list[str], weights: dict[str, Any],
              calibration: dict[str, dict[str, float]], stage_seconds: dict[str, float],
              train_keys: dict[str, str]) -> dict[str, Any]:
    """Assemble ``summary.json`` from the evaluation of the first model (``metrics``, which holds the
    seed-ensemble routes too), every model's evaluation (seeds or folds, by name) and the run's side results;
    ``train_keys`` names each model's training stage."""
    spread = seed_spread(seed_evaluations)
    routes = with_seed_spread({route: route_summary(m, throughput.get(route))
                               for route, m in metrics["routes"].items()}, spread)
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
        "plane_by_route": plane_summary(metrics, predictions, audit),
        "routes": routes,
        "test_without_training_duplicates": {
            "n_removed": len(set(leaked_test_ids)),
            "n": int(unseen["id"].nunique()),
            "routes": {} if unseen_metrics is None else
            {route: route_summary(m) for route, m in unseen_metrics["routes"].items()},
        },
        "mcnemar_p": compared.get("flat_vs_hierarchical", {}).get("mcnemar", {}).get("p_value"),
        "comparisons": compared,
        "seeds_aggregate": spread,
        "per_seed": per_seed_results(seed_evaluations),
        "train_seconds": train_seconds(stage_seconds, train_keys),
        "robustness": robustness_summary(generalisation, config.perturbations, clean),
        "external": external_summary(generalisation),
        "ood_auroc_perturbed": {label: _auroc_summary(a) for label, a in generalisation.perturbation_ood.items()},
        "generalisation": generalisation_summary(generalisation),
        "per_source": source_summary(generalisation),
        "holdout_source": config.holdout_source,
        "conformal": conformal_summary(generalisation),
        "shortcut": shortcut,
        "audit": {k: audit.get(k) for k in ("n_images", "exact_duplicate_groups", "exact_duplicate_files",
                                            "cross_split_duplicate_groups", "plane_conflict_groups",
                                            "rgb_fraction_by_class")},
        "audit_summary": {"metadata_traps": audit.get("metadata_traps", [])},
        "weights": weights,
        "temperature_scaling": calibration,
        "stage_seconds": stage_seconds,
        "config": config.to_dict(),
    }
