"""Results read as a clinician reads them, on the test split and every secondary test set: the tumour-vs-normal
reading (sensitivity at fixed specificity and back, decision curves) and confusion matrices normalised by true
class and by predicted class.

Everything comes from prediction tables and their ``evaluate_predictions`` results (the confusion matrices,
with both normalisations, are already there); :func:`assess_clinical` adds the operating points, whose
intervals re-choose the threshold in every bootstrap resample (:mod:`hierarchy.metrics.operating_points`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierarchy.experiment.generalisation import Generalisation
from hierarchy.experiment.generalisation_report import CONFUSION_TITLE, stem
from hierarchy.labels import NO_TUMOR
from hierarchy.metrics import clinical_reading, labels_and_probabilities
from hierarchy.metrics.evaluate import _route_rows
from hierarchy.metrics.operating_points import TARGETS
from hierarchy.reports import markdown_table
from hierarchy.reports.figures import both_confusions_figure, decision_curve_figure
from hierarchy.reports.writer import ReportFiles

MAIN_ROUTE = "hierarchical"  # the route whose confusion matrices are drawn
LEFT_OUT = ("oracle",)  # needs true planes: evaluation-only, absent from secondary test sets
TABLE_THRESHOLDS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))  # decision-curve rows written as a table
READINGS = {"sensitivity_at_specificity": ("sensitivity", "specificity"),
            "specificity_at_sensitivity": ("specificity", "sensitivity")}
CLINICAL_TITLE = "Tumour versus normal"


@dataclass
class ClinicalResults:
    """Per dataset (test split first, then each secondary test set) and route: the tumour-vs-normal reading
    (None when a dataset has only tumours or only normals, or no normal class) and the confusion matrix."""

    readings: dict[str, dict[str, dict | None]]
    confusions: dict[str, dict[str, dict]]
    main_route: str


def assess_clinical(generalisation: Generalisation, test_predictions: pd.DataFrame, *, n_bootstrap: int,
                    seed: int, classes: Sequence[str] | None = None) -> ClinicalResults:
    """Operating points and decision curves of every route (the oracle left out) on the test split
    (``test_predictions``) and each secondary test set of ``generalisation``, with the confusion matrices
    their evaluations already hold."""
    tables = {label: test_predictions for label in generalisation.of_kind("test")}
    tables.update({name: e.predictions for name, e in generalisation.external.items()})
    readings, confusions = {}, {}
    for label, table in tables.items():
        metrics = generalisation.datasets[label]
        routes = [r for r in metrics["routes"] if r not in LEFT_OUT]
        names = classes or metrics["classes"]
        readings[label] = {route: clinical_reading(*labels_and_probabilities(_route_rows(table, route), names),
                                                   names, n_resamples=n_bootstrap, seed=seed)
                           if NO_TUMOR in names else None for route in routes}
        confusions[label] = {route: metrics["routes"][route]["confusion"] for route in routes}
    routes = [r for by_route in confusions.values() for r in by_route]
    return ClinicalResults(readings, confusions, MAIN_ROUTE if MAIN_ROUTE in routes else routes[0])


def _key(reading: str, target: str) -> str:
    measure, fixed = READINGS[reading]
    return f"{measure}_at_{fixed}_{target}"


def operating_point_table(results: ClinicalResults) -> pd.DataFrame:
    """One row per (dataset, route): tumour and normal counts, and sensitivity at each target specificity and
    specificity at each target sensitivity, each with its CI (``x``, ``x_ci_low``, ``x_ci_high``)."""
    rows = []
    for dataset, by_route in results.readings.items():
        for route, reading in by_route.items():
            if reading is None:
                continue
            point = next(iter(reading["sensitivity_at_specificity"].values()))
            row = {"dataset": dataset, "route": route, "n_tumour": point["n_positive"], "n_normal": point["n_negative"]}
            for name in READINGS:
                for target, found in reading[name].items():
                    key = _key(name, target)
                    row[key] = found["value"]
                    row[f"{key}_ci_low"], row[f"{key}_ci_high"] = found["ci"]
            rows.append(row)
    return pd.DataFrame(rows)


def threshold_table(results: ClinicalResults) -> pd.DataFrame:
    """One row per (dataset, route, operating point): the threshold on ``1 - p(no_tumour)`` chosen on the
    images and the fixed measure it achieved (at least the target)."""
    return pd.DataFrame([{"dataset": dataset, "route": route, "operating_point": _key(name, target),
                          "threshold": found["threshold"], "achieved": found["achieved"], "value": found["value"]}
                         for dataset, by_route in results.readings.items()
                         for route, reading in by_route.items() if reading is not None
                         for name in READINGS for target, found in reading[name].items()])


def decision_table(results: ClinicalResults) -> pd.DataFrame:
    """Net benefit of every route, treat-all and treat-none at ``TABLE_THRESHOLDS``, per dataset."""
    rows = []
    for dataset, by_route in results.readings.items():
        for route, reading in by_route.items():
            if reading is None:
                continue
            curve = reading["decision_curve"]
            at = {round(t, 2): i for i, t in enumerate(curve["threshold"])}
            rows += [{"dataset": dataset, "route": route, "threshold": t, "net_benefit": curve["model"][at[t]],
                      "treat_all": curve["treat_all"][at[t]], "treat_none": curve["treat_none"][at[t]]}
                     for t in TABLE_THRESHOLDS if t in at]
    return pd.DataFrame(rows)


def confusion_table(results: ClinicalResults) -> pd.DataFrame:
    """One row per (dataset, route, true class, predicted class): the count, its share of the true class
    (row-normalised, recall on the diagonal) and of the predicted class (column-normalised, precision)."""
    return pd.DataFrame([{"dataset": dataset, "route": route, "true": true, "predicted": predicted,
                          "n": matrix["counts"][i][j], "of_true_class": matrix["normalized"][i][j],
                          "of_predicted_class": matrix["normalized_by_predicted"][i][j]}
                         for dataset, by_route in results.confusions.items()
                         for route, matrix in by_route.items()
                         for i, true in enumerate(matrix["labels"])
                         for j, predicted in enumerate(matrix["labels"])])


def confusion_matrix_markdown(matrix: dict) -> str:
    """A confusion matrix as Markdown, rows true and columns predicted class, each cell
    ``count (share of its true class / share of its predicted class)``."""
    labels = matrix["labels"]
    rows = [[f"**{true}**", *(f"{matrix['counts'][i][j]} ({matrix['normalized'][i][j]:.0%} / "
                              f"{matrix['normalized_by_predicted'][i][j]:.0%})" for j in range(len(labels)))]
            for i, true in enumerate(labels)]
    return markdown_table(["true \\ predicted", *labels], rows)


def clinical_section(results: ClinicalResults, files: ReportFiles) -> str:
    """The tumour-vs-normal section: operating points [95% CI] and decision curves per dataset and route."""
    table = operating_point_table(results)
    if table.empty:
        return "No dataset holds both tumour and normal images, so there is no tumour-vs-normal reading."
    targets = ", ".join(f"{t:.0%}" for t in TARGETS)
    curves = {dataset: {route: reading["decision_curve"] for route, reading in by_route.items() if reading}
              for dataset, by_route in results.readings.items()}
    return "\n\n".join([
        f"The four-class probabilities read as one tumour score, `1 - p({NO_TUMOR})`. At each target specificity "
        f"({targets}) the threshold is the lowest one whose specificity on the normal images reaches the target, "
        "and the sensitivity at it is given (and the reverse for each target sensitivity). The threshold is chosen "
        "on the very images it is reported on, so these are the best operating points the scores allow, not the "
        "performance of a threshold fixed in advance. Intervals: percentile bootstrap resampling tumour and "
        "normal images separately, the threshold re-chosen in every resample. With few normal images a 99% "
        "specificity rests on a handful of them: the interval shows it.",
        files.table(table, "tumour_vs_normal", "Tumour vs normal: sensitivity at fixed specificity and "
                    "specificity at fixed sensitivity [95% bootstrap CI]"),
        files.table(threshold_table(results), "tumour_vs_normal_thresholds",
                    "Tumour vs normal: threshold on the tumour score at each operating point", embed=False),
        "Decision curves (Vickers & Elkin 2006): the net benefit of acting on the images whose tumour score "
        "reaches a threshold probability, `TP/n - FP/n * p/(1 - p)`, beside acting on every image (treat all) "
        "and on none. A route is useful at a threshold where its curve lies above both.",
        files.figure(decision_curve_figure(curves), "decision_curve",
                     "Decision curves, tumour vs normal: net benefit against threshold probability per dataset and "
                     "route, with treat-all and treat-none"),
        files.table(decision_table(results), "decision_curve", "Net benefit per dataset, route and threshold",
                    embed=False),
    ])


def confusion_section(results: ClinicalResults, files: ReportFiles) -> str:
    """Confusion matrices with counts, normalised by true and by predicted class, for every dataset."""
    route = results.main_route
    parts = [
        "Row-normalised matrices show recall (how many of a class are found); column-normalised ones show "
        "precision (how often a call of that class is right), which recall-normalised matrices hide when "
        f"classes are unbalanced. The {route} route on every dataset, each cell `count (share of its true class "
        "/ share of its predicted class)`:",
    ]
    for dataset, by_route in results.confusions.items():
        if route in by_route:
            parts.append(f"**{dataset}** ({route})\n\n" + confusion_matrix_markdown(by_route[route]))
    parts += [
        files.figure(both_confusions_figure({d: m[route] for d, m in results.confusions.items() if route in m}),
                     f"confusion_{stem(route)}_both",
                     f"{route}: confusion matrices per dataset, normalised by true class (rows sum to 1) and by "
                     "predicted class (columns sum to 1), with counts"),
        files.table(confusion_table(results), "confusion_all", "Confusion counts of every route and dataset, "
                    "with the share of the true class and of the predicted class", embed=False),
    ]
    return "\n\n".join(p for p in parts if p)


def clinical_summary(results: ClinicalResults) -> dict:
    """``summary.json`` blocks: ``tumour_vs_normal.<dataset>.<route>`` (operating points with CI and
    threshold; net benefit at 0.1, 0.2 and 0.5) and ``confusion.<dataset>.<route>`` (labels, counts,
    by_true, by_predicted)."""
    def reading_summary(reading: dict) -> dict:
        curve = reading["decision_curve"]
        at = {round(t, 2): i for i, t in enumerate(curve["threshold"])}
        point = next(iter(reading["sensitivity_at_specificity"].values()))
        return {"n_tumour": point["n_positive"], "n_normal": point["n_negative"],
                **{name: {target: {k: found[k] for k in ("value", "ci", "threshold", "achieved")}
                          for target, found in reading[name].items()} for name in READINGS},
                "net_benefit": {str(t): {"model": curve["model"][at[t]], "treat_all": curve["treat_all"][at[t]]}
                                for t in (0.1, 0.2, 0.5) if t in at}}
    return {
        "tumour_vs_normal": {dataset: {route: reading_summary(r) for route, r in by_route.items() if r}
                             for dataset, by_route in results.readings.items()},
        "confusion": {dataset: {route: {"labels": m["labels"], "counts": m["counts"], "by_true": m["normalized"],
                                        "by_predicted": m["normalized_by_predicted"]}
                                for route, m in by_route.items()}
                      for dataset, by_route in results.confusions.items()},
    }


def clinical_sections(results: ClinicalResults, files: ReportFiles) -> list[tuple[str, str]]:
    """(title, Markdown) of the tumour-vs-normal and confusion sections; their files go to ``files``."""
    return [(CLINICAL_TITLE, clinical_section(results, files)), (CONFUSION_TITLE, confusion_section(results, files))]

