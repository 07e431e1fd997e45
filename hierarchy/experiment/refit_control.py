"""The refit control of ``joint`` and ``shared`` mode: is the hierarchy's gain the per-plane split, or the refit?

In these modes every expert is a linear head refitted on the flat model's frozen trunk, while the flat head was
trained with the network. A gain of the hierarchical route over the flat one can therefore come from splitting
by plane or from refitting a head at all. ``refit_flat_head`` fits one more linear head, over every training
row, exactly as the experts are fitted (same trunk, feature views, solver and settings): the flat route with the
refit and without the split. ``refit_comparison`` sets the three side by side on one evaluation frame, paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from hierarchy.metrics.false_negatives import detection_rates
from hierarchy.metrics.intervals import proportion
from hierarchy.metrics.paired import mcnemar_exact
from hierarchy.predictions import label_indices
from hierarchy.provenance import data_hashes
from hierarchy.routing import ImageClassifier, Router, Task
from hierarchy.routing.fitting import fit_components

CONTROL = "flat_refit"
COMPARED = ("flat", CONTROL, "hierarchical")
PAIRS = ((CONTROL, "flat"), ("hierarchical", CONTROL), ("hierarchical", "flat"))


def refit_flat_head(router: Router, train: pd.DataFrame, val: pd.DataFrame, *,
                    work: str | Path | None = None) -> ImageClassifier:
    """A linear tumour head over every row of ``train`` on ``router``'s flat trunk, fitted like its experts.

    ``train`` and ``val`` must be the rows the Router was fitted on (``trained_on_`` is compared), so the
    control sees exactly the experts' data; ``work`` is the Router's ``out_dir / "training"`` to reuse its
    feature cache.
    """
    if router.mode not in ("joint", "shared"):
        raise ValueError(f"the refit control needs a Router in 'joint' or 'shared' mode (experts refitted on the "
                         f"flat model's trunk), got mode={router.mode!r}")
    check_is_fitted(router)
    if data_hashes({"train": train.reset_index(drop=True), "val": val.reset_index(drop=True)}) \
            != router.flat_model_.trained_on_:
        raise ValueError("train and val are not the rows the Router was fitted on (their hashes differ from the "
                         "flat model's); the control must see the experts' data")
    expert = next(iter(router.experts_.values()))
    control = ImageClassifier(expert.backbone, Task("label", router.classes_), preprocess=expert.preprocess_,
                              weights=None, train_config=expert.train_config_, mode="frozen",
                              init_from=router.flat_model_)
    fit_components({CONTROL: control}, train, val, None if work is None else Path(work),
                   feature_views=router.feature_views, head_neutral_weight=router.head_neutral_weight,
                   expert_anchor_weight=router.expert_anchor_weight, anchor=router.flat_model_)
    return control


def refit_comparison(router: Router, control: ImageClassifier, frame: pd.DataFrame) -> dict[str, Any]:
    """Accuracy (Wilson CI), no-tumour recall and tumour FNR of the flat, refit and hierarchical routes on
    ``frame`` (an index frame with labels), and exact McNemar tests of each pair on the same images."""
    table = router.predict_routes(frame, ("flat", "hierarchical"))
    classes = list(router.classes_)
    predicted = {route: label_indices(table.loc[table["route"] == route, "pred_label"], classes)
                 for route in ("flat", "hierarchical")}
    predicted[CONTROL] = control.predict_proba(frame).argmax(axis=1)
    truth = label_indices(frame["label"], classes)
    correct = {route: predicted[route] == truth for route in COMPARED}
    names = np.asarray(classes, dtype=object)
    routes = {route: {"accuracy": proportion(int(correct[route].sum()), len(truth)),
                      **detection_rates(names[truth], names[predicted[route]])} for route in COMPARED}
    paired = [{"first": a, "second": b, **mcnemar_exact(correct[a], correct[b])} for a, b in PAIRS]
    return {"n": len(truth), "routes": routes, "paired": paired}


def _pct(entry: Mapping[str, Any] | None, *, ci: bool = True) -> str:
    if entry is None:
        return "n/a"
    value = f"{100 * entry['value']:.1f}"
    return f"{value} [{100 * entry['ci'][0]:.1f}, {100 * entry['ci'][1]:.1f}]" if ci else value


def refit_markdown(results: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str, setup: str,
                   command: str) -> str:
    """``results[model][evaluation set]`` (``refit_comparison`` answers) as a report: one table per set, a
    row per model, and the mean effect of the refit and of the split across models."""
    sets = list(dict.fromkeys(name for per_set in results.values() for name in per_set))
    lines = [f"# {title}", "", setup, "", "Reproduce:", "", f"    {command}", ""]
    for name in sets:
        rows = {model: per_set[name] for model, per_set in results.items() if name in per_set}
        n = next(iter(rows.values()))["n"]
        lines += [f"## {name} ({n} images)", "",
                  "Accuracy in % [95% Wilson CI]; McNemar p on the same images (exact, two-sided); "
                  "b/c: images only the first / only the second got right.", "",
                  "| model | flat | flat refit | hierarchical | refit vs flat (b/c, p) | hierarchical vs refit "
                  "(b/c, p) | no-tumour recall flat / refit / hierarchical |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for model, result in rows.items():
            routes, paired = result["routes"], {(p["first"], p["second"]): p for p in result["paired"]}
            tests = [paired[pair] for pair in PAIRS[:2]]
            recall = " / ".join(_pct(routes[r]["no_tumor_recall"], ci=False) for r in COMPARED)
            lines.append(f"| {model} | " + " | ".join(_pct(routes[r]["accuracy"]) for r in COMPARED) + " | "
                         + " | ".join(f"{t['b']}/{t['c']}, {t['p_value']:.2g}" for t in tests) + f" | {recall} |")
        lines += ["", effect_sentence(rows), ""]
    return "\n".join(lines)


def effect_sentence(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The mean accuracy change, in points across models, of the refit over the flat head and of the split
    over the refit."""
    def mean_gain(a: str, b: str) -> float:
        return 100 * float(np.mean([r["routes"][a]["accuracy"]["value"] - r["routes"][b]["accuracy"]["value"]
                                    for r in rows.values()]))
    return (f"Across {len(rows)} model(s): the refit alone changes accuracy by {mean_gain(CONTROL, 'flat'):+.1f} "
            f"points on average; the per-plane split adds {mean_gain('hierarchical', CONTROL):+.1f} points on top "
            "of the refit.")

