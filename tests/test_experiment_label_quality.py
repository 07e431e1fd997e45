"""Label quality and data description on a synthetic audit with conflicting duplicate groups and a secondary
test set whose archives (one per class) overlap the training dataset's."""

from __future__ import annotations

import pandas as pd
import pytest

from hierarchy.experiment.generalisation import assess_generalisation
from hierarchy.experiment.label_quality import (
    archives_of,
    assess_label_quality,
    conflicting_ids,
    label_quality_section,
    label_quality_summary,
)
from hierarchy.metrics import evaluate_predictions
from hierarchy.reports.writer import ReportFiles


def rows(route: str, ids: list[str], truth: list[str], pred: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids, "route": route, "true_label": truth, "pred_label": pred, "expert": "flat",
                          "referred": False})
    for name in ("glioma", "meningioma", "pituitary", "no_tumor"):
        frame[f"prob_{name}"] = [0.97 if p == name else 0.01 for p in pred]
    return frame


def group(ids, labels, planes, *, label_conflict, plane_conflict):
    return {"ids": ids, "labels": labels, "planes": planes, "splits": ["train", "test"], "cross_split": True,
            "label_conflict": label_conflict, "plane_conflict": plane_conflict}


AUDIT = {
    # t0's byte copy in train says meningioma; t1's near copy was labelled coronal in train
    "exact_duplicates": [group(["a", "t0"], ["meningioma", "glioma"], ["axial", "axial"], label_conflict=True,
                               plane_conflict=False)],
    "near_duplicates": [group(["b", "t1"], ["glioma", "glioma"], ["coronal", "axial"], label_conflict=False,
                              plane_conflict=True),
                        group(["c", "d"], ["pituitary", "pituitary"], ["axial", "axial"], label_conflict=False,
                              plane_conflict=False)],
}
TEST_IDS = [f"t{i}" for i in range(8)]
TRUTH = ["glioma", "glioma", "meningioma", "meningioma", "pituitary", "pituitary", "no_tumor", "no_tumor"]


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
    # t0 (class conflict) and t1 (plane conflict) are the hierarchical route's only errors
    test = pd.concat([rows("flat", TEST_IDS, TRUTH, TRUTH),
                      rows("hierarchical", TEST_IDS, TRUTH, ["meningioma", "pituitary", *TRUTH[2:]])],
                     ignore_index=True)
    root = tmp_path_factory.mktemp("data") / "figshare_br35h"
    root.mkdir()
    ids = ["Testing/glioma/f1.jpg", "Testing/glioma/f2.jpg", "Testing/no_tumor/b1.jpg"]
    pd.DataFrame({"path": ["Testing\\glioma\\f1.jpg", "Testing/glioma/f2.jpg", "Testing/no_tumor/b1.jpg"],
                  "label": ["glioma", "glioma", "no_tumor"], "source": ["figshare", "figshare", "Br35H"]}
                 ).to_csv(root / "manifest.csv", index=False)
    second = rows("hierarchical", ids, ["glioma", "glioma", "no_tumor"], ["glioma", "glioma", "no_tumor"])
    record = {"n_indexed": 3, "n_removed_as_training_duplicates": 0, "n_evaluated": 3}
    generalisation = assess_generalisation(test, evaluate_predictions(test, n_bootstrap=5), test_label="brisc test",
                                           validation=None, external={"figshare_br35h": (record, second)},
                                           perturbed={}, n_bootstrap=5, seed=0)
    return assess_label_quality(AUDIT, test, generalisation, dataset="brisc2025", external_roots=[root])


def test_conflicting_groups_and_results_without_them(quality):
    assert conflicting_ids(AUDIT, "label") == {"a", "t0"} and conflicting_ids(AUDIT, "plane") == {"b", "t1"}
    assert quality.conflicts["class"] == {"exact_groups": 1, "near_groups": 0, "images": 2, "test_images": 1}
    assert quality.conflicts["plane"] == {"exact_groups": 0, "near_groups": 1, "images": 2, "test_images": 1}
    hierarchical = {subset: quality.accuracy[subset]["hierarchical"] for subset in quality.accuracy}
    assert (hierarchical["all test images"]["value"], hierarchical["all test images"]["n"]) == (0.75, 8)
    assert hierarchical["without class-conflict images"]["value"] == pytest.approx(6 / 7)
    assert hierarchical["without either"]["value"] == 1.0 and hierarchical["without either"]["n"] == 6
    assert quality.accuracy["without either"]["flat"]["value"] == 1.0


def test_composition_shows_the_archive_class_confound_and_the_shared_archives(quality):
    second = quality.compositions["figshare_br35h"]
    assert second.to_dict("records") == [{"archive": "br35h", "class": "no_tumor", "n": 1},
                                         {"archive": "figshare", "class": "glioma", "n": 2}]
    info = quality.secondary["figshare_br35h"]
    assert info["shared_with_training"] == ["br35h", "figshare"]
    assert info["confounds"] == ["every glioma image comes from figshare, which supplies no other class",
                                 "every no_tumor image comes from br35h, which supplies no other class"]
    brisc = quality.compositions["brisc test"]
    assert brisc["n"].sum() == 8 and brisc["archive"].str.startswith("brisc2025 (assembled from").all()


def test_section_and_summary(quality, tmp_path):
    files = ReportFiles()
    text = label_quality_section(quality, files)
    assert "arXiv:2506.14318" in text and "reviewed and corrected by radiologists" in text
    assert "figshare_br35h is a duplicate-free secondary test set, **not source-disjoint**" in text
    assert "without either" in text and "every no_tumor image comes from br35h" in text
    files.write(tmp_path)
    written = pd.read_csv(tmp_path / "tables/label_conflict_accuracy.csv").set_index("test images")
    assert written.loc["without either", "hierarchical"] == 1.0
    assert written.loc["all test images", "hierarchical_ci_low"] < 0.75
    summary = label_quality_summary(quality)
    assert summary["label_quality"]["conflicts"]["class"]["test_images"] == 1
    assert "not source-disjoint" in summary["data_description"]["secondary_test_sets"]["figshare_br35h"]["description"]


def test_archives_of_a_root_without_a_list(tmp_path):
    assert archives_of(tmp_path, ["x.jpg"]) is None
    pd.DataFrame({"path": ["x.jpg"], "label": ["glioma"]}).to_csv(tmp_path / "manifest.csv", index=False)
    assert archives_of(tmp_path, ["x.jpg"]) is None  # no source column
