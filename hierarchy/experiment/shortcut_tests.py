"""Shortcut tests: does a Router's answer follow the tumour, or the image's source?

Built from one split's own images and radiologist masks (no external data), with the operations of
:mod:`hierarchy.data.counterfactual` at full resolution:

- ``paste_in``: a tumour pasted into a no-tumour image of the same plane -> share called that tumour's class
  (and share called any tumour);
- ``removal``: a tumour removed by biharmonic inpainting -> share called no tumour (a lower bound: mass effect
  stays in the image);
- ``background_swap``: a tumour and its surroundings on the background of a no-tumour image of the same
  plane -> share still called the tumour's class;
- ``style_swap``: an image restyled like a file of another class (histogram, pixel size, colour mode, JPEG
  tables) -> share whose prediction is unchanged.

Each rate comes with a Wilson interval, per route. :func:`attribution_scores` adds where the models look:
Grad-CAM / Integrated Gradients mass inside the mask and the pointing game, beside chance baselines (an
even spread over the head, a random point, the head's centre). The experiment reports the tests on test
images; recipe ablations choose on the same tests built from validation images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hierarchy.data import eval_transform, load_image
from hierarchy.data.counterfactual import (
    FileStyle,
    crop,
    head_box,
    head_of,
    paste_tumour,
    put_back,
    remove_tumour,
    restyle_like,
    swap_background,
)
from hierarchy.data.masks import read_mask
from hierarchy.data.preprocess import unnormalise
from hierarchy.explain import align_mask_to_input, explain_predictions, score_against_mask
from hierarchy.explain.mask_scores import mask_score_baselines
from hierarchy.labels import NO_TUMOR, is_missing
from hierarchy.metrics import wilson_interval
from hierarchy.reports.tables import markdown_table

logger = logging.getLogger(__name__)

SHORTCUT_TESTS: tuple[str, ...] = ("paste_in", "removal", "background_swap", "style_swap")
METHODS = {
    "paste_in": "the masked tumour of a tumour image, its intensities quantile-matched to the recipient's head "
                "and blended with a Gaussian edge, placed at the same position relative to the head box in a "
                "no-tumour image of the same plane; counted: called the pasted tumour's class",
    "removal": "the mask dilated by 2% of the head box's longer side and filled by biharmonic inpainting "
               "(scikit-image); counted: called no tumour. Mass effect stays, so this is a lower bound",
    "background_swap": "the tumour and 8% of the head box's longer side around it kept with their own intensities, "
                       "everything else from a no-tumour image of the same plane (resized to the head box); "
                       "counted: still called the tumour's class",
    "style_swap": "the image's head histogram matched to an image of another class, resized to that file's pixel "
                  "size and re-encoded in its colour mode with its JPEG quantisation tables; counted: prediction "
                  "unchanged",
}
DEFAULT_ROUTES = ("flat", "hierarchical")
ATTRIBUTION_METHODS = ("gradcam", "integrated_gradients")


@dataclass
class ShortcutCase:
    """One counterfactual image: which test, the image, the class a disease-driven model gives, and its sources."""

    test: str
    image: np.ndarray
    expected: str | None  # None: the original image's own prediction (style swap)
    source_id: str
    partner_id: str
    source_label: str


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("id", "path", "label"):
        if column not in frame.columns:
            raise KeyError(f"the frame for the shortcut tests lacks the {column!r} column")
    frame = frame.reset_index(drop=True)
    if "mask_path" not in frame.columns:
        frame = frame.assign(mask_path=None)
    if "plane" not in frame.columns:
        frame = frame.assign(plane=None)
    return frame


def _balanced(rows: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Up to ``n`` rows shared equally among the labels (a small class leaves its share to the others)."""
    groups = [g.sample(frac=1.0, random_state=int(rng.integers(2**31))) for _, g in rows.groupby("label", sort=True)]
    picked, rank = [], 0
    while len(picked) < n and any(rank < len(g) for g in groups):
        picked += [g.iloc[rank] for g in groups if rank < len(g)][: n - len(picked)]
        rank += 1
    return pd.DataFrame(picked).reset_index(drop=True) if picked else rows.iloc[:0]


def tumours_with_masks(frame: pd.DataFrame) -> pd.DataFrame:
    """The tumour rows of ``frame`` that have a mask."""
    rows = _rows(frame)
    return rows[(rows["label"] != NO_TUMOR) & rows["mask_path"].notna()]


