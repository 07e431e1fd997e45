"""A graded out-of-distribution suite: what a Router refers, keeps and gets wrong from in-distribution images
to images that are not brain MRI at all, and what it does with healthy brains from other scanners.

Tiers (:data:`TIERS`): ``in_distribution`` (BRISC test), ``shifted_valid`` (healthy T1 slices through the brain
from other scanners, resliced in all three planes, and low-resolution field-map magnitude images),
``near_ood`` (MR that is not an anatomical brain T1: field-map phase images, pydicom's non-brain MR test
files) and ``far_ood`` (CT and other modalities from pydicom's test files, photographs and other pictures
bundled with scikit-image and scikit-learn, blank, noise and text images).

Scorers are compared by AUROC against BRISC test and by the fraction referred at ``refer_atypical = q``
(the q-quantile of the training rows' scores). The ``*_shift`` scorers fit their typical set on training images
*and* one valid acquisition shift of each (:func:`hierarchy.data.valid_shift.valid_shift`), so that a healthy
brain from another scanner is not referred for its acquisition alone. The scorer is *chosen* on BRISC validation
images only, never on the suite (:func:`choose_scorer`): among the scorers whose mean AUROC against synthetic
corruptions of validation images (:func:`corrupt`) reaches :data:`MIN_CORRUPTION_AUROC` and that refer at most
:data:`MAX_VALID_SHIFT_REFERRED` of fresh valid shifts of them, the one with the highest mean AUROC. Selective prediction compares confidence scores by the
area under the risk-coverage curve, chosen on BRISC validation rows too.

Every pass through the Router is one ``predict_routes`` call with :func:`hierarchy.routing.depth_features.
record_depths` attached, cached under a work folder so that an interrupted run resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from sklearn.metrics import roc_auc_score

from hierarchy.metrics.shift import risk_coverage_area
from hierarchy.predictions import HEADER_ROUTE, prob_column
from hierarchy.provenance import json_sha256
from hierarchy.routing.depth_features import depth_inputs, record_depths
from hierarchy.routing.knn_ood import KNNOODScorer
from hierarchy.routing.ood import DEPTH_KINDS, FeatureOODScorer, MultiDepthOODScorer, energy_score

log = logging.getLogger(__name__)

TIERS = ("in_distribution", "shifted_valid", "near_ood", "far_ood")
ROUTES = ("flat", "hierarchical", "ensemble")
CORRUPTIONS = ("noise", "invert", "wrap", "shuffle", "blur")
MAX_VALID_SHIFT_REFERRED = 0.10
# Declared (README) before the run on fold 1's Router, after the first runs chose the energy score, which refers
# few valid shifts because it detects little: a scorer must first tell corruptions apart.
MIN_CORRUPTION_AUROC = 0.95


@dataclass
class SuiteSet:
    """One set of images of the suite: its name, tier, inputs (an index frame or a list of images) and ids."""

    name: str
    tier: str
    inputs: pd.DataFrame | list
    ids: list[str] | None = None


@dataclass
class Pass:
    """One set through the Router: its prediction table (all routes) and its recorded depths."""

    table: pd.DataFrame
    stages: list[np.ndarray]
    pooled: np.ndarray
    logits: np.ndarray | None

    def route(self, route: str) -> pd.DataFrame:
        return self.table[self.table["route"] == route].reset_index(drop=True)


# -- images ---------------------------------------------------------------------------------------------------
def corrupt(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """A synthetic corruption of a (validation) image: ``noise`` (Gaussian, sd 0.35 of the range), ``invert``,
    ``wrap`` (intensities times 3, wrapped like a phase map), ``shuffle`` (an 8x8 grid of tiles shuffled) or
    ``blur`` (Gaussian, radius 1/20 of the size)."""
    array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    if kind == "noise":
        array = np.clip(array + rng.normal(0, 0.35, array.shape), 0, 1)
    elif kind == "invert":
        array = 1.0 - array
    elif kind == "wrap":
        array = (array * 3.0) % 1.0
    elif kind == "shuffle":
        h, w = (s - s % 8 for s in array.shape)
        tiles = array[:h, :w].reshape(8, h // 8, 8, w // 8).swapaxes(1, 2).reshape(64, h // 8, w // 8)
        tiles = tiles[rng.permutation(64)].reshape(8, 8, h // 8, w // 8).swapaxes(1, 2).reshape(h, w)
        array = tiles
    elif kind == "blur":
        return image.convert("L").filter(ImageFilter.GaussianBlur(max(image.size) / 20))
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose from {CORRUPTIONS}")
    return Image.fromarray(np.round(array * 255).astype(np.uint8))


def synthetic_pictures(seed: int = 0, size: int = 256) -> list[tuple[str, Image.Image]]:
    """Blank (black, grey, white), noise (uniform, Gaussian, salt and pepper; two each) and text images."""
    rng = np.random.default_rng(seed)
    out = [(f"blank_{v}", Image.new("L", (size, size), v)) for v in (0, 128, 255)]
    for n in range(2):
        out.append((f"noise_uniform_{n}", Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))))
        out.append((f"noise_gaussian_{n}", Image.fromarray(
            np.clip(rng.normal(128, 50, (size, size)), 0, 255).astype(np.uint8))))
        out.append((f"noise_salt_pepper_{n}", Image.fromarray(
            (rng.random((size, size)) < 0.1).astype(np.uint8) * 255)))
    lines = ["Patient: ANONYMOUS", "Study: MRI BRAIN W/O", "Series 3 of 12", "Radiology report page 1",
             "Impression: no acute", "intracranial abnormality."]
    for n, (background, ink) in enumerate(((0, 255), (255, 0), (40, 200))):
        image = Image.new("L", (size, size), background)
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(lines):
            draw.text((10, 12 + row * 36), line, fill=ink)
        out.append((f"text_{n}", image))
    return out


def bundled_photos() -> list[tuple[str, Image.Image]]:
    """Pictures shipped inside scikit-image and scikit-learn (no download): photographs, microscopy, text."""
    from skimage import data as skdata  # noqa: PLC0415
    from sklearn.datasets import load_sample_images  # noqa: PLC0415

    names = ("astronaut", "brick", "camera", "cat", "cell", "checkerboard", "clock", "coffee", "coins",
             "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
             "microaneurysms", "moon", "page", "rocket", "text")
    out = []
    for name in names:
        try:
            array = getattr(skdata, name)()
        except Exception as err:  # noqa: BLE001  (an image that needs a download is left out)
            log.info("scikit-image picture %s not available: %s", name, err)
            continue
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        if array.dtype != np.uint8:
            array = np.round(255 * (array - array.min()) / max(np.ptp(array), 1e-12)).astype(np.uint8)
        out.append((f"skimage_{name}", Image.fromarray(array[..., :3] if array.ndim == 3 else array)))
    for n, array in enumerate(load_sample_images().images):
        out.append((f"sklearn_sample_{n}", Image.fromarray(array)))
    return out


# -- passes ---------------------------------------------------------------------------------------------------
def run_pass(router, suite_set: SuiteSet, cache: Path | None = None, *, routes: Sequence[str] = ROUTES,
             batch_size: int = 32) -> Pass:
    """``suite_set`` through ``router`` (all ``routes``, plus the header route where the inputs have header
    planes) with its depths recorded; cached in ``cache`` (``<name>-<hash of the ids>.csv`` and ``.npz``)."""
    inputs = suite_set.inputs
    ids = suite_set.ids if suite_set.ids is not None else inputs["id"].astype(str).tolist()
    stem = f"{suite_set.name}-{json_sha256(list(ids))[:12]}"  # which images
    if cache is not None and (cache / f"{stem}.npz").is_file():
        stored = np.load(cache / f"{stem}.npz")
        stages = [stored[f"stage{i}"] for i in range(int(stored["n_stages"]))]
        logits = stored["logits"] if "logits" in stored.files else None
        return Pass(pd.read_csv(cache / f"{stem}.csv", low_memory=False), stages, stored["pooled"], logits)
    wanted = tuple(routes)
    if isinstance(inputs, pd.DataFrame) and HEADER_ROUTE in router.available_routes(inputs):
        wanted += (HEADER_ROUTE,)
    with record_depths(router) as record:
        table = router.predict_routes(inputs, wanted, batch_size=batch_size, progress=False, tta=False)
    if suite_set.ids is not None:
        table["id"] = np.tile(np.asarray(suite_set.ids, dtype=object), len(wanted))
    result = Pass(table, record.stage_statistics(), record.pooled(), record.flat_logits())
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"stage{i}": s.astype(np.float32) for i, s in enumerate(result.stages)}
        arrays.update(n_stages=np.array(len(result.stages)), pooled=result.pooled.astype(np.float32))
        if result.logits is not None:
            arrays["logits"] = result.logits.astype(np.float32)
        table.to_csv(cache / f"{stem}.csv", index=False)
        np.savez(cache / f"{stem}.npz", **arrays)
    return result


# -- scorers --------------------------------------------------------------------------------------------------
class Scorers:
    """Every OOD score of the suite, fitted on training rows only: ``mahalanobis`` (the Router's own),
    ``energy`` (of the flat model's logits), ``depth_means`` and ``depth_stats`` (:class:`MultiDepthOODScorer`);
    with ``shift`` (a pass of one valid acquisition shift of each of the first training rows, in order) also
    ``mahalanobis_shift`` (last-layer features, as the Router's own), ``depth_means_shift`` and ``knn_shift``
    (:class:`KNNOODScorer`, last-layer features), fitted on the training rows and their shifts together, each image
    and its shift in one fold of the out-of-fold reference scores."""

    base_names = ("mahalanobis", "energy", "depth_means", "depth_stats")
    shift_names = ("mahalanobis_shift", "depth_means_shift", "knn_shift")

    def __init__(self, router, train: Pass, labels: Sequence[str], shift: Pass | None = None) -> None:
        self.router = router
        self.fitted = {kind: MultiDepthOODScorer().fit(depth_inputs(kind, train.stages, train.pooled), labels)
                       for kind in DEPTH_KINDS}
        # the energy threshold comes from the training rows' own energies (no fold is needed: no fit)
        self.energy_train = energy_score(train.logits) if train.logits is not None else None
        self.names = self.base_names
        if shift is None:
            return
        m = len(shift.pooled)
        if not 0 < m <= len(train.pooled):
            raise ValueError(f"the shift pass has {m} images for {len(train.pooled)} training rows")
        labels2, groups = [*labels, *labels[:m]], np.r_[np.arange(len(labels)), np.arange(m)]
        pooled = np.concatenate([train.pooled, shift.pooled])
        stages = [np.concatenate(pair) for pair in zip(train.stages, shift.stages, strict=True)]
        self.fitted.update(
            mahalanobis_shift=FeatureOODScorer("l2", cv=5).fit(pooled, labels2, groups),
            depth_means_shift=MultiDepthOODScorer().fit(depth_inputs("depth_means", stages, pooled), labels2, groups),
            knn_shift=KNNOODScorer(k=10, cv=5).fit(pooled, labels2, groups))
        self.names = (*self.base_names, *self.shift_names)

    def score(self, name: str, run: Pass) -> np.ndarray:
        if name == "mahalanobis":
            return run.route("hierarchical")["ood_score"].to_numpy(float)
        if name == "energy":
            return energy_score(run.logits)
        if name in ("mahalanobis_shift", "knn_shift"):
            return self.fitted[name].score(run.pooled)
        return self.fitted[name].score(depth_inputs(name.removesuffix("_shift"), run.stages, run.pooled))

    def threshold(self, name: str, q: float) -> float:
        if name == "mahalanobis":
            return self.router.ood_scorer_.threshold(q)
        if name == "energy":
            return float(np.quantile(self.energy_train, q))
        return self.fitted[name].threshold(q)


def choose_scorer(corruption_auroc: dict[str, float], valid_shift_referred: dict[str, float],
                  limit: float = MAX_VALID_SHIFT_REFERRED, floor: float = MIN_CORRUPTION_AUROC) -> str:
    """The scorer with the highest mean corruption AUROC among those that reach ``floor`` and refer at most
    ``limit`` of the valid shifts (ties: the first named); when none does both, the one among those reaching
    ``floor`` that refers the fewest valid shifts (detection first); when none reaches ``floor``, the same two
    steps over every scorer."""
    names = [s for s in corruption_auroc if corruption_auroc[s] >= floor] or list(corruption_auroc)
    allowed = [s for s in names if valid_shift_referred[s] <= limit]
    if allowed:
        return max(allowed, key=lambda s: corruption_auroc[s])
    return min(names, key=lambda s: valid_shift_referred[s])


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """AUROC of telling ``outside`` from ``inside`` by a score (higher: more atypical)."""
    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(y, np.r_[inside, outside]))


# -- selective prediction -------------------------------------------------------------------------------------
CONFIDENCES = ("softmax", "margin", "route_agreement", "agreement_typical")


def confidence(name: str, run: Pass, classes: Sequence[str], atypical: np.ndarray | None = None) -> np.ndarray:
    """Confidence of the hierarchical route's prediction: ``softmax`` (its top probability, the baseline),
    ``margin`` (top minus second), ``route_agreement`` (the lowest probability any of flat, hierarchical and
    ensemble give the hierarchical route's label) and ``agreement_typical`` (route agreement, minus 1 for
    images the chosen OOD scorer refers, so they go last)."""
    columns = [prob_column(c) for c in classes]
    hier = run.route("hierarchical")[columns].to_numpy(float)
    if name == "softmax":
        return hier.max(axis=1)
    if name == "margin":
        top = np.sort(hier, axis=1)
        return top[:, -1] - top[:, -2]
    label = hier.argmax(axis=1)
    rows = np.arange(len(label))
    agreement = np.min([run.route(r)[columns].to_numpy(float)[rows, label] for r in ROUTES], axis=0)
    if name == "route_agreement":
        return agreement
    if name == "agreement_typical":
        return agreement - (np.zeros(len(label)) if atypical is None else atypical.astype(float))
    raise ValueError(f"unknown confidence {name!r}; choose from {CONFIDENCES}")


def correct(run: Pass, label: str | None = None) -> np.ndarray:
    """Whether the hierarchical route is right on each image (truth: the table's, or ``label`` for all)."""
    hier = run.route("hierarchical")
    truth = hier["true_label"].to_numpy() if label is None else np.full(len(hier), label)
    return hier["pred_label"].to_numpy() == truth


def selective(runs: dict[str, Pass], classes: Sequence[str], atypical: dict[str, np.ndarray],
              labels: dict[str, str | None]) -> pd.DataFrame:
    """AURC of every confidence on every set (rows: sets; columns: confidences)."""
    rows = []
    for name, run in runs.items():
        right = correct(run, labels.get(name))
        rows.append({"set": name, "n": len(right), "accuracy": float(right.mean()),
                     **{c: risk_coverage_area(right, confidence(c, run, classes, atypical.get(name)))
                        for c in CONFIDENCES}})
    return pd.DataFrame(rows)


# -- healthy scanner brains -----------------------------------------------------------------------------------
def healthy_table(run: Pass, referred: np.ndarray, route: str = "hierarchical") -> pd.DataFrame:
    """Per source and plane of healthy slices: n, fraction called no tumour, referred, called no tumour or
    referred, and the plane classifier's accuracy against the header."""
    table = run.route(route).assign(referred_ood=referred)
    table["source_volume"] = table["series"].astype(str).str.split("/@").str[0]
    table["no_tumor"] = table["pred_label"] == "no_tumor"
    table["plane_right"] = table["pred_plane"] == table["header_plane"]
    grouped = table.groupby(["source_volume", "header_plane"])
    out = grouped.agg(n=("id", "size"), no_tumor=("no_tumor", "mean"), referred=("referred_ood", "mean"),
                      plane_accuracy=("plane_right", "mean")).reset_index()
    out["no_tumor_or_referred"] = grouped.apply(lambda g: float((g["no_tumor"] | g["referred_ood"]).mean()),
                                                include_groups=False).to_numpy()
    return out

