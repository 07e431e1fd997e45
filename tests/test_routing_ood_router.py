"""The Router's out-of-distribution scores: fitted on training rows only, on the right trunk, in every
prediction table, used by refer_atypical, saved and loaded with the Router (the multi-depth one too)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import PreprocessConfig
from hierarchy.routing import Router, RouterConfig
from hierarchy.routing import fitting as fitting_module
from hierarchy.routing.fitting import choose_ood_trunk
from hierarchy.routing.ood import FeatureOODScorer
from hierarchy.routing.persistence import RouterError
from hierarchy.training import TrainConfig

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch", "preprocess": PreprocessConfig(image_size=48)}


@pytest.fixture(scope="module")
def fitted_rows(split_frames) -> dict:
    """A frozen Router, with a record of the features its OOD scorer was fitted on."""
    seen: dict = {}
    original = FeatureOODScorer.fit

    def spy(self, features, labels=None):
        seen["features"], seen["labels"] = np.asarray(features), list(labels)
        return original(self, features, labels)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FeatureOODScorer, "fit", spy)
        # frozen mode reuses the features extracted for the heads: a second pass over the images would fail
        patch.setattr(fitting_module, "batches", lambda *a, **k: pytest.fail("features extracted twice"))
        router = Router(mode="frozen", **TINY).fit(split_frames[0], split_frames[1])
    return {"router": router, **seen}


@pytest.fixture(scope="module")
def router(fitted_rows) -> Router:
    return fitted_rows["router"]


def _inverted(frame: pd.DataFrame) -> list[np.ndarray]:
    return [255 - np.asarray(Image.open(p).convert("L")) for p in frame["path"]]


def test_the_scorer_is_fitted_on_the_training_rows_only(fitted_rows, split_frames):
    train = split_frames[0]
    router = fitted_rows["router"]
    assert len(fitted_rows["features"]) == len(train) == router.ood_scorer_.n_train_
    assert fitted_rows["labels"] == train["label"].tolist()
    assert router.ood_scorer_.cv == 5  # reference scores out of fold, still from training rows only
    # the cached features it was fitted on are the ones predict computes for those rows
    np.testing.assert_allclose(router.predict(train)["ood_score"],
                               router.ood_scorer_.score(fitted_rows["features"]), rtol=1e-6, atol=1e-8)


def test_the_ood_trunk_is_the_shared_one_else_the_flat_one_else_the_plane_one(router, split_frames):
    assert router.ood_trunk_ == "shared"  # frozen simple_cnn, one seed: every component on one trunk
    assert choose_ood_trunk({"plane": "a", "flat": "a", "x": "a"}) == "shared"
    assert choose_ood_trunk({"plane": "a", "flat": "b", "x": "c"}) == "flat"
    assert choose_ood_trunk({"plane": "a", "flat": None, "x": "a"}) == "plane"
    assert choose_ood_trunk({"plane": None, "x": "a"}) is None
    finetuned = Router(train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0), **TINY).fit(split_frames[0], split_frames[1])
    assert finetuned.ood_trunk_ == "flat"
    assert finetuned.ood_scorer_.n_train_ == len(split_frames[0])
    assert "ood_score" in finetuned.predict(split_frames[2]).columns


def test_every_prediction_table_carries_an_ood_score(router, split_frames):
    table = router.predict_routes(split_frames[2])
    assert table["ood_score"].notna().all() and (table["ood_score"] >= 0).all()
    # one score per image, the same in every route
    assert (table.groupby("id")["ood_score"].nunique() == 1).all()
    assert "atypical" not in table.columns


def test_refer_atypical_refers_about_half_of_fresh_images_and_more_shifted_ones(router, split_frames):
    fresh = pd.concat(split_frames[1:], ignore_index=True)  # validation and test rows: never fitted on
    table = router.predict(fresh, refer_atypical=0.5)
    assert table["atypical"].dtype == bool
    assert 0.15 < table["atypical"].mean() < 0.85
    assert (table["referred"] == table["atypical"]).all()  # no reject_below: only the atypical ones
    shifted = router.predict(_inverted(split_frames[0]), refer_atypical=0.5)
    assert shifted["atypical"].mean() > 0.9
    assert shifted["ood_score"].median() > table["ood_score"].max()


def test_refer_atypical_is_ored_with_reject_below(router, split_frames):
    table = router.predict(split_frames[2], refer_atypical=0.9, reject_below=0.99)
    low = table[[c for c in table.columns if c.startswith("prob_")]].max(axis=1) < 0.99
    assert (table["referred"] == (low | table["atypical"])).all()
    with pytest.raises(ValueError, match="q must be in"):
        router.predict(split_frames[2], refer_atypical=1.5)


def test_saved_and_loaded_router_gives_identical_scores(router, split_frames, tmp_path):
    router.save(tmp_path / "router")
    assert sorted(p.name for p in (tmp_path / "router" / "ood").iterdir()) == ["ood.json", "ood.safetensors"]
    manifest = json.loads((tmp_path / "router" / "router.json").read_text())
    assert manifest["ood"] == {"directory": "ood", "trunk": "shared"}
    loaded = Router.load(tmp_path / "router")
    assert loaded.ood_trunk_ == "shared"
    before = router.predict(split_frames[2], refer_atypical=0.7)
    after = loaded.predict(split_frames[2], refer_atypical=0.7)
    np.testing.assert_array_equal(before["ood_score"], after["ood_score"])
    np.testing.assert_array_equal(before["atypical"], after["atypical"])


def test_a_router_without_a_scorer_has_no_column_and_refuses_refer_atypical(split_frames, tmp_path):
    router = Router(mode="frozen", ood=False, **TINY).fit(split_frames[0], split_frames[1])
    assert router.ood_scorer_ is None and router.ood_trunk_ is None
    router.save(tmp_path / "router")
    assert not (tmp_path / "router" / "ood").exists()
    loaded = Router.load(tmp_path / "router")
    assert loaded.ood_scorer_ is None and loaded.ood is False
    assert "ood_score" not in loaded.predict(split_frames[2]).columns
    with pytest.raises(ValueError, match="no.*out-of-distribution|has none"):
        loaded.predict(split_frames[2], refer_atypical=0.5)


def test_router_config_carries_ood_and_tta():
    config = RouterConfig(ood=False, tta="identity,hflip")
    assert RouterConfig.from_dict(config.to_dict()) == config
    router = Router.from_config(config)
    assert router.ood is False and router.config.tta == "identity,hflip"
    assert Router(tta=True).config.tta == "identity,hflip"
    with pytest.raises(ValueError, match="unknown TTA views"):
        RouterConfig(tta="identity,spin")


def test_hierarchy_predict_takes_tta_and_refer_atypical(router, split_frames, tmp_path, capsys):
    from hierarchy.cli import main

    router.save(tmp_path / "run")
    image = split_frames[2]["path"].iloc[0]
    assert main(["predict", "--model", str(tmp_path / "run"), image, "--tta", "identity,hflip",
                 "--refer-atypical", "0.0", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["atypical"] is True and rows[0]["referred"] is True
    assert rows[0]["ood_score"] == pytest.approx(
        router.predict([image], tta=("identity", "hflip"))["ood_score"].iloc[0])
    assert main(["predict", "--model", str(tmp_path / "run"), image, "--tta", "spin"]) == 2
    assert "unknown TTA views" in capsys.readouterr().err


def test_hierarchy_train_has_ood_and_tta_flags():
    from hierarchy.cli.train import SETTINGS

    flags = {flag for flag, *_ in SETTINGS}
    assert {"--ood", "--tta"} <= flags


def test_the_multi_depth_scorer_is_saved_and_loaded_with_the_router(router, split_frames, tmp_path):
    train, _, test = split_frames
    with pytest.raises(ValueError, match="fit_depth_ood"):
        router.depth_ood_scores(test)
    with pytest.raises(ValueError, match="test"):
        router.fit_depth_ood(test)
    fitted = copy.copy(router)  # the module's Router stays without a multi-depth scorer
    fitted.fit_depth_ood(train, "depth_stats")
    assert fitted.depth_ood_scorer_.train_scores_.shape == (len(train),)
    before = fitted.depth_ood_scores(test)
    assert before.shape == (len(test),) and np.isfinite(before).all()
    fitted.save(tmp_path / "router")
    manifest = json.loads((tmp_path / "router" / "router.json").read_text())
    assert manifest["depth_ood"] == {"directory": "depth_ood", "kind": "depth_stats", "shifts": False}
    files = sorted(p.relative_to(tmp_path / "router" / "depth_ood").as_posix()
                   for p in (tmp_path / "router" / "depth_ood").rglob("*") if p.is_file())
    n_depths = len(fitted.depth_ood_scorer_.scorers_)
    assert files == sorted(["depth_ood.json", "depth_ood.safetensors",
                            *(f"depth_{k}/{f}" for k in range(n_depths) for f in ("ood.json", "ood.safetensors"))])
    loaded = Router.load(tmp_path / "router")
    assert loaded.depth_ood_kind_ == "depth_stats"
    np.testing.assert_allclose(loaded.depth_ood_scores(test), before, rtol=1e-6, atol=1e-6)
    assert loaded.depth_ood_scorer_.threshold(0.95) == fitted.depth_ood_scorer_.threshold(0.95)


def test_the_multi_depth_scorer_can_hold_valid_shifts_of_the_training_rows(router, split_frames, tmp_path):
    train, _, test = split_frames
    fitted = copy.copy(router)
    fitted.fit_depth_ood(train, shifts=True, seed=3)
    assert fitted.depth_ood_shifts_ and fitted.depth_ood_scorer_.train_scores_.shape == (2 * len(train),)
    again = copy.copy(router).fit_depth_ood(train, shifts=True, seed=3)  # the shifts are drawn from the seed
    assert again.depth_ood_scorer_.threshold(0.95) == fitted.depth_ood_scorer_.threshold(0.95)
    fitted.save(tmp_path / "router")
    assert json.loads((tmp_path / "router" / "router.json").read_text())["depth_ood"]["shifts"] is True
    loaded = Router.load(tmp_path / "router")
    assert loaded.depth_ood_shifts_
    np.testing.assert_allclose(loaded.depth_ood_scores(test), fitted.depth_ood_scores(test), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_a_damaged_multi_depth_scorer_file_is_named(router, split_frames, tmp_path, damage):
    fitted = copy.copy(router)
    fitted.fit_depth_ood(split_frames[0])
    fitted.save(tmp_path / "router")
    target = tmp_path / "router" / "depth_ood" / "depth_1" / "ood.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:40])
    else:
        target.unlink()
    with pytest.raises(RouterError, match=re.escape(str(target))):
        Router.load(tmp_path / "router")
