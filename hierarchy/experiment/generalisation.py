"""How far the routers generalise, from prediction tables alone: BRISC test, each external set and each
perturbation of the test split, with out-of-distribution referral and conformal prediction sets.

Nothing here fits anything on external data: conformal sets are calibrated on a held-out calibration split's
(or the validation rows') predictions, and OOD scores come with the prediction tables (fitted by the Router on
training rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hierarchy.metrics import (
    accuracy_coverage_curve,
    compare_routes,
    conformal_evaluation,
    evaluate_predictions,
    ood_auroc,
)
from hierarchy.reports.tables import error_table

OOD_COLUMN = "ood_score"
# The routes compared on every external set, and the route whose OOD scores tell the datasets apart.
COMPARED = ("flat", "hierarchical")
OOD_ROUTE = "hierarchical"
# Per-class OOD AUROCs are given for classes with at least this many images in both sets.
MIN_CLASS_IMAGES = 10


@dataclass
class ExternalResult:
    """One external set: its cleaning record, predictions and everything measured on them."""

    record: dict
    predictions: pd.DataFrame
    metrics: dict
    comparison: dict | None = None  # compare_routes flat vs hierarchical
    ood_auroc: dict | None = None  # BRISC test vs this set, by OOD score
    ood_auroc_by_class: dict[str, dict] = field(default_factory=dict)  # the same within each true class
    ood_coverage: dict[str, dict] = field(default_factory=dict)  # route -> accuracy_coverage_curve
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Generalisation:
    """Every dataset's evaluation in display order, and the external and conformal results."""

    datasets: dict[str, dict]  # label -> evaluate_predictions result
    kinds: dict[str, str]  # label -> "test", "source" (one source of the test set), "external" or "perturbation"
    external: dict[str, ExternalResult]
    conformal: dict[str, dict]  # label -> conformal_evaluation result (test and external sets)
    alpha: float
    conformal_mondrian: dict[str, dict] = field(default_factory=dict)  # the same, one threshold per true class
    allow_empty: bool = True  # whether a conformal set may be empty (else it holds the most probable class)
    sources: dict[str, str] = field(default_factory=dict)  # source -> label, when the test set has several
    perturbation_ood: dict[str, dict] = field(default_factory=dict)  # label -> OOD AUROC, test vs perturbed test
    calibrated_on: str = "validation"  # the rows the conformal sets were calibrated on

    def of_kind(self, kind: str) -> dict[str, dict]:
        """The evaluations of the datasets of one kind."""
        return {label: m for label, m in self.datasets.items() if self.kinds[label] == kind}


def perturbation_label(perturbation: str) -> str:
    """How a perturbed copy of the test split is named in tables and figures."""
    return f"test + {perturbation}"


def source_label(source: str) -> str:
    """How the test images of one source are named in tables and figures."""
    return f"test: {source}"


