"""Explaining test tumours with the deciding model and scoring the maps against lesion masks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hierarchy.data import PreprocessConfig, index_dataset
from hierarchy.experiment.explanations import (
    TABLE_STEM,
    attribution_examples,
    choose_images,
    explain_test_images,
    explanation_section,
)
from hierarchy.labels import NO_TUMOR
from hierarchy.reports import ReportFiles
from hierarchy.routing import Router

pytestmark = pytest.mark.slow  # fits a Router for explanations

ROUTES = ("flat", "hierarchical")


@pytest.fixture(scope="module")
def fitted(synthetic_root: Path) -> tuple[Router, pd.DataFrame, pd.DataFrame]:
    frame = index_dataset(synthetic_root)
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    router = Router(mode="frozen", plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None,
                    expert_init="scratch", preprocess=PreprocessConfig(image_size=48), val_fraction=0.25).fit(train)
    return router, test, router.predict_routes(test, ROUTES, progress=False)


def test_explains_each_image_on_each_route_and_writes_overlays_and_tables(fitted, tmp_path: Path) -> None:
    router, test, predictions = fitted
    arrays = tmp_path / "work" / "explanations.npz"
    result = explain_test_images(router, test, predictions, tmp_path, n_images=5, routes=ROUTES, arrays_path=arrays)
    assert result["method"] == "gradcam" and result["n_images"] == 5
    assert len(result["rows"]) == 5 * len(ROUTES)
    json.dumps(result)  # JSON-ready
    rows = pd.DataFrame(result["rows"])
    assert set(rows["route"]) == set(ROUTES)
    assert (rows["true_label"] != NO_TUMOR).all()
    assert set(rows.loc[rows["route"] == "flat", "expert"]) == {"flat"}
    assert set(rows.loc[rows["route"] == "hierarchical", "expert"]) <= set(router.planes_)
    for row in result["rows"]:
        assert row["inside_fraction"] is None or 0.0 <= row["inside_fraction"] <= 1.0
        assert row["pointing_hit"] in (True, False, None)
        overlay = tmp_path / row["overlay"]
        assert overlay.parent == tmp_path / "explanations" and overlay.stat().st_size > 0
        assert "/" not in overlay.name.removesuffix(".png")
    for record in result["summary"]:
        assert record["inside_fraction"] is None or 0.0 <= record["inside_fraction"] <= 1.0
        for chance in ("chance_inside_fraction", "random_point_rate", "centre_point_rate"):
            assert record[chance] is None or 0.0 <= record[chance] <= 1.0, chance
        assert record["pointing_rate"] is None or 0.0 <= record["pointing_rate"] <= 1.0
    examples = attribution_examples(result, arrays)
    assert 1 <= len(examples) <= 6 and {e["label"] for e in examples} <= {"glioma", "meningioma", "pituitary"}
    for example in examples:
        assert example["image"].shape == example["mask"].shape == example["maps"]["flat"].shape == (48, 48)
        assert set(example["pred"]) == set(ROUTES)
    files = ReportFiles()
    section = explanation_section(result, files, arrays)
    assert "gallery/attribution.png" in section and "random point (chance)" in section
    assert "| route | true class |" in section and "| --- |" in section
    assert "gradcam" in section and "shortcut" in section and f"tables/{TABLE_STEM}.tex" in section
    files.write(tmp_path / "report")
    for ext in ("csv", "tex", "md"):
        assert (tmp_path / "report" / "tables" / f"{TABLE_STEM}.{ext}").stat().st_size > 0
    assert (tmp_path / "report" / "gallery" / "attribution.pdf").stat().st_size > 0


def test_missed_tumours_come_first_within_balanced_classes(fitted) -> None:
    _, test, predictions = fitted
    tumours = test[test["mask_path"].notna() & (test["label"] != NO_TUMOR)]
    missed_id = tumours["id"].iloc[-1]
    wrong = predictions.copy()
    wrong.loc[wrong["id"] != missed_id, "pred_label"] = wrong["true_label"]
    wrong.loc[(wrong["id"] == missed_id) & (wrong["route"] == "hierarchical"), "pred_label"] = NO_TUMOR
    chosen = choose_images(test, wrong, 6, ROUTES, seed=0)
    missed_label = tumours.loc[tumours["id"] == missed_id, "label"].iloc[0]
    assert chosen.loc[chosen["label"] == missed_label, "id"].iloc[0] == missed_id and len(chosen) == 6
    assert chosen["label"].value_counts().tolist() == [2, 2, 2]  # glioma, meningioma, pituitary
    assert chosen["id"].is_unique and chosen["mask_path"].notna().all()
    assert chosen["id"].tolist() == choose_images(test, wrong, 6, ROUTES, seed=0)["id"].tolist()
    assert len(choose_images(test, wrong, 1000, ROUTES, seed=0)) == len(tumours)


def test_no_masks_gives_an_empty_result_and_says_so(fitted, tmp_path: Path) -> None:
    router, test, predictions = fitted
    result = explain_test_images(router, test.assign(mask_path=None), predictions, tmp_path)
    assert result["n_images"] == 0 and result["rows"] == [] and result["summary"] == []
    assert "no explanation" in explanation_section(result)


def test_clear_errors(fitted, tmp_path: Path) -> None:
    router, test, predictions = fitted
    with pytest.raises(ValueError, match="not in the prediction table"):
        explain_test_images(router, test, predictions, tmp_path, routes=("soft",))
    mixture = predictions.assign(route="soft", expert="mixture")
    with pytest.raises(ValueError, match="mixture"):
        explain_test_images(router, test, mixture, tmp_path, n_images=2, routes=("soft",))
    with pytest.raises(KeyError, match="mask_path"):
        explain_test_images(router, test.drop(columns="mask_path"), predictions, tmp_path)


def test_missed_means_called_no_tumor_and_misclassified_tumours_come_next(fitted) -> None:
    _, test, predictions = fitted
    tumours = test[test["mask_path"].notna() & (test["label"] != NO_TUMOR)]
    label = tumours["label"].value_counts().index[0]
    ids = tumours.loc[tumours["label"] == label, "id"].tolist()
    assert len(ids) >= 3
    missed_id, misclassified_id = ids[-1], ids[-2]  # last in test order, so ranking alone can lift them
    other = next(c for c in sorted(set(tumours["label"])) if c != label)
    wrong = predictions.copy()
    wrong["pred_label"] = wrong["true_label"]
    wrong.loc[wrong["id"] == missed_id, "pred_label"] = NO_TUMOR
    wrong.loc[wrong["id"] == misclassified_id, "pred_label"] = other
    chosen = choose_images(test, wrong, len(tumours), ROUTES, seed=0)
    assert chosen.loc[chosen["label"] == label, "id"].tolist()[:2] == [missed_id, misclassified_id]
