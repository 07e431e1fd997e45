"""Ablations: Routers that differ in one group of settings, evaluated alike, one arm chosen on validation rows.

Every arm is a ``RouterConfig`` fitted on the same training rows and evaluated on validation rows (clean and
under each re-encoding perturbation), the test split (clean and perturbed), any external sets, and any
further evaluations a study adds (``extras``). The arm is *chosen* by a :class:`Selection` rule declared
before the run, on validation rows alone (by default :func:`selection_score`); test, perturbed and external
columns are shown for every arm and never used to choose. Each arm's result is cached as ``<work>/<name>.json``
with the configuration it was fitted with and its identity (the training and validation rows' fingerprints
and the image pipeline's version), so a re-run skips finished arms (computing only evaluations the cache
lacks, from the arm's trained checkpoints) and refuses an arm whose settings, rows or pipeline changed (its
results and checkpoints are never overwritten unasked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.data import PERTURBATIONS, index_dataset, train_val_split
from hierarchy.data.preprocess import PIPELINE_VERSION
from hierarchy.fileio import read_json, write_json
from hierarchy.metrics.false_negatives import detection_rates
from hierarchy.provenance import data_hashes, run_record
from hierarchy.reports.tables import markdown_table
from hierarchy.routing import Router, RouterConfig
from hierarchy.settings import merge_settings
from hierarchy.training import resolve_runtime

logger = logging.getLogger(__name__)

ROUTES = ("flat", "hierarchical", "ensemble")
SELECTION_ROUTE = "ensemble"
BASE_ARM = "base"
# An arm replaces the base only when it scores this much higher: on ~700 validation images a smaller
# difference is a handful of images, within the noise of one seed.
MIN_GAIN = 0.005


@dataclass(frozen=True)
class Arm:
    """One arm: settings applied on top of the study's base (dotted experiment keys such as
    ``router.train.epochs``) and what they change, in words."""

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


def arm_config(base: RouterConfig, arm: Arm) -> RouterConfig:
    """``base`` with ``arm``'s overrides, dotted keys relative to the Router (``train.epochs``); unknown keys
    raise ``ValueError``."""
    return RouterConfig.from_dict(merge_settings(RouterConfig, base.to_dict(), dict(arm.overrides)))


def accuracy_by_route(table: pd.DataFrame) -> dict[str, float]:
    """Accuracy of each route of a prediction table."""
    correct = table["pred_label"] == table["true_label"]
    return {route: float(v) for route, v in correct.groupby(table["route"]).mean().items()}


def detection_by_route(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per route: no-tumour recall and tumour false-negative rate (a tumour called no_tumor)."""
    return {route: {name: None if rate is None else rate["value"]
                    for name, rate in detection_rates(rows["true_label"], rows["pred_label"]).items()}
            for route, rows in table.groupby("route")}


def selection_score(result: Mapping[str, Any]) -> float:
    """Mean of clean validation accuracy and the worst validation accuracy under a perturbation
    (``SELECTION_ROUTE``): what an arm is chosen by."""
    route = SELECTION_ROUTE
    return (result["val"][route] + min(v[route] for v in result["val_perturbed"].values())) / 2


@dataclass(frozen=True)
class Selection:
    """How an arm is chosen: a score computed from its result's validation entries, and the words that say so."""

    score: Callable[[Mapping[str, Any]], float]
    text: str


RECIPE_SELECTION = Selection(
    selection_score,
    "the mean of clean validation accuracy and the worst validation accuracy under the re-encoding perturbations "
    f"({', '.join(PERTURBATIONS)}), {SELECTION_ROUTE} route")

# A further evaluation of a fitted arm: (router, frames by name: train, val, test and the external sets) -> JSON.
Extra = Callable[[Router, Mapping[str, pd.DataFrame]], Any]


def choose_arm(results: Sequence[Mapping[str, Any]], *, min_gain: float = MIN_GAIN) -> tuple[str, str]:
    """The chosen arm's name and why, in words: the best ``selection_score``, but the ``BASE_ARM`` (when
    present) stays unless the best beats it by at least ``min_gain``."""
    best = max(results, key=lambda r: r["selection_score"])
    base = next((r for r in results if r["arm"] == BASE_ARM), None)
    if base is None or best is base:
        return best["arm"], "the highest selection score"
    gain = 100 * (best["selection_score"] - base["selection_score"])
    if gain >= 100 * min_gain:
        return best["arm"], f"the highest selection score, {gain:.1f} points above `{BASE_ARM}`"
    return BASE_ARM, (f"no arm beat it by {100 * min_gain:.1f} points or more (the best, `{best['arm']}`, by "
                      f"{gain:.1f}), which is within the noise of one seed")


