"""Label quality and data description: the reference standard as each dataset describes it, the audit's
duplicate groups whose copies carry conflicting class or plane labels (with test results with and without
those images), and the archives and classes each test set is made of, so that a source/class confound and
a secondary test set that shares archives with the training data are in plain sight.

A secondary test set (``--external``) has exact and near duplicates of training images removed; that makes it
duplicate-free, not source-disjoint. Where the archives of both the training dataset and the secondary set are
known, the report says which they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.csv_io import read_csv
from hierarchy.experiment.external import external_name
from hierarchy.experiment.generalisation import Generalisation
from hierarchy.metrics.intervals import proportion
from hierarchy.reports.writer import ReportFiles

TITLE = "Label quality and data description"
SECONDARY = "duplicate-free secondary test set"
ARCHIVE_FILE = "manifest.csv"  # a dataset root's list of files with the archive (``source``) of each

# What each known dataset says of its labels and where its images come from (archive names in lower case).
KNOWN_DATASETS: dict[str, dict[str, Any]] = {
    "brisc2025": {
        "citation": "Fateh et al. 2025, BRISC: Annotated Dataset for Brain Tumor Segmentation and Classification, "
                    "arXiv:2506.14318",
        "reference_standard": (
            "BRISC 2025 gives one class label per 2-D T1-weighted slice (glioma, meningioma, pituitary tumour, no "
            "tumour) and a plane label in each file name; its description states that the labels and the tumour "
            "masks were reviewed and corrected by radiologists and physicians. It reports no inter-rater agreement "
            "and no patient identifiers, so neither label noise nor patient overlap between train and test can be "
            "measured from the release; the duplicate audit below is this run's only check of the labels."),
        # as documented in ../shared/data/figshare_br35h/README.md: BRISC re-used these archives' images
        "archives": ("figshare", "sartaj", "br35h"),
        "archives_note": "assembled from the figshare (Cheng et al. 2015), SARTAJ and Br35H archives; the release "
                         "does not record each image's archive",
    },
    "figshare_br35h": {
        "citation": "Cheng et al. 2015, PLoS ONE 10(10), doi:10.6084/m9.figshare.1512427; Hamada, Br35H (Kaggle, 2020)",
        "reference_standard": (
            "figshare_br35h: tumour classes as labelled in the figshare brain tumour dataset (Cheng et al. 2015; "
            "T1-weighted contrast-enhanced slices from two hospitals), normal images from the Br35H 'no' folder; "
            "neither archive describes how its labels were reviewed."),
        "archives": None,  # read per image from its manifest.csv
    },
}


def conflicting_ids(audit: Mapping[str, Any], kind: str) -> set[str]:
    """Ids of every image in an exact or near duplicate group of the audit whose copies carry different
    ``kind`` labels (``"label"``: class, ``"plane"``)."""
    groups = [*(audit.get("exact_duplicates") or ()), *(audit.get("near_duplicates") or ())]
    return {i for g in groups if g[f"{kind}_conflict"] for i in g["ids"]}


def _group_counts(audit: Mapping[str, Any], kind: str, test_ids: set[str]) -> dict[str, int]:
    exact = [g for g in (audit.get("exact_duplicates") or ()) if g[f"{kind}_conflict"]]
    near = [g for g in (audit.get("near_duplicates") or ()) if g[f"{kind}_conflict"]]
    ids = conflicting_ids(audit, kind)
    return {"exact_groups": len(exact), "near_groups": len(near), "images": len(ids),
            "test_images": len(ids & test_ids)}


def archives_of(root: str | Path, ids: Sequence[str]) -> pd.Series | None:
    """The archive of each image id from ``root/manifest.csv`` (columns ``path`` and ``source``), lower case;
    None when the root has no such list. Ids the list lacks get ``"unlisted"``."""
    path = Path(root) / ARCHIVE_FILE
    if not path.is_file():
        return None
    listed = read_csv(path, "archive list", dtype=str, keep_default_na=False)
    if not {"path", "source"} <= set(listed.columns):
        return None
    archive = listed.assign(path=listed["path"].str.replace("\\", "/")).set_index("path")["source"].str.lower()
    return pd.Series([archive.get(i, "unlisted") for i in ids], index=list(ids), name="archive")


def composition(table: pd.DataFrame, archives: pd.Series | None, unknown: str) -> pd.DataFrame:
    """Images per (archive, class) of one prediction table (one row per image); ``unknown`` names the archive
    of every image when ``archives`` (id -> archive) is None."""
    images = table.drop_duplicates("id")
    archive = images["id"].map(archives) if archives is not None else pd.Series(unknown, index=images.index)
    return (pd.DataFrame({"archive": archive.to_numpy(), "class": images["true_label"].to_numpy()})
            .value_counts().rename("n").reset_index().sort_values(["archive", "class"], ignore_index=True))


def confounds(counts: pd.DataFrame) -> list[str]:
    """Classes that come from one archive that supplies no other class: archive and class cannot be told
    apart, so a model may learn the archive."""
    found = []
    for label, rows in counts.groupby("class"):
        if len(rows) == 1:
            archive = rows["archive"].iloc[0]
            if counts.loc[counts["archive"] == archive, "class"].nunique() == 1:
                found.append(f"every {label} image comes from {archive}, which supplies no other class")
    return found


@dataclass
class LabelQuality:
    """Conflicting-label groups and their effect on test results, and each test set's make-up."""

    dataset: str
    conflicts: dict[str, dict[str, int]]  # "class" / "plane" -> group and image counts
    accuracy: dict[str, dict[str, dict]]  # test subset -> route -> proportion
    compositions: dict[str, pd.DataFrame]  # test set -> images per (archive, class)
    secondary: dict[str, dict[str, Any]]  # secondary test set -> archives, shared archives, confounds


