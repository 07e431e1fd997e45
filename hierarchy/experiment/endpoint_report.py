"""``report.md``'s leading sections: the declared primary endpoint, the adjusted family of flat-vs-hierarchical
tests, and the results of every model (seed or cross-validation fold) with the combined interval."""

from __future__ import annotations

from typing import Any

from hierarchy.experiment.refit_control import CONTROL
from hierarchy.metrics.multiplicity import METHODS
from hierarchy.reports import markdown_table

PRIMARY_TITLE = "Primary endpoint (declared)"
FAMILY_TITLE = "Flat-vs-hierarchical tests, adjusted for multiplicity"
MODELS_TITLE = "Cross-validation and variance across models"
COMBINED_METHOD = ("mean over the models; 95% interval = mean ± 1.96 · sqrt(between-model variance + mean "
                   "within-model variance), the between-model variance being the sample variance of the models' "
                   "estimates (training data and initialisation) and the within-model variance each model's "
                   "bootstrap variance over test images (test sampling); p: two-sided normal test of the same, so "
                   "the interval excludes 0 exactly when p < 0.05")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _ci(ci: list[float] | None) -> str:
    return "n/a" if not ci or ci[0] is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _bootstrap_method(n_groups: int | None) -> str:
    resampled = ("whole duplicate groups (cluster bootstrap, stratified by class)" if n_groups is not None
                 else "images (stratified by class)")
    return (f"percentile bootstrap resampling {resampled}; a difference's interval and p-value come from the "
            "same paired resamples and agree; McNemar: exact two-sided and mid-p")


def _adjusted(summary: dict[str, Any]) -> dict[tuple[str, str], float | None]:
    return {(t["pair"], t["dataset"]): t["p_adjusted"] for t in summary["comparison_family"]["tests"]}


def primary_section(summary: dict[str, Any]) -> str:
    """The primary endpoint: each route's accuracy, then the paired differences with CI, raw and adjusted p."""
    primary = summary["primary_endpoint"]
    reference, compared = primary["reference"], primary["compared"]
    adjusted = _adjusted(summary)
    groups = f", {primary['n_groups']} duplicate groups" if primary["n_groups"] is not None else ""
    method = COMBINED_METHOD if primary["models"] > 1 else _bootstrap_method(primary["n_groups"])
    routes = [r for r in dict.fromkeys([reference, CONTROL, compared, *primary["routes"]]) if r in primary["routes"]]
    rows = [[route, _pct(v["accuracy"]), _ci(v["ci"])] for route, v in ((r, primary["routes"][r]) for r in routes)]
    differences = []
    for name, d in primary["differences"].items():
        mcnemar = d.get("mcnemar")
        differences.append([f"{d['compared']} − {d['reference']}", _points(d["difference"]), _ci(d["ci"]),
                            _p(d["p_value"]), _p(adjusted.get((name, primary["dataset"]))),
                            "n/a" if not mcnemar else f"{mcnemar['b']}/{mcnemar['c']}, mid-p {_p(mcnemar['mid_p'])}"])
    models = (f"the mean over {primary['models']} models ({summary['cross_model']['kind']})"
              if primary["models"] > 1 else "one model")
    control = ("" if CONTROL in primary["routes"] else
               f" The refit control `{CONTROL}` applies to the `joint` and `shared` modes only and was not run.")
    return (f"Declared in the configuration before evaluation (`primary_routes`, `primary_subset`): the accuracy "
            f"of **{compared}** minus that of **{reference}** on {primary['subset_description']} "
            f"({primary['n']} images{groups}), estimated by {models}. `{CONTROL}` is the flat route refitted as "
            f"the experts are (a linear head on the same trunk, same solver): like for like with the per-plane "
            f"heads.{control} The whole test split and the secondary test sets (`--external`: duplicate-free, not source-disjoint) are secondary (next section).\n\n"
            + markdown_table(["route", "accuracy", "95% CI"], rows) + "\n\n"
            + markdown_table(["difference", "points", "95% CI", "p (raw)",
                              f"p ({primary['multiplicity']}-adjusted)", "McNemar b/c"], differences)
            + f"\n\nMethod: {method}. Adjusted p: over the family of the next section.")


def family_section(summary: dict[str, Any]) -> str:
    """Every flat-vs-hierarchical test of the declared family, raw and adjusted p side by side."""
    family = summary["comparison_family"]
    rows = [[t["dataset"], t["pair"].replace("_vs_", " − "), _points(t["difference"]), _ci(t["ci"]),
             _p(t["p_raw"]), _p(t["p_adjusted"]), "yes" if t["significant"] else "no"] for t in family["tests"]]
    pairs = ", ".join(summary["primary_endpoint"]["differences"])
    return (f"The declared family: each route pair of the primary endpoint ({pairs}) "
            f"on the primary subset, the whole test split (secondary) and each secondary test set "
            f"(duplicate-free, not source-disjoint), m = {family['m']} tests, adjusted by "
            f"{METHODS[family['method']]} at level {family['level']}. Differences are accuracy points; intervals "
            "and raw p-values as in the primary endpoint (BRISC test subsets: cluster bootstrap over duplicate "
            "groups).\n\n"
            + markdown_table(["dataset", "difference", "points", "95% CI", "p (raw)",
                              f"p ({family['method']})", "significant (adjusted)"], rows))


def models_section(summary: dict[str, Any]) -> str | None:
    """Per model and dataset the accuracy of each route, mean ± sd and the combined interval; None with one model."""
    cross = summary.get("cross_model")
    if not cross:
        return None
    cv = cross.get("cv")
    how = (f"{cv['folds']}-fold cross-validation repeated {cv['repeats']} time(s) on the training pool (the "
           "calibration split excluded), grouped so that every exact or near-duplicate group lies in one fold; "
           "each fold's model trained on the other folds, with the held-out fold as its validation split (early "
           "stopping, ensemble weight, temperatures), and evaluated on the official test split and every "
           "secondary test set" if cv else f"{len(cross['models'])} training seeds on one train/validation split")
    parts = [f"Models: {how}. Combined interval: {COMBINED_METHOD}."]
    for label, result in cross["datasets"].items():
        routes = list(result["combined"]["routes"])
        per_model = [[model, *(_pct(r["routes"][route]["accuracy"]) for route in routes)]
                     for model, r in result["per_model"].items()]
        combined = result["combined"]
        spread = combined["routes"]
        per_model.append(["mean ± sd", *(f"{_pct(spread[r]['mean'])} ± {100 * spread[r]['sd']:.2f}" for r in routes)])
        per_model.append(["combined 95% CI", *(_ci(combined["routes"][r]["ci"]) for r in routes)])
        differences = [[d["compared"] + " − " + d["reference"], f"{_points(d['mean'])} ± {100 * d['sd']:.2f}",
                        _ci(d["ci"]), _p(d["p_value"]), f"{d['between_variance']:.2e}", f"{d['within_variance']:.2e}"]
                       for d in combined["differences"].values()]
        parts += [f"**{label}**", markdown_table(["model", *routes], per_model),
                  markdown_table(["difference", "mean ± sd (points)", "combined 95% CI", "p", "between-model var",
                                  "within-model var"], differences)]
    return "\n\n".join(parts)


def lead_sections(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The sections ``report.md`` opens with: the primary endpoint first, then the adjusted family, then the
    per-model results when there are several models."""
    sections = [(PRIMARY_TITLE, primary_section(summary)), (FAMILY_TITLE, family_section(summary))]
    if (models := models_section(summary)) is not None:
        sections.append((MODELS_TITLE, models))
    return sections