def evaluate_arm(router: Router, val: pd.DataFrame, test: pd.DataFrame,
                 externals: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Accuracies of a fitted Router on validation and test rows, clean and perturbed, and on each external
    set (with no-tumour recall and tumour FNR)."""
    result: dict[str, Any] = {
        "val": accuracy_by_route(router.predict_routes(val, ROUTES)),
        "val_perturbed": {p: accuracy_by_route(router.predict_routes(val, ROUTES, perturbation=p))
                          for p in PERTURBATIONS},
        "test": accuracy_by_route(router.predict_routes(test, ROUTES)),
        "test_perturbed": {p: accuracy_by_route(router.predict_routes(test, ROUTES, perturbation=p))
                           for p in PERTURBATIONS},
        "external": {},
    }
    for source, frame in externals.items():
        table = router.predict_routes(frame, ROUTES)
        result["external"][source] = {"accuracy": accuracy_by_route(table), "detection": detection_by_route(table)}
    return result


def run_arm(arm: Arm, config: RouterConfig, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
            externals: Mapping[str, pd.DataFrame], work: Path, *, extras: Mapping[str, Extra] | None = None,
            selection: Selection = RECIPE_SELECTION) -> dict[str, Any]:
    """Fit ``config`` (resuming in ``work/<name>``), evaluate it, cache the result in ``work/<name>.json``.

    A cached result is reused when it was fitted with the same configuration; evaluations it lacks (an extra
    added since, an external set not evaluated) are computed from the arm's checkpoints and added. One fitted
    with another configuration raises ``ValueError`` naming the files to remove. ``selection_score`` is
    recomputed by ``selection`` every time.
    """
    path = work / f"{arm.name}.json"
    logger.info("arm %s: %s", arm.name, arm.description)
    extras = dict(extras or {})
    identity = arm_identity(train, val)
    result: dict[str, Any] = {}
    cached: dict[str, Any] | None = None
    if path.exists():
        result = cached = read_json(path)
        if not _same_arm(result, config, identity):
            raise ValueError(f"arm {arm.name!r}: {path} was fitted with other settings, other training rows or an "
                             f"earlier image pipeline; use a new --out, or remove {path} and {work / arm.name} to fit "
                             "this arm again")
    missing_core = "val" not in result or not set(externals) <= set(result.get("external", {}))
    missing = [name for name in extras if name not in result]
    if missing_core or missing:
        router = Router.from_config(config).fit(train, val, out_dir=work / arm.name, resume=True)
        if missing_core:
            result.update(evaluate_arm(router, val, test, externals))
        frames = {"train": train, "val": val, "test": test, **externals}
        for name in missing:
            logger.info("arm %s: evaluating %s", arm.name, name)
            result[name] = extras[name](router, frames)
            write_json(path, {"arm": arm.name, "router": config.to_dict(), "identity": identity, **result})
    result = {**result, "arm": arm.name, "router": config.to_dict(), "identity": identity}
    result["selection_score"] = selection.score(result)
    if json.loads(json.dumps(result)) != cached:  # a finished arm's file is left untouched
        write_json(path, result)
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def ablation_markdown(results: Sequence[Mapping[str, Any]], arms: Mapping[str, Arm], *, title: str, setup: str,
                      dataset: str, command: str, selection: Selection = RECIPE_SELECTION,
                      extra_markdown: Callable[[Sequence[Mapping[str, Any]]], str] | None = None) -> str:
    """One table per route: selection score, validation, test, worst perturbed test and external columns, then
    ``extra_markdown(results)`` when given."""
    chosen, why = choose_arm(results)
    externals = sorted({s for r in results for s in r["external"]})
    lines = [f"# {title}", "", setup, "",
             f"**Chosen on {dataset} validation rows only**, by a rule declared before the run: the score is "
             f"{selection.text}. An arm replaces `{BASE_ARM}` only when its score is {100 * MIN_GAIN:.1f} points "
             "higher or more. Test, external and perturbation columns are shown for every arm and were "
             "never used to choose; nothing was trained or tuned on the external sets.", "",
             f"Chosen arm: **{chosen}**: {why}.", "",
             "Arms: " + "; ".join(f"`{r['arm']}`: {arms[r['arm']].description}" for r in results) + ".", ""]
    for route in ROUTES:
        headers = ["arm", "selection score", "val", f"{dataset} test",
                   "worst perturbed test (drop)"]
        for source in externals:
            headers += [f"{source} acc", f"{source} no-tumour recall", f"{source} tumour FNR"]
        rows = []
        for r in results:
            worst = min(v[route] for v in r["test_perturbed"].values())
            row = [r["arm"] + (" (chosen)" if r["arm"] == chosen else ""), _pct(r["selection_score"]),
                   _pct(r["val"][route]), _pct(r["test"][route]),
                   f"{_pct(worst)} ({100 * (r['test'][route] - worst):+.1f})"]
            for source in externals:
                ext = r["external"].get(source)
                det = ext["detection"][route] if ext else {}
                row += [_pct(ext["accuracy"][route]) if ext else "n/a", _pct(det.get("no_tumor_recall")),
                        _pct(det.get("tumor_fnr"))]
            rows.append(row)
        lines += [f"## Route: {route}", "", markdown_table(headers, rows), ""]
    if extra_markdown is not None:
        lines += [extra_markdown(results), ""]
    lines += ["Accuracies in percent. Reproduce: `" + command + "`.", ""]
    return "\n".join(lines)


def write_ablation(out: Path, results: Sequence[Mapping[str, Any]], arms: Mapping[str, Arm],
                   record: Mapping[str, Any], *, title: str, setup: str, dataset: str,
                   selection: Selection = RECIPE_SELECTION,
                   extra_markdown: Callable[[Sequence[Mapping[str, Any]]], str] | None = None) -> Path:
    """``ablation.md`` and ``ablation.json`` (chosen arm, every arm's result, the run record) in ``out``."""
    chosen, _ = choose_arm(results)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation.json", {"chosen": chosen, "selection": selection.text, "arms": list(results),
                                       "record": dict(record)})
    path = out / "ablation.md"
    path.write_text(ablation_markdown(results, arms, title=title, setup=setup, dataset=dataset,
                                      command=record["command"], selection=selection, extra_markdown=extra_markdown))
    return path


