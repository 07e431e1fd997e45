"""Explain test tumours with the model that decided each one, scored against the radiologists' masks."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hierarchy.data import eval_transform
from hierarchy.data.counterfactual import head_of
from hierarchy.data.preprocess import unnormalise
from hierarchy.explain import (
    align_mask_to_input,
    explain_predictions,
    resize_mask,
    save_overlay,
    score_against_mask,
    summarise_mask_scores,
)
from hierarchy.explain.mask_scores import mask_score_baselines
from hierarchy.fileio import atomic_write
from hierarchy.labels import NO_TUMOR
from hierarchy.metrics.false_negatives import missed_mask
from hierarchy.reports import ReportFiles, markdown_table
from hierarchy.reports.build import GALLERY_DIR
from hierarchy.reports.figures import attribution_figure
from hierarchy.routing import Router

EXPLANATIONS_DIR = "explanations"
TABLE_STEM = "explanation_mask_scores"
SECTION_TITLE = "Where the models look: attributions against tumour masks"
SUMMARY_COLUMNS = ["route", "label", "n", "inside_fraction", "chance_inside_fraction", "pointing_rate",
                   "random_point_rate", "centre_point_rate"]
# what each image's scores would be by chance (hierarchy.explain.mask_scores.mask_score_baselines)
_BASELINES = {"chance_inside_fraction": "uniform_inside_fraction", "random_point_rate": "random_point_hit",
              "centre_point_rate": "centre_point_hit"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} lacks columns {missing}")


def choose_images(test: pd.DataFrame, predictions: pd.DataFrame, n_images: int, routes: Sequence[str],
                  seed: int) -> pd.DataFrame:
    """Up to ``n_images`` tumour rows of ``test`` with a mask, shared equally among the tumour classes:
    within each class, the tumours a route in ``routes`` missed (called ``no_tumor``,
    :func:`~hierarchy.metrics.false_negatives.missed_mask`) come first, then the other misclassified tumours
    (called another tumour class; both in test order), then a ``seed``-ed sample of the rest; a class with too
    few images leaves its share to the others."""
    candidates = test[test["mask_path"].notna() & (test["label"] != NO_TUMOR)]
    scored = predictions[predictions["route"].isin(routes)]
    _, missed = missed_mask(scored["true_label"], scored["pred_label"])
    missed_ids = set(scored.loc[missed, "id"])
    misclassified_ids = set(scored.loc[scored["true_label"] != scored["pred_label"], "id"]) - missed_ids
    ranked = []
    for _, rows in candidates.groupby("label", sort=True):
        is_missed = rows["id"].isin(missed_ids)
        is_misclassified = rows["id"].isin(misclassified_ids) & ~is_missed
        rest = rows[~is_missed & ~is_misclassified].sample(frac=1.0, random_state=seed)
        ranked.append(pd.concat([rows[is_missed], rows[is_misclassified], rest]).assign(_rank=range(len(rows))))
    if not ranked:
        return candidates.iloc[:0]
    chosen = pd.concat(ranked).sort_values(["_rank", "label"], kind="stable").head(n_images)
    return chosen.drop(columns="_rank").reset_index(drop=True)


def _file_stem(image_id: str) -> str:
    """A file-name-safe stem from an image id (``/`` becomes ``__``, other odd characters ``_``)."""
    return _UNSAFE.sub("_", str(image_id).replace("/", "__"))


def _json_score(value: float | bool | None) -> float | bool | None:
    """A score as JSON: ``nan`` (no mask or no positive attribution) becomes None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _route_rows(predictions: pd.DataFrame, route: str, ids: Sequence[str]) -> pd.DataFrame:
    """The ``route`` prediction rows of ``ids``, in that order; an image without one raises ``ValueError``."""
    rows = predictions[predictions["route"] == route].drop_duplicates("id").set_index("id")
    missing = [i for i in ids if i not in rows.index]
    if missing:
        raise ValueError(f"predictions have no {route!r} row for {len(missing)} chosen images (e.g. {missing[0]})")
    return rows.loc[list(ids)].reset_index()


def explanation_table(result: dict[str, Any]) -> pd.DataFrame:
    """``result["summary"]`` as a frame: share inside the mask and pointing-game rate per route and class."""
    return pd.DataFrame(result["summary"], columns=SUMMARY_COLUMNS)