def balanced_tumours(frame: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` tumour rows of ``frame`` with masks, shared equally among the classes."""
    return _balanced(tumours_with_masks(frame), n, np.random.default_rng(seed))


def without_tumour(image: np.ndarray, mask: np.ndarray, *, method: str = "biharmonic") -> np.ndarray:
    """``image`` with its tumour ``mask`` removed inside the head's box, as the removal test removes it (``method``
    is the fill: biharmonic in the test)."""
    box = head_box(image)
    return put_back(image, box, remove_tumour(crop(image, box), crop(mask, box), method=method, margin=0.02))


def _partner(pool: pd.DataFrame, plane: Any, rng: np.random.Generator) -> pd.Series:
    """A random row of ``pool``, of the same plane when there is one."""
    same = pool if is_missing(plane) else pool[pool["plane"] == plane]
    chosen = same if len(same) else pool
    return chosen.iloc[int(rng.integers(len(chosen)))]


def _pixels(path: str) -> np.ndarray:
    return np.asarray(load_image(path))


def build_cases(frame: pd.DataFrame, *, n: int = 100, seed: int = 0,
                tests: Sequence[str] = SHORTCUT_TESTS) -> list[ShortcutCase]:
    """Up to ``n`` counterfactual images per test in ``tests`` from the rows of ``frame`` (one split's
    index: ``id``, ``path``, ``label``, ``plane``, ``mask_path``), tumours shared equally among the classes."""
    unknown = sorted(set(tests) - set(SHORTCUT_TESTS))
    if unknown:
        raise ValueError(f"unknown shortcut tests {unknown}; expected some of {SHORTCUT_TESTS}")
    rows = _rows(frame)
    rng = np.random.default_rng(seed)
    normals = rows[rows["label"] == NO_TUMOR]
    masked = tumours_with_masks(rows)
    cases: list[ShortcutCase] = []
    needs_normals = {"paste_in", "background_swap"} & set(tests)
    if needs_normals and normals.empty:
        raise ValueError(f"{sorted(needs_normals)} need no-tumour images, and the frame has none")
    if {"paste_in", "removal", "background_swap"} & set(tests) and masked.empty:
        raise ValueError("the shortcut tests need tumour images with masks (a mask_path column), and the frame has none")
    for test in tests:
        if test == "style_swap":
            cases += _style_cases(rows, n, rng)
            continue
        for _, row in _balanced(masked, n, rng).iterrows():
            image, mask = _pixels(row["path"]), read_mask(row["mask_path"])
            if test == "removal":
                cases.append(ShortcutCase(test, without_tumour(image, mask), NO_TUMOR, row["id"], "", row["label"]))
                continue
            box = head_box(image)
            partner = _partner(normals, row["plane"], rng)
            normal = _pixels(partner["path"])
            normal_box = head_box(normal)
            if test == "paste_in":
                pasted, _ = paste_tumour(crop(normal, normal_box), crop(image, box), crop(mask, box))
                built = put_back(normal, normal_box, pasted)
            else:
                built = put_back(image, box, swap_background(crop(image, box), crop(mask, box),
                                                             crop(normal, normal_box)))
            cases.append(ShortcutCase(test, built, row["label"], row["id"], partner["id"], row["label"]))
    return cases


def _style_cases(rows: pd.DataFrame, n: int, rng: np.random.Generator) -> list[ShortcutCase]:
    cases = []
    for _, row in _balanced(rows, n, rng).iterrows():
        others = rows[rows["label"] != row["label"]]
        if others.empty:
            continue
        reference = _partner(others, row["plane"], rng)
        styled = restyle_like(_pixels(row["path"]), _pixels(reference["path"]), FileStyle.of(reference["path"]))
        cases.append(ShortcutCase("style_swap", np.asarray(styled), None, row["id"], reference["id"], row["label"]))
    return cases


def rate_with_ci(successes: int, n: int) -> dict[str, Any]:
    """``successes`` of ``n`` as a rate with its Wilson interval (rate None when ``n`` is 0)."""
    low, high = wilson_interval(successes, n) if n else (None, None)
    return {"rate": successes / n if n else None, "ci": [low, high], "successes": int(successes), "n": int(n)}


def evaluate_cases(router: Any, cases: Sequence[ShortcutCase], frame: pd.DataFrame, *,
                   routes: Sequence[str] = DEFAULT_ROUTES, batch_size: int = 32) -> dict[str, Any]:
    """Rates of each test per route: ``tests.<test>.<route>`` = rate, Wilson CI, successes, n; paste-in and
    background swap add ``tumour_rate`` (called any tumour), style swap ``correct_rate`` (still right)."""
    routes = tuple(routes)
    if not cases:
        return {"tests": {}, "routes": list(routes), "methods": METHODS}
    table = router.predict_routes([c.image for c in cases], routes, batch_size=batch_size)
    originals: dict[tuple[str, str], str] = {}
    style_ids = sorted({c.source_id for c in cases if c.test == "style_swap"})
    if style_ids:
        rows = _rows(frame).set_index("id").loc[style_ids].reset_index()
        original = router.predict_routes(rows, routes, batch_size=batch_size)
        originals = {(r.id, r.route): r.pred_label for r in original.itertuples()}
    result: dict[str, Any] = {"tests": {}, "routes": list(routes), "methods": METHODS}
    for route in routes:
        predicted = table.loc[table["route"] == route, "pred_label"].tolist()
        for test in dict.fromkeys(c.test for c in cases):
            pairs = [(c, p) for c, p in zip(cases, predicted, strict=True) if c.test == test]
            if test == "style_swap":
                hits = sum(p == originals[(c.source_id, route)] for c, p in pairs)
                entry = rate_with_ci(hits, len(pairs))
                entry["correct_rate"] = rate_with_ci(sum(p == c.source_label for c, p in pairs), len(pairs))["rate"]
            else:
                entry = rate_with_ci(sum(p == c.expected for c, p in pairs), len(pairs))
                if test != "removal":
                    entry["tumour_rate"] = rate_with_ci(sum(p != NO_TUMOR for _, p in pairs), len(pairs))["rate"]
            result["tests"].setdefault(test, {})[route] = entry
    return result


def run_shortcut_tests(router: Any, frame: pd.DataFrame, *, n: int = 100, seed: int = 0,
                       routes: Sequence[str] = DEFAULT_ROUTES,
                       tests: Sequence[str] = SHORTCUT_TESTS) -> dict[str, Any]:
    """:func:`build_cases` then :func:`evaluate_cases` on ``frame``'s rows; also records ``n_per_test`` and ``seed``."""
    logger.info("shortcut tests: building up to %d images per test from %d rows", n, len(frame))
    cases = build_cases(frame, n=n, seed=seed, tests=tests)
    return {"n_per_test": n, "seed": seed, **evaluate_cases(router, cases, frame, routes=routes)}


def shortcut_score(result: dict[str, Any], route: str) -> float:
    """Mean of the test rates of ``route``: how far its answers follow the tumour (1: always)."""
    rates = [entry[route]["rate"] for entry in result["tests"].values() if entry.get(route, {}).get("rate") is not None]
    if not rates:
        raise ValueError(f"no shortcut-test rate for route {route!r}")
    return float(np.mean(rates))


def attribution_scores(router: Any, frame: pd.DataFrame, *, n: int = 100, seed: int = 0,
                       routes: Sequence[str] = DEFAULT_ROUTES,
                       methods: Sequence[str] = ATTRIBUTION_METHODS) -> dict[str, Any]:
    """Attribution inside the mask and pointing game on up to ``n`` masked tumours of ``frame`` (classes shared
    equally), per method and route, each explained by the model that decided it for its predicted class;
    with the chance baselines of :func:`~hierarchy.explain.mask_scores.mask_score_baselines` on the same images."""
    rows = _rows(frame)
    chosen = _balanced(rows[(rows["label"] != NO_TUMOR) & rows["mask_path"].notna()], n,
                       np.random.default_rng(seed))
    if chosen.empty:
        return {"n_images": 0}
    preprocess = router.plane_model_.preprocess_
    transform = eval_transform(preprocess)
    images = torch.stack([transform(path) for path in chosen["path"]])
    shown = (unnormalise(images[:, 0]) * 255).round().to(torch.uint8).numpy()
    masks = [align_mask_to_input(m, p, preprocess) for m, p in zip(chosen["mask_path"], chosen["path"], strict=True)]
    baselines = pd.DataFrame([mask_score_baselines(mask, head_of(image)) for mask, image in zip(masks, shown, strict=True)])
    table = router.predict_routes(chosen, routes)
    models = {name: c.check_fitted() for name, c in router.components_.items() if name != "plane"}
    result: dict[str, Any] = {
        "n_images": int(len(chosen)),
        "baselines": {"uniform_inside_fraction": float(baselines["uniform_inside_fraction"].mean()),
                      "random_point_hit": float(baselines["random_point_hit"].mean()),
                      "centre_point_hit": float(baselines["centre_point_hit"].astype(float).mean())},
        "methods": {},
    }
    for method in methods:
        for route in routes:
            pred = table[table["route"] == route].reset_index(drop=True)
            maps = explain_predictions(models, images, pred, method=method, classes=router.classes_)
            scores = pd.DataFrame([score_against_mask(m, mask) for m, mask in zip(maps, masks, strict=True)])
            scored = scores.dropna()
            hits = int(scored["pointing_hit"].astype(bool).sum())
            result["methods"].setdefault(method, {})[route] = {
                "inside_fraction": float(scored["inside_fraction"].mean()) if len(scored) else None,
                "pointing_game": rate_with_ci(hits, len(scored)),
            }
    return result


def shortcut_section(tests: dict[str, Any], attribution: dict[str, Any] | None = None, *,
                     split: str = "test", examples: str | None = None) -> str:
    """Markdown body of the report section on shortcut tests (and attribution, when given); ``examples`` is the
    path, relative to the report, of the figure of example images (:func:`save_examples`)."""
    routes = tests.get("routes", list(DEFAULT_ROUTES))
    lines = [f"Counterfactual images built from the {split} split's own images and radiologist masks "
             f"(up to {tests.get('n_per_test')} per test, tumours shared equally among the classes, seed "
             f"{tests.get('seed')}). A model that has learned the disease follows the tumour: it calls a pasted-in "
             "tumour, calls a brain whose tumour was removed normal, keeps a tumour on another image's background, "
             "and does not change its answer when only the file's style changes.", ""]
    rows = []
    for test, by_route in tests["tests"].items():
        for route in routes:
            entry = by_route.get(route)
            if entry is None or entry["rate"] is None:
                continue
            extra = ("" if "tumour_rate" not in entry else f"any tumour {100 * entry['tumour_rate']:.1f}%") + \
                    ("" if "correct_rate" not in entry else f"still correct {100 * entry['correct_rate']:.1f}%")
            rows.append([test, route, entry["n"], f"{100 * entry['rate']:.1f}",
                         f"[{100 * entry['ci'][0]:.1f}, {100 * entry['ci'][1]:.1f}]", extra])
    lines += [markdown_table(["test", "route", "images", "rate (%)", "95% CI (Wilson)", "also"], rows).rstrip("\n"), ""]
    lines += ["How each image is made:", ""] + [f"- `{test}`: {text}." for test, text in METHODS.items()] + [""]
    if examples:
        lines += [f"Example images: `{examples}` (written beside the report, kept out of git: they are "
                  "derived from the dataset's images).", ""]
    if attribution and attribution.get("n_images"):
        base = attribution["baselines"]
        rows = [[method, route, f"{entry['inside_fraction']:.3f}" if entry["inside_fraction"] is not None else "n/a",
                 f"{entry['pointing_game']['rate']:.3f}" if entry["pointing_game"]["rate"] is not None else "n/a"]
                for method, by_route in attribution["methods"].items() for route, entry in by_route.items()]
        rows.append(["chance: even spread / random point", "", f"{base['uniform_inside_fraction']:.3f}",
                     f"{base['random_point_hit']:.3f}"])
        rows.append(["chance: head-centre point", "", "", f"{base['centre_point_hit']:.3f}"])
        lines += [f"Where the models look, on {attribution['n_images']} masked {split} tumours (each explained by the "
                  "model that decided it, for its predicted class):", "",
                  markdown_table(["method", "route", "attribution inside mask", "pointing game"], rows).rstrip("\n"), ""]
    return "\n".join(lines)


def save_examples(cases: Sequence[ShortcutCase], out: Path, *, per_test: int = 3) -> Path:
    """A figure of the first ``per_test`` counterfactual images of each test (image-derived: keep it out of git)."""
    import matplotlib.pyplot as plt

    tests = list(dict.fromkeys(c.test for c in cases))
    fig, axes = plt.subplots(len(tests), per_test, figsize=(2.4 * per_test, 2.5 * len(tests)), squeeze=False)
    for r, test in enumerate(tests):
        chosen = [c for c in cases if c.test == test][:per_test]
        for k, ax in enumerate(axes[r]):
            ax.axis("off")
            if k < len(chosen):
                ax.imshow(chosen[k].image, cmap="gray")
                ax.set_title(f"{test}\n{chosen[k].source_label} -> {chosen[k].expected or 'unchanged'}", fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