SUBSETS = {"all test images": (), "without class-conflict images": ("label",),
           "without plane-conflict images": ("plane",), "without either": ("label", "plane")}


def assess_label_quality(audit: Mapping[str, Any], test_predictions: pd.DataFrame, generalisation: Generalisation,
                         *, dataset: str, external_roots: Sequence[str | Path] = ()) -> LabelQuality:
    """Conflicting-label counts from the ``audit`` dict, accuracy [Wilson CI] of every route on the test split
    with and without the images of such groups, and the (archive, class) make-up of the test split and of every
    secondary test set of ``generalisation`` (archives read from each root's ``manifest.csv`` when it has one)."""
    test_ids = set(test_predictions["id"])
    conflicts = {"class": _group_counts(audit, "label", test_ids), "plane": _group_counts(audit, "plane", test_ids)}
    accuracy = {}
    for subset, kinds in SUBSETS.items():
        dropped = set().union(*(conflicting_ids(audit, kind) for kind in kinds))
        rows = test_predictions[~test_predictions["id"].isin(dropped)]
        accuracy[subset] = {route: proportion(int((r["pred_label"] == r["true_label"]).sum()), len(r))
                            for route, r in rows.groupby("route", sort=False)}
    known = KNOWN_DATASETS.get(dataset, {})
    test_label = next(iter(generalisation.of_kind("test")))
    compositions = {test_label: composition(test_predictions, None, dataset + (
        f" ({known['archives_note']})" if known.get("archives_note") else " (archives not recorded)"))}
    roots = {external_name(root): root for root in external_roots}
    secondary = {}
    for name, external in generalisation.external.items():
        table = external.predictions
        listed = archives_of(roots[name], table["id"].unique().tolist()) if name in roots else None
        compositions[name] = composition(table, listed, f"{name} (archives not recorded)")
        archives = sorted(set(compositions[name]["archive"])) if listed is not None else None
        training = known.get("archives")
        secondary[name] = {"archives": archives,
                           "shared_with_training": None if archives is None or training is None
                           else sorted(set(archives) & set(training)),
                           "confounds": confounds(compositions[name]) if listed is not None else []}
    return LabelQuality(dataset, conflicts, accuracy, compositions, secondary)