def explain_test_images(router: Router, test: pd.DataFrame, predictions: pd.DataFrame, out_dir: Path, *,
                        n_images: int = 24, method: str = "gradcam", routes: Sequence[str] = ("flat", "hierarchical"),
                        seed: int = 0, arrays_path: str | Path | None = None) -> dict[str, Any]:
    """Explain up to ``n_images`` masked test tumours (see :func:`choose_images`) for each route in ``routes``.

    Each image is explained, for its predicted class, by the model that decided it (``flat``, or the
    expert in the row's ``expert`` column), with :func:`hierarchy.explain.explain` ``method``. The
    radiologist mask is aligned to the model input and scored (:func:`score_against_mask`); an overlay
    PNG per (image, route) goes to ``out_dir/explanations/``. Routes mixing experts (soft, ensemble) have no single
    deciding model and raise ``ValueError``. Returns a JSON-ready dict: ``method``, ``n_images``,
    ``rows`` (id, route, true_label, pred_label, expert, inside_fraction, pointing_hit, overlay path
    relative to ``out_dir``) and ``summary`` (records of ``summarise_mask_scores``); the report shows the
    summary with :func:`explanation_section`. With ``arrays_path``, the model inputs, aligned masks and maps
    are saved there (``.npz``) for the attribution figure (:func:`attribution_examples`).
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    _require(test, ["id", "path", "label", "mask_path"], "the test frame")
    _require(predictions, ["id", "route", "pred_label", "true_label", "expert"], "the prediction table")
    absent = [r for r in routes if r not in set(predictions["route"])]
    if absent:
        raise ValueError(f"routes {absent} are not in the prediction table")
    out_dir = Path(out_dir)
    chosen = choose_images(test, predictions, n_images, routes, seed)
    ids = chosen["id"].tolist()
    rows: list[dict[str, Any]] = []
    if ids:
        rows, arrays = _explain_chosen(router, chosen, predictions, out_dir, method=method, routes=routes)
        if arrays_path is not None:
            atomic_write(arrays_path, lambda handle: np.savez_compressed(handle, ids=np.array(ids), **arrays))
    scores = pd.DataFrame(rows, columns=["route", "true_label", "inside_fraction", "pointing_hit"])
    summary = _with_baselines(summarise_mask_scores(scores.astype({"inside_fraction": float})), rows)
    result = {"method": method, "n_images": len(ids), "rows": rows,
              "summary": [{k: _json_score(v) for k, v in record.items()} for record in summary.to_dict("records")]}
    return result


def _explain_chosen(router: Router, chosen: pd.DataFrame, predictions: pd.DataFrame, out_dir: Path, *,
                    method: str, routes: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Explain, score and draw each of the ``chosen`` test rows on each route; one result row per pair, and
    the arrays drawn (``images``, ``masks`` at the input's size, ``maps_<route>``)."""
    preprocess = router.plane_model_.preprocess_
    transform = eval_transform(preprocess)
    images = torch.stack([transform(path) for path in chosen["path"]])
    shown = unnormalise(images[:, 0]).numpy()
    masks = [align_mask_to_input(mask, path, preprocess)
             for mask, path in zip(chosen["mask_path"], chosen["path"], strict=True)]
    models = {name: component.check_fitted() for name, component in router.components_.items() if name != "plane"}
    rows: list[dict[str, Any]] = []
    arrays = {"images": shown.astype(np.float16),
              "masks": np.stack([resize_mask(m, shown.shape[1:]) for m in masks])}
    chance = [mask_score_baselines(mask, head_of((image * 255).round().astype(np.uint8)))
              for mask, image in zip(masks, shown, strict=True)]
    for route in routes:
        pred = _route_rows(predictions, route, chosen["id"].tolist())
        maps = explain_predictions(models, images, pred, method=method, classes=router.classes_)
        arrays[f"maps_{route}"] = np.stack([np.asarray(m, dtype=np.float16) for m in maps])
        for i, row in pred.iterrows():
            true_label = chosen["label"].iloc[i]
            score = score_against_mask(maps[i], masks[i])
            overlay = Path(EXPLANATIONS_DIR) / f"{_file_stem(row['id'])}__{route}.png"
            decider = route if row["expert"] == route else f"{route} via {row['expert']}"
            save_overlay(shown[i], maps[i], out_dir / overlay, mask=masks[i],
                         title=f"{decider}: {true_label} -> {row['pred_label']}")
            rows.append({"id": row["id"], "route": route, "true_label": true_label,
                         "pred_label": row["pred_label"], "expert": row["expert"],
                         "inside_fraction": _json_score(score["inside_fraction"]),
                         "pointing_hit": _json_score(score["pointing_hit"]), "overlay": overlay.as_posix(),
                         **{key: _json_score(chance[i][key]) for key in _BASELINES.values()}})
    return rows, arrays


