"""Shortcut tests: counterfactual images from a split's own images and masks, rates per route, attribution
against chance baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hierarchy.data import PreprocessConfig, index_dataset, load_image, train_val_split
from hierarchy.experiment.shortcut_tests import (
    SHORTCUT_TESTS,
    attribution_scores,
    build_cases,
    evaluate_cases,
    run_shortcut_tests,
    shortcut_score,
    shortcut_section,
)
from hierarchy.explain.mask_scores import mask_score_baselines
from hierarchy.routing import Router
from hierarchy.training import TrainConfig


@pytest.fixture(scope="module")
def test_rows(synthetic_root: Path) -> pd.DataFrame:
    frame = index_dataset(synthetic_root)
    return frame[frame["split"] == "test"].reset_index(drop=True)


def test_build_cases_makes_balanced_counterfactuals_of_each_test(test_rows: pd.DataFrame) -> None:
    cases = build_cases(test_rows, n=6, seed=0)
    by_test = {t: [c for c in cases if c.test == t] for t in SHORTCUT_TESTS}
    assert all(len(v) == 6 for v in by_test.values())
    assert sorted(c.source_label for c in by_test["removal"]) == ["glioma"] * 2 + ["meningioma"] * 2 + ["pituitary"] * 2
    assert all(c.expected == "no_tumor" for c in by_test["removal"])
    assert all(c.expected == c.source_label != "no_tumor" for c in by_test["paste_in"])
    planes = test_rows.set_index("id")["plane"]
    assert all(planes[c.partner_id] == planes[c.source_id] for c in by_test["paste_in"] + by_test["background_swap"])
    labels = test_rows.set_index("id")["label"]
    assert all(labels[c.partner_id] == "no_tumor" for c in by_test["paste_in"] + by_test["background_swap"])
    assert all(labels[c.partner_id] != c.source_label and c.expected is None for c in by_test["style_swap"])
    # a pasted tumour changes the normal image; a removed one changes the tumour image
    for case in by_test["paste_in"][:2] + by_test["removal"][:2]:
        base = test_rows.set_index("id")["path"][case.partner_id or case.source_id]
        assert not np.array_equal(case.image, np.asarray(load_image(base)))
    assert build_cases(test_rows, n=6, seed=0)[0].image.tobytes() == cases[0].image.tobytes()  # seeded


def test_build_cases_refuses_frames_without_what_the_tests_need(test_rows: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no-tumour"):
        build_cases(test_rows[test_rows["label"] != "no_tumor"], n=2)
    with pytest.raises(ValueError, match="mask"):
        build_cases(test_rows.assign(mask_path=None), n=2, tests=("removal",))
    with pytest.raises(ValueError, match="unknown shortcut tests"):
        build_cases(test_rows, n=2, tests=("telepathy",))


class _StubRouter:
    """Calls every in-memory (counterfactual) image no_tumor and every indexed (original) image glioma."""

    def predict_routes(self, inputs, routes, batch_size=32):
        if isinstance(inputs, pd.DataFrame):
            ids, label = inputs["id"].tolist(), "glioma"
        else:
            ids, label = [f"input_{i}" for i in range(len(inputs))], "no_tumor"
        return pd.DataFrame([{"id": i, "route": r, "pred_label": label} for r in routes for i in ids])


def test_evaluate_cases_counts_what_each_test_expects(test_rows: pd.DataFrame) -> None:
    cases = build_cases(test_rows, n=6, seed=1)
    result = evaluate_cases(_StubRouter(), cases, test_rows, routes=("flat", "hierarchical"))
    tests = result["tests"]
    assert tests["removal"]["flat"]["rate"] == 1.0 and tests["removal"]["flat"]["n"] == 6
    assert tests["paste_in"]["hierarchical"]["rate"] == 0.0 and tests["paste_in"]["flat"]["tumour_rate"] == 0.0
    assert tests["background_swap"]["flat"]["rate"] == 0.0
    assert tests["style_swap"]["flat"]["rate"] == 0.0  # originals glioma, restyled no_tumor: all changed
    low, high = tests["removal"]["flat"]["ci"]
    assert 0.5 < low < 1.0 and high == pytest.approx(1.0)
    assert shortcut_score(result, "flat") == pytest.approx(0.25)
    text = shortcut_section({**result, "n_per_test": 6, "seed": 1})
    assert "| removal | flat | 6 | 100.0 |" in text


def test_mask_score_baselines_are_the_chance_rates() -> None:
    head = np.zeros((224, 224), dtype=bool)
    head[12:212, 12:212] = True  # 200 x 200
    mask = np.zeros_like(head)
    mask[102:122, 102:122] = True  # 20 x 20 at the centre
    base = mask_score_baselines(mask, head)
    assert base["uniform_inside_fraction"] == pytest.approx(400 / 40000)
    assert base["centre_point_hit"] is True
    # a hit anywhere within 15 px of the square: a rounded 50 x 50 square's area over the head's
    assert 0.04 < base["random_point_hit"] < 50 * 50 / 40000
    corner = np.zeros_like(head)
    corner[12:20, 12:20] = True
    assert mask_score_baselines(corner, head)["centre_point_hit"] is False


@pytest.fixture(scope="module")
def router(synthetic_root: Path) -> Router:
    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    return Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="joint",
                  preprocess=PreprocessConfig(image_size=32),
                  train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)).fit(train, val)


def test_shortcut_tests_and_attribution_run_on_a_real_router(router: Router, test_rows: pd.DataFrame) -> None:
    result = run_shortcut_tests(router, test_rows, n=3, routes=("flat", "hierarchical"))
    assert set(result["tests"]) == set(SHORTCUT_TESTS)
    assert all(0.0 <= e["rate"] <= 1.0 and e["n"] == 3 for by in result["tests"].values() for e in by.values())
    scores = attribution_scores(router, test_rows, n=3, methods=("gradcam",))
    assert scores["n_images"] == 3
    entry = scores["methods"]["gradcam"]["flat"]
    assert entry["pointing_game"]["n"] <= 3
    assert 0.0 <= scores["baselines"]["uniform_inside_fraction"] <= 1.0
    assert "chance: head-centre point" in shortcut_section(result, scores)


def test_healthy_scanner_slices_are_counted_per_route_plane_and_series(tmp_path: Path) -> None:
    import nibabel as nib

    from hierarchy.experiment.disease_study import healthy_slices, healthy_summary

    zz, yy, xx = np.mgrid[0:40, 0:40, 0:40]
    head = ((xx - 20) ** 2 + (yy - 20) ** 2 + (zz - 20) ** 2 < 15 ** 2).astype(np.uint8) * 120
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(head, np.diag([4.0, 4.0, 4.0, 1.0])), path)
    slices = healthy_slices([path])
    assert len(slices) > 0 and set(slices["label"]) == {"no_tumor"} and slices["brain"].all()
    assert set(slices["header_plane"]) == {"axial", "coronal", "sagittal"}
    table = pd.DataFrame({"id": list(slices["id"]) * 2, "route": ["flat"] * len(slices) + ["ensemble"] * len(slices),
                          "pred_label": ["no_tumor"] * len(slices) + ["glioma"] * len(slices)})
    summary = healthy_summary(table, slices)
    assert summary["n"] == len(slices)
    # the Router's prediction table already carries the scanner columns of its input
    with_scanner = table.merge(slices[["id", "header_plane", "series"]], on="id")
    assert healthy_summary(with_scanner, slices) == summary
    assert summary["routes"]["flat"]["no_tumor_rate"] == 1.0 and summary["routes"]["ensemble"]["no_tumor_rate"] == 0.0
    assert set(summary["routes"]["flat"]["by_plane"]) == {"axial", "coronal", "sagittal"}
