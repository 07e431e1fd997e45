"""The report sections on generalisation: the at-a-glance figure, external validation, out-of-distribution
referral and conformal prediction sets (Markdown, with figures and tables collected in ``ReportFiles``)."""

from __future__ import annotations

import re

from hierarchy.experiment.generalisation import COMPARED, OOD_ROUTE, Generalisation
from hierarchy.reports import (
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
    "Nothing was trained, selected or tuned on external data: models, early stopping, temperatures, the "
    "ensemble weight, the OOD score's reference and the conformal thresholds all come from the training "
    "dataset's training and validation rows; each external set is only predicted, once, after exact and "
    "near duplicates of training images are removed from it.")


def stem(name: str) -> str:
    """A dataset name made safe for file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def _routes_to_draw(result: Generalisation) -> list[str]:
    """Every route of any dataset except the oracle (it needs true planes, which external sets lack)."""
    found: list[str] = []
    for metrics in result.datasets.values():
        found += [r for r in metrics["routes"] if r not in found and r != "oracle"]
    return found


def at_a_glance(result: Generalisation, files: ReportFiles) -> str:
    routes = _routes_to_draw(result)
    sources = (f"Test images are also shown per source ({', '.join(result.sources)}). "
               if result.sources else "")
    return _join(
        sources + "External sets are only ever predicted (see External validation).",
        files.figure(generalisation_figure(result.datasets, routes), "generalisation",
                     "Accuracy and tumour false-negative rate [95% CI] per dataset (test split, external "
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
        return "No external dataset was given (`--external ROOT`)."
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
                    "Per-class recall on each external set [95% Wilson CI]"),
        *(files.figure(dataset_confusion_figure(metrics, group), "confusion_external" if k == 0 else
                       f"confusion_external_{k + 1}", "Confusion matrices on each external set (rows: truth)")
          for k, group in enumerate(line_groups([r for r in _routes_to_draw(result)
                                                 if any(r in m["routes"] for m in metrics.values())]))),
        (f"McNemar's exact test of {COMPARED[0]} against {COMPARED[1]} on the same external images "
         "(b: only the first right, c: only the second):\n\n"
         + files.table(dataset_comparison_table(compared), "external_comparisons",
                       f"{COMPARED[0]} vs {COMPARED[1]} on each external set")) if compared else "",
    ]
    return _join(*parts)


def ood_referral(result: Generalisation, files: ReportFiles) -> str:
    if not result.external:
        return "No external dataset was given, so there is nothing to tell apart."
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
        f"training rows only. AUROC of telling each external set from the test split by the {OOD_ROUTE} "
        "route's scores (0.5 = chance):",
        files.table(ood_table(aurocs), "ood_auroc", "OOD AUROC, test split vs external set [95% CI]"),
        ("Within each class (test images of a class against external images of the same class), so that "
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


def conformal_section(result: Generalisation, files: ReportFiles) -> str:
    if not result.conformal:
        return "No validation predictions, so no conformal sets were calibrated."
    return _join(
        f"Split-conformal prediction sets (`crepes`, hinge nonconformity) calibrated per route on the "
        f"{result.calibrated_on}'s predictions, aiming to hold the true class with probability "
        f"{1 - result.alpha:.0%}. The guarantee assumes images exchangeable with the calibration ones: "
        "coverage that holds on the test split and falls on an external set measures the shift. "
        + ("The calibration split is held out of the training pool (duplicate groups whole) and seen by nothing "
           "else: not early stopping, the ensemble weight or the temperatures." if result.calibrated_on != "validation"
           else "The validation rows also chose early stopping and temperatures, which can make them slightly "
           "easier than unseen images."),
        files.table(conformal_table(result.conformal), "conformal",
                    "Conformal coverage [95% Wilson CI] and mean set size per dataset and route"))


def generalisation_sections(result: Generalisation, files: ReportFiles) -> list[tuple[str, str]]:
    """(title, Markdown) sections of the generalisation results; their files are added to ``files``."""
    return [
        ("Generalisation at a glance", at_a_glance(result, files)),
        ("External validation", external_validation(result, files)),
        ("Out-of-distribution referral", ood_referral(result, files)),
        ("Conformal prediction sets", conformal_section(result, files)),
    ]