def _with_baselines(summary: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``summary`` with the chance yardsticks of its scores, averaged over the same scored images: the
    mask's share of the head (an evenly spread map), the hit rate of a random point in the head and of the
    head's centre."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return summary.reindex(columns=SUMMARY_COLUMNS)
    scored = frame[frame["inside_fraction"].notna() & frame["pointing_hit"].notna()]
    both = pd.concat([scored, scored.assign(true_label="all")])
    means = both.groupby(["route", "true_label"]).agg(
        **{name: (column, lambda v: v.astype(float).mean()) for name, column in _BASELINES.items()})
    merged = summary.merge(means, left_on=["route", "label"], right_index=True, how="left")
    return merged.reindex(columns=SUMMARY_COLUMNS)


def attribution_examples(result: dict[str, Any], arrays_path: str | Path) -> list[dict[str, Any]]:
    """Examples for :func:`hierarchy.reports.figures.attribution_figure`: per tumour class among the explained
    images (in name order), the first explained image every route got right and the first one some route got
    wrong, from ``result`` (an :func:`explain_test_images` dict) and the arrays it saved; [] when they were not
    saved."""
    arrays_path = Path(arrays_path)
    if not result["rows"] or not arrays_path.is_file():
        return []
    with np.load(arrays_path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    index = {str(image_id): i for i, image_id in enumerate(arrays["ids"])}
    rows = pd.DataFrame(result["rows"])
    examples = []
    for label in sorted(set(rows["true_label"])):
        of_class = rows[rows["true_label"] == label]
        right = of_class.groupby("id", sort=False).apply(lambda g: bool((g["pred_label"] == g["true_label"]).all()))
        for wanted in (True, False):
            chosen = right.index[right == wanted]
            if len(chosen) == 0 or chosen[0] not in index:
                continue
            image_id, i = chosen[0], index[chosen[0]]
            preds = of_class[of_class["id"] == image_id].set_index("route")["pred_label"].to_dict()
            examples.append({"id": image_id, "label": label, "image": arrays["images"][i].astype(float),
                             "mask": arrays["masks"][i], "pred": preds,
                             "maps": {route: arrays[f"maps_{route}"][i].astype(float) for route in preds
                                      if f"maps_{route}" in arrays}})
    return examples


def explanation_section(result: dict[str, Any], files: ReportFiles | None = None,
                        arrays_path: str | Path | None = None) -> str:
    """Markdown body of the report section on ``result`` (an :func:`explain_test_images` dict): what was
    explained, mean attribution share inside the tumour mask and pointing-game hit rate per route and
    class, and how to read them; with ``files``, that table is also written as CSV, LaTeX and Markdown
    (``tables/explanation_mask_scores.*``) and, given the ``arrays_path`` that :func:`explain_test_images`
    saved, the attribution figure (image-derived, so in ``gallery/``). The title is ``SECTION_TITLE``."""
    if not result["n_images"]:
        return "No tumour in the test split has a lesion mask, so no explanation was scored."
    routes = sorted({r["route"] for r in result["rows"]})
    intro = (f"{result['n_images']} test tumours with a radiologist mask (every missed tumour, one called "
             f"`{NO_TUMOR}`, first, then every tumour called another tumour class, then a seeded random sample) were explained with **{result['method']}** for the predicted class, by the model "
             f"that decided each one on routes {', '.join(f'`{r}`' for r in routes)} (the flat model, or the expert "
             "the plane classifier chose). Each map is compared with the mask aligned to the model input.")
    table = markdown_table(["route", "true class", "images", "attribution inside mask", "even spread (chance)",
                            "pointing-game hits", "random point (chance)", "head centre (chance)"],
                           [[s["route"], s["label"], s["n"], s["inside_fraction"], s.get("chance_inside_fraction"),
                             s["pointing_rate"], s.get("random_point_rate"), s.get("centre_point_rate")]
                            for s in result["summary"]])
    unscored = sum(r["inside_fraction"] is None for r in result["rows"])
    if unscored:
        intro += (f" {unscored} of {len(result['rows'])} maps had no positive attribution (or an empty aligned mask) and are left out "
                  "of the table.")
    reading = ("The chance columns are what an attribution would score knowing nothing: spread evenly over the head "
               "(the mask's share of the head), or peaking at a random point of the head or at its centre. "
               "A high share inside the mask means the model looks at the tumour; a low one means it may rely "
               "on a shortcut elsewhere in the image (skull, scanner artefacts, text). Overlays are in "
               f"`{EXPLANATIONS_DIR}/` (kept out of git).")
    links = "" if files is None else files.table(
        explanation_table(result), TABLE_STEM, f"Share of {result['method']} attribution inside the tumour mask and "
        "pointing-game hit rate, per route and true class, beside their chance values (even spread over the head; "
        "random point; head centre)", embed=False)
    figure = ""
    if files is not None and arrays_path is not None:
        routes_drawn = [r for r in routes if r in ("flat", "hierarchical")] or routes[:2]
        figure = files.figure(
            attribution_figure(attribution_examples(result, arrays_path), routes_drawn, method=result["method"]),
            "attribution", f"Examples per tumour class (right on every route, then wrong on some): {result['method']} "
            "of the deciding model over the input, radiologist's mask in cyan, the map's peak as a cross",
            folder=GALLERY_DIR, local=True)
    return "\n\n".join(part for part in [intro, table.rstrip("\n"), links, figure, reading] if part)