def split_by_source(pred: pd.DataFrame, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Prediction rows per ``source`` of their images (looked up by id in the dataset index ``frame``);
    empty when the images come from one source."""
    if "source" not in frame.columns:
        return {}
    source = pred["id"].map(frame.set_index("id")["source"])
    if source.nunique() < 2:
        return {}
    return {name: pred[source == name] for name in sorted(source.dropna().unique())}


def ood_scores(table: pd.DataFrame, route: str | None = None) -> pd.Series | None:
    """One OOD score per image id (from ``route``'s rows, else the first route's), or None when the
    table has no ``ood_score`` column or some score is missing."""
    if OOD_COLUMN not in table.columns or table.empty:
        return None
    routes = list(dict.fromkeys(table["route"]))
    rows = table[table["route"] == (route if route in routes else routes[0])]
    scores = pd.to_numeric(rows[OOD_COLUMN], errors="coerce")
    if not np.isfinite(scores.to_numpy(dtype=float)).all():
        return None
    return pd.Series(scores.to_numpy(dtype=float), index=rows["id"].to_numpy(), name=OOD_COLUMN)


def coverage_curves(table: pd.DataFrame) -> dict[str, dict]:
    """Per route: accuracy on the images kept when the most atypical (by OOD score) are referred."""
    curves = {}
    for route in dict.fromkeys(table["route"]):
        rows = table[table["route"] == route]
        scores = ood_scores(rows)
        if scores is not None:
            correct = (rows["pred_label"] == rows["true_label"]).to_numpy()
            curves[route] = accuracy_coverage_curve(correct, scores.to_numpy())
    return curves


def ood_auroc_between(inside: pd.DataFrame, outside: pd.DataFrame, *, n_bootstrap: int, seed: int) -> dict | None:
    """AUROC (with CI) of telling the images of the prediction table ``outside`` from those of ``inside`` by
    the OOD scores of their ``OOD_ROUTE`` rows; None when either table lacks scores."""
    scores_in, scores_out = ood_scores(inside, OOD_ROUTE), ood_scores(outside, OOD_ROUTE)
    if scores_in is None or scores_out is None:
        return None
    return ood_auroc(scores_in.to_numpy(), scores_out.to_numpy(), n_bootstrap=n_bootstrap, seed=seed)


def ood_auroc_by_class(inside: pd.DataFrame, outside: pd.DataFrame, *, n_bootstrap: int,
                       seed: int) -> dict[str, dict]:
    """:func:`ood_auroc_between` within each true class with ``MIN_CLASS_IMAGES`` images in both tables.

    The overall AUROC also reflects how the two sets mix classes (the score is a distance to the nearest
    class); within one class only the images' own atypicality counts.
    """
    result = {}
    for label in sorted(set(inside["true_label"]) & set(outside["true_label"])):
        rows_in, rows_out = inside[inside["true_label"] == label], outside[outside["true_label"] == label]
        if min(rows_in["id"].nunique(), rows_out["id"].nunique()) >= MIN_CLASS_IMAGES:
            auroc = ood_auroc_between(rows_in, rows_out, n_bootstrap=n_bootstrap, seed=seed)
            if auroc is not None:
                result[str(label)] = auroc
    return result


def assess_external(record: dict, predictions: pd.DataFrame, test: pd.DataFrame, *, n_bootstrap: int,
                    seed: int) -> ExternalResult:
    """Metrics with CIs, McNemar flat vs hierarchical, OOD AUROC against ``test``, accuracy against
    coverage, and the error table of one external set's predictions."""
    metrics = evaluate_predictions(predictions, n_bootstrap=n_bootstrap, seed=seed)
    comparison = (compare_routes(predictions, *COMPARED, n_bootstrap=n_bootstrap, seed=seed)
                  if all(r in metrics["routes"] for r in COMPARED) else None)
    return ExternalResult(record=record, predictions=predictions, metrics=metrics, comparison=comparison,
                          ood_auroc=ood_auroc_between(test, predictions, n_bootstrap=n_bootstrap, seed=seed),
                          ood_auroc_by_class=ood_auroc_by_class(test, predictions, n_bootstrap=n_bootstrap,
                                                                seed=seed),
                          ood_coverage=coverage_curves(predictions),
                          errors=error_table(predictions, ood_scores=ood_scores(predictions, OOD_ROUTE)))


def assess_generalisation(test: pd.DataFrame, test_metrics: dict, *, test_label: str,
                          validation: pd.DataFrame | None,
                          external: Mapping[str, tuple[dict, pd.DataFrame]],
                          perturbed: Mapping[str, pd.DataFrame], n_bootstrap: int, seed: int,
                          alpha: float = 0.1, sources: Mapping[str, pd.DataFrame] | None = None,
                          calibrated_on: str = "validation", allow_empty: bool = True) -> Generalisation:
    """Evaluate the test split, every external set and every perturbed copy of the test split.

    Parameters
    ----------
    test, test_metrics : DataFrame, dict
        Test-split predictions and their ``evaluate_predictions`` result (computed once by the caller).
    test_label : str
        The test split's name in tables and figures.
    validation : DataFrame or None
        Predictions of the rows conformal sets are calibrated on (none when None), named by ``calibrated_on``:
        a calibration split nothing else has seen, or the validation rows.
    external : mapping of str to (dict, DataFrame)
        Per external set, its cleaning record (``load_external``) and its predictions.
    perturbed : mapping of str to DataFrame
        Per perturbation, the test split's predictions after it.
    n_bootstrap, seed : int
        Bootstrap resamples and seed of every interval.
    alpha : float
        Conformal miscoverage: sets aim to hold the true class with probability ``1 - alpha``.
    sources : mapping of str to DataFrame, optional
        Per source of a multi-source test set, its rows of ``test`` (see :func:`split_by_source`).
    allow_empty : bool
        Whether conformal sets may be empty; False puts the most probable class into a set that would be.
        Sets are made marginal (one threshold) and Mondrian (one per true class; only when the calibration
        rows hold every class).
    """
    externals = {name: assess_external(record, table, test, n_bootstrap=n_bootstrap, seed=seed)
                 for name, (record, table) in external.items()}
    datasets = {test_label: test_metrics}
    kinds = {test_label: "test"}
    labels = {source: source_label(source) for source in sources or {}}
    for source, table in (sources or {}).items():
        datasets[labels[source]] = evaluate_predictions(table, n_bootstrap=n_bootstrap, seed=seed)
        kinds[labels[source]] = "source"
    datasets.update({name: r.metrics for name, r in externals.items()})
    kinds.update(dict.fromkeys(externals, "external"))
    perturbation_ood = {}
    for perturbation, table in perturbed.items():
        label = perturbation_label(perturbation)
        datasets[label] = evaluate_predictions(table, n_bootstrap=n_bootstrap, seed=seed)
        kinds[label] = "perturbation"
        auroc = ood_auroc_between(test, table, n_bootstrap=n_bootstrap, seed=seed)
        if auroc is not None:
            perturbation_ood[label] = auroc
    conformal, mondrian = {}, {}
    if validation is not None:
        evaluated = {test_label: test, **{name: r.predictions for name, r in externals.items()}}
        conformal = {label: conformal_evaluation(validation, table, alpha=alpha, allow_empty=allow_empty)
                     for label, table in evaluated.items()}
        if set(validation["true_label"]) >= set(test_metrics["classes"]):
            mondrian = {label: conformal_evaluation(validation, table, alpha=alpha, allow_empty=allow_empty,
                                                    class_conditional=True)
                        for label, table in evaluated.items()}
    return Generalisation(datasets=datasets, kinds=kinds, external=externals, conformal=conformal,
                          alpha=alpha, sources=labels, perturbation_ood=perturbation_ood,
                          calibrated_on=calibrated_on, conformal_mondrian=mondrian, allow_empty=allow_empty)
