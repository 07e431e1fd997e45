"""The report sections on generalisation: the at-a-glance figure, the secondary test sets, referral of atypical
images by OOD score and conformal prediction sets (Markdown, with figures and tables collected in ``ReportFiles``).

The sets given with ``--external`` are called secondary test sets: duplicates of training images are removed
from them, which makes them duplicate-free, not source-disjoint (``label_quality`` says which archives they
share with the training data).
"""

from __future__ import annotations

import re

import pandas as pd

from hierarchy.experiment.generalisation import COMPARED, OOD_ROUTE, Generalisation
from hierarchy.reports import (
    conformal_per_class_table,
    conformal_table,
    dataset_comparison_table,
    dataset_confusion_figure,
    generalisation_figure,
    generalisation_table,
    ood_coverage_figure,
    ood_coverage_table,
    ood_table,
    per_class_recall_table,
    roc_figure,
)
from hierarchy.reports.build import GALLERY_DIR, route_curves
from hierarchy.reports.figures import missed_gallery_figure
from hierarchy.reports.style import line_groups
from hierarchy.reports.tables import headline_table
from hierarchy.reports.writer import ReportFiles

NOTHING_TUNED = (
    "Nothing was trained, selected or tuned on the secondary test sets: models, early stopping, temperatures, "
    "the ensemble weight, the OOD score's reference and the conformal thresholds all come from the training "
    "dataset's training and validation rows; each secondary test set is only predicted, once, after exact and "
    "near duplicates of training images are removed from it. Removing duplicates makes a set duplicate-free, "
    "not source-disjoint: see Label quality and data description for the archives each set comes from.")
SECONDARY_TITLE = "Secondary test sets (duplicate-free)"
CONFUSION_TITLE = "Confusion matrices by true and by predicted class"
REFERRAL_TITLE = "Referral of atypical images (OOD score)"