def secondary_description(name: str, info: Mapping[str, Any], dataset: str) -> str:
    """One sentence naming what a secondary test set is: duplicate-free, and source-disjoint or not."""
    shared = info["shared_with_training"]
    if shared:
        return (f"{name} is a {SECONDARY}, **not source-disjoint**: its archives ({', '.join(info['archives'])}) "
                f"include {', '.join(shared)}, from which {dataset} was also assembled, so it is no independent "
                "external validation.")
    if shared == []:
        return (f"{name} is a {SECONDARY}; none of its archives ({', '.join(info['archives'])}) is among those "
                f"{dataset} was assembled from.")
    return (f"{name} is a {SECONDARY}; whether it shares source archives with {dataset} is not recorded, so it "
            "is not shown to be source-disjoint.")


def label_quality_section(quality: LabelQuality, files: ReportFiles) -> str:
    """The label-quality and data-description section (Markdown; its tables go to ``files``)."""
    known = KNOWN_DATASETS.get(quality.dataset, {})
    reference = known.get("reference_standard") or (
        f"{quality.dataset}: the dataset's reference standard is not described in this library; state how its "
        "labels were made and reviewed before publishing.")
    cited = f" ({known['citation']})" if known.get("citation") else ""
    others = [KNOWN_DATASETS[n]["reference_standard"] for n in quality.secondary if n in KNOWN_DATASETS]
    conflicts = pd.DataFrame([{"conflicting": kind, **counts} for kind, counts in quality.conflicts.items()])
    routes = list(dict.fromkeys(r for by_route in quality.accuracy.values() for r in by_route))
    accuracy = pd.DataFrame([{"test images": subset, "n": next(iter(by_route.values()))["n"],
                              **{k: v for route in routes if route in by_route for k, v in (
                                  (route, by_route[route]["value"]), (f"{route}_ci_low", by_route[route]["ci"][0]),
                                  (f"{route}_ci_high", by_route[route]["ci"][1]))}}
                             for subset, by_route in quality.accuracy.items() if by_route])
    make_up = pd.concat([c.assign(test_set=name) for name, c in quality.compositions.items()], ignore_index=True)
    make_up = make_up[["test_set", "archive", "class", "n"]]
    lines = [secondary_description(name, info, quality.dataset) for name, info in quality.secondary.items()]
    lines += [f"In {name}, {c}: a model that recognises the archive's image style gets that class right without "
              "seeing a tumour, so its results there mix tumour recognition with source recognition."
              for name, info in quality.secondary.items() for c in info["confounds"]]
    return "\n\n".join(p for p in [
        "### Reference standard",
        reference + cited, *others,
        "### Duplicates with conflicting labels",
        "Groups of exact (same bytes) or near (perceptual hash) duplicates in the dataset audit whose copies carry "
        "different class labels or different plane labels: at most one label of such a group can be right. Counts "
        "of groups and of the images in them (all splits, and in the test split):",
        files.table(conflicts, "label_conflicts", "Duplicate groups with conflicting class or plane labels"),
        "Accuracy [95% Wilson CI] of every route on the test split, with and without the images of those groups:",
        files.table(accuracy, "label_conflict_accuracy",
                    "Test accuracy with and without images of conflicting-label duplicate groups [95% Wilson CI]"),
        "### Source composition of each test set",
        files.table(make_up, "test_set_composition", "Images per source archive and class in each test set"),
        *lines,
    ] if p)


def label_quality_summary(quality: LabelQuality) -> dict[str, Any]:
    """``summary.json`` blocks ``label_quality`` (conflict counts, accuracy per test subset and route) and
    ``data_description`` (reference standard, composition of each test set, what each secondary set is)."""
    known = KNOWN_DATASETS.get(quality.dataset, {})
    return {
        "label_quality": {"conflicts": quality.conflicts,
                          "accuracy": {subset: {route: {"value": p["value"], "ci": p["ci"], "n": p["n"]}
                                                for route, p in by_route.items()}
                                       for subset, by_route in quality.accuracy.items()}},
        "data_description": {
            "reference_standard": known.get("reference_standard"), "citation": known.get("citation"),
            "test_sets": {name: c.to_dict("records") for name, c in quality.compositions.items()},
            "secondary_test_sets": {name: {**info, "description": secondary_description(name, info, quality.dataset)}
                                    for name, info in quality.secondary.items()},
        },
    }