def study_frames(data: str | Path, val_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training, validation and test rows of a BRISC-layout root: its train split divided like the
    experiment's (grouped, ``val_fraction``, seed 0), its test split as it is."""
    frame = index_dataset(data)
    train_all = frame[frame["split"] == "train"].reset_index(drop=True)
    train, val = train_val_split(train_all, val_fraction=val_fraction, seed=0)
    return train, val, frame[frame["split"] == "test"].reset_index(drop=True)


def arm_identity(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
    """What besides its settings makes an arm's results reusable: its rows and the image pipeline's version."""
    return {"pipeline_version": PIPELINE_VERSION, "data": data_hashes({"train": train, "val": val})}


def _same_arm(result: Mapping[str, Any], config: RouterConfig, identity: Mapping[str, Any]) -> bool:
    return (isinstance(result.get("router"), dict) and RouterConfig.from_dict(result["router"]) == config
            and result.get("identity") == identity)


def _restore_cache(out: Path, work: Path, configs: Mapping[str, RouterConfig], identity: Mapping[str, Any]) -> None:
    """Put the arms of a committed ``out/ablation.json`` back into ``work/`` (git-ignored, so a fresh clone
    lacks it) when they were fitted with the same configuration, rows and pipeline, so that they are not fitted
    again; the others are fitted anew (logged)."""
    report = out / "ablation.json"
    if not report.exists():
        return
    for result in read_json(report).get("arms", []):
        path, config = work / f"{result.get('arm')}.json", configs.get(result.get("arm"))
        if config is None or path.exists():
            continue
        if _same_arm(result, config, identity):
            logger.info("arm %s: restoring its results from %s", result["arm"], report)
            write_json(path, result)
        else:
            logger.warning("arm %s: %s holds results of other settings, rows or an earlier image pipeline; "
                           "the arm is fitted again", result["arm"], report)


def run_study(base: RouterConfig, arms: Mapping[str, Arm], names: Sequence[str], *, data: str | Path,
              externals: Sequence[str | Path], out: Path, settings: Mapping[str, Any], command: str, title: str,
              setup: str, extras: Mapping[str, Extra] | None = None, selection: Selection = RECIPE_SELECTION,
              extra_markdown: Callable[[Sequence[Mapping[str, Any]]], str] | None = None) -> Path:
    """Fit and evaluate the arms ``names`` of ``arms`` on top of ``base`` and write the ablation report.

    ``data`` is a BRISC-layout root: its train split is divided like the experiment's (grouped,
    ``base.val_fraction``, seed 0) and its test split only evaluated; ``externals`` are only evaluated.
    ``settings`` and ``command`` go into the run record; ``setup`` describes the arms' common settings;
    ``extras`` are further evaluations of every arm, ``selection`` the declared rule that chooses one and
    ``extra_markdown`` the report's part on the extras.
    """
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    train, val, test = study_frames(data, base.val_fraction)
    _restore_cache(out, work, {name: arm_config(base, arms[name]) for name in names}, arm_identity(train, val))
    external = {Path(root).name: index_dataset(root) for root in externals}
    results = [run_arm(arms[name], arm_config(base, arms[name]), train, val, test, external, work, extras=extras,
                       selection=selection) for name in names]
    record = run_record(dict(settings), runtime=resolve_runtime().describe(), seed=0,
                        frames={"train": train, "val": val, "test": test, **external})
    record["command"] = command
    return write_ablation(out, results, arms, record, title=title, setup=setup, dataset=Path(data).name,
                          selection=selection, extra_markdown=extra_markdown)