def stem(name: str) -> str:
    """A dataset name made safe for file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def _routes_to_draw(result: Generalisation) -> list[str]:
    """Every route of any dataset except the oracle (it needs true planes, which secondary test sets lack)."""
    found: list[str] = []
    for metrics in result.datasets.values():
        found += [r for r in metrics["routes"] if r not in found and r != "oracle"]
    return found


def at_a_glance(result: Generalisation, files: ReportFiles) -> str:
    routes = _routes_to_draw(result)
    sources = (f"Test images are also shown per source ({', '.join(result.sources)}). "
               if result.sources else "")
    return _join(
        sources + f"Secondary test sets are only ever predicted (see {SECONDARY_TITLE}).",
        files.figure(generalisation_figure(result.datasets, routes), "generalisation",
                     "Accuracy and tumour false-negative rate [95% CI] per dataset (test split, secondary test "
                     "sets, perturbed test split) and route"),
        files.table(generalisation_table(result.datasets), "generalisation",
                    "Accuracy and tumour false-negative rate per dataset and route [95% CI]"))


def _gallery(name: str, external, files: ReportFiles) -> str:
    errors = external.errors
    route = OOD_ROUTE if OOD_ROUTE in set(errors.get("route", ())) else next(iter(errors["route"]), None)
    if route is None or "path" not in external.predictions.columns:
        return ""
    paths = external.predictions.drop_duplicates("id").set_index("id")["path"]
    shown = errors[errors["route"] == route].assign(path=lambda t: t["id"].map(paths))
    caption = f"{name}: misclassified images of the {route} route, most confident first"
    return files.figure(missed_gallery_figure(shown), f"errors_{stem(name)}", caption, folder=GALLERY_DIR,
                        local=True)


def external_validation(result: Generalisation, files: ReportFiles) -> str:
    if not result.external:
        return "No secondary test set was given (`--external ROOT`)."
    parts = [NOTHING_TUNED]
    for name, external in result.external.items():
        record = external.record
        parts += [
            f"### {name}",
            f"{record['n_indexed']} images, {record['n_removed_as_training_duplicates']} removed as exact or "
            f"near duplicates of training images, {record['n_evaluated']} evaluated.",
            files.table(headline_table(external.metrics), f"external_{stem(name)}_headline",
                        f"{name}: headline metrics per route [95% CI]"),
            route_curves(files, roc_figure, external.metrics, f"roc_external_{stem(name)}",
                         f"{name}: one-vs-rest ROC curves, routes overlaid; AUC [95% CI] under each panel"),
            (f"{len(external.errors)} misclassifications across routes (id, true and predicted label, "
             "probabilities" + (", OOD score" if "ood_score" in external.errors else "") + "): "
             + files.table(external.errors, f"external_{stem(name)}_errors", f"{name}: every error",
                           embed=False)) if len(external.errors) else "No image was misclassified.",
            _gallery(name, external, files),
        ]
    metrics = {name: e.metrics for name, e in result.external.items()}
    compared = {name: e.comparison for name, e in result.external.items() if e.comparison}
    parts += [
        "### Per-class recall, confusion and paired comparison",
        files.table(per_class_recall_table(metrics), "external_per_class_recall",
                    "Per-class recall on each secondary test set [95% Wilson CI]"),
        *(files.figure(dataset_confusion_figure(metrics, group), "confusion_external" if k == 0 else
                       f"confusion_external_{k + 1}", "Confusion matrices on each secondary test set (rows: truth; "
                       f"normalised by predicted class too in {CONFUSION_TITLE})")
          for k, group in enumerate(line_groups([r for r in _routes_to_draw(result)
                                                 if any(r in m["routes"] for m in metrics.values())]))),
        (f"McNemar's exact test of {COMPARED[0]} against {COMPARED[1]} on the same secondary-test images "
         "(b: only the first right, c: only the second):\n\n"
         + files.table(dataset_comparison_table(compared), "external_comparisons",
                       f"{COMPARED[0]} vs {COMPARED[1]} on each secondary test set")) if compared else "",
    ]
    return _join(*parts)


def ood_referral(result: Generalisation, files: ReportFiles) -> str:
    if not result.external:
        return "No secondary test set was given, so there is nothing to tell apart."
    aurocs = {name: e.ood_auroc for name, e in result.external.items() if e.ood_auroc}
    by_class = {f"{name}, {label} only": auroc for name, e in result.external.items()
                for label, auroc in e.ood_auroc_by_class.items()}
    curves = {name: e.ood_coverage for name, e in result.external.items() if e.ood_coverage}
    if not aurocs and not curves:
        return ("No OOD score: the prediction tables carry no `ood_score` column (the routers were "
                "saved without an out-of-distribution scorer), so neither the AUROC nor accuracy "
                "against coverage can be given.")
    return _join(
        "Each image's OOD score (higher = more atypical) comes from the trunk's features, fitted on "
        f"training rows only. AUROC of telling each secondary test set from the test split by the {OOD_ROUTE} "
        "route's scores (0.5 = chance):",
        files.table(ood_table(aurocs), "ood_auroc", "OOD AUROC, test split vs secondary test set [95% CI]"),
        ("Within each class (test images of a class against secondary-test images of the same class), so that "
         "the two sets' class mixes do not sway the AUROC; and, as a check that the score sees a shift "
         "where one is known to exist, the test split against its own perturbed copies:\n\n"
         + files.table(ood_table({**by_class, **result.perturbation_ood}), "ood_auroc_detail",
                       "OOD AUROC within each class and against perturbed copies of the test split [95% CI]"))
        if by_class or result.perturbation_ood else "",
        files.figure(ood_coverage_figure(curves), "ood_coverage",
                     "Accuracy on the images kept when the most atypical are referred [95% Wilson band]")
        if curves else "",
        files.table(ood_coverage_table(curves), "ood_coverage", "Accuracy against coverage by OOD score",
                    embed=False) if curves else "")


def _coverage_by_dataset(result: Generalisation) -> pd.DataFrame:
    """Coverage [95% Wilson CI] and empty-set rate per route (rows) and dataset (columns), marginal and Mondrian."""
    rows = []
    for method, evaluations in (("marginal", result.conformal), ("Mondrian (per class)", result.conformal_mondrian)):
        routes = list(dict.fromkeys(r for e in evaluations.values() for r in e["routes"]))
        for route in routes:
            row = {"sets": method, "route": route}
            for dataset, evaluation in evaluations.items():
                found = evaluation["routes"].get(route)
                if found:
                    value, (low, high) = found["coverage"]["value"], found["coverage"]["ci"]
                    row[dataset] = f"{value:.3f} [{low:.3f}, {high:.3f}]; empty {found['empty']:.1%}"
            rows.append(row)
    return pd.DataFrame(rows)


def conformal_section(result: Generalisation, files: ReportFiles) -> str:
    if not result.conformal:
        return "No validation predictions, so no conformal sets were calibrated."
    empty = ("Empty sets are allowed (`conformal_allow_empty` true): an empty set says that no class is "
             "plausible at this confidence, which a reader should treat as a referral; `--set "
             "conformal_allow_empty=false` puts the most probable class into every set that would be empty "
             "(coverage can only rise, sets grow)." if result.allow_empty else
             "Empty sets are not allowed (`conformal_allow_empty` false): a set that would be empty holds the "
             "most probable class instead, so the empty-set rate is 0 and coverage can only rise.")
    mondrian = ("Mondrian sets calibrate one threshold per true class, so coverage holds within each class, "
                "not only on average over the class mix." if result.conformal_mondrian else
                "No Mondrian (per-class) sets: the calibration rows lack some class.")
    return _join(
        f"Split-conformal prediction sets (`crepes`, hinge nonconformity) calibrated per route on the "
        f"{result.calibrated_on}'s predictions, aiming to hold the true class with probability "
        f"{1 - result.alpha:.0%}. The guarantee assumes images exchangeable with the calibration ones: "
        "coverage that holds on the test split and falls on a secondary test set measures the shift. "
        + ("The calibration split is held out of the training pool (duplicate groups whole) and seen by nothing "
           "else: not early stopping, the ensemble weight or the temperatures. " if result.calibrated_on != "validation"
           else "The validation rows also chose early stopping and temperatures, which can make them slightly "
           "easier than unseen images. ") + mondrian + " " + empty,
        "Coverage [95% Wilson CI] and empty-set rate on the test split and on each secondary test set, side by side:",
        files.table(_coverage_by_dataset(result), "conformal_by_dataset",
                    "Conformal coverage [95% Wilson CI] and empty-set rate per route and dataset"),
        files.table(conformal_table(result.conformal), "conformal",
                    "Marginal conformal sets: coverage [95% Wilson CI], mean set size, empty and singleton "
                    "fractions per dataset and route", embed=False),
        files.table(conformal_table(result.conformal_mondrian), "conformal_mondrian",
                    "Mondrian (per-class) conformal sets: coverage [95% Wilson CI], mean set size, empty and "
                    "singleton fractions per dataset and route", embed=False) if result.conformal_mondrian else "",
        "Coverage within each true class (a class below its target is where the sets fail):",
        files.table(conformal_per_class_table(result.conformal_mondrian or result.conformal), "conformal_per_class",
                    ("Mondrian" if result.conformal_mondrian else "Marginal")
                    + " conformal sets: coverage and mean set size within each true class"))


def generalisation_sections(result: Generalisation, files: ReportFiles) -> list[tuple[str, str]]:
    """(title, Markdown) sections of the generalisation results; their files are added to ``files``."""
    return [
        ("Generalisation at a glance", at_a_glance(result, files)),
        (SECONDARY_TITLE, external_validation(result, files)),
        (REFERRAL_TITLE, ood_referral(result, files)),
        ("Conformal prediction sets", conformal_section(result, files)),
    ]
