"""The refit control of joint mode: one linear head over every row on the flat trunk, fitted like the experts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hierarchy.data import PreprocessConfig
from hierarchy.experiment.refit_control import (
    CONTROL,
    refit_comparison,
    refit_flat_head,
    refit_markdown,
)
from hierarchy.routing import Router
from hierarchy.training import TrainConfig

pytestmark = pytest.mark.slow  # fits Routers and the refit control

JOINT = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None, "mode": "joint",
         "ood": False, "feature_views": 2, "preprocess": PreprocessConfig(image_size=32),
         "train": TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)}


@pytest.fixture(scope="module")
def fitted(split_frames, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("refit")
    router = Router(**JOINT).fit(split_frames[0], split_frames[1], out_dir=work)
    control = refit_flat_head(router, split_frames[0], split_frames[1], work=work / "training")
    return {"router": router, "control": control, "work": work}


def test_the_control_is_a_linear_head_over_every_row_on_the_flat_trunk(fitted):
    router, control = fitted["router"], fitted["control"]
    assert control.mode == "frozen" and control.task_.column is None
    assert control.classes == router.classes_
    assert control.trunk_key() == router.flat_model_.trunk_key() == router.experts_["axial"].trunk_key()
    flat_head = router.flat_model_.model_.get_classifier()
    assert not torch.equal(control.model_.get_classifier().weight, flat_head.weight)
    # the control read the Router's feature cache instead of extracting a second time
    assert len(list((fitted["work"] / "training" / "features").glob("*.npy"))) == 1 + JOINT["feature_views"]


def test_the_control_is_pulled_towards_the_flat_head_when_the_experts_are(fitted, split_frames):
    """Fitted like the experts: with expert_anchor_weight the control too departs from the flat head only where
    the rows pay for it."""
    router = fitted["router"]
    flat_head = router.flat_model_.model_.get_classifier().weight.flatten()
    router.set_params(expert_anchor_weight=1e4)
    try:
        anchored = refit_flat_head(router, split_frames[0], split_frames[1], work=fitted["work"] / "training")
    finally:
        router.set_params(expert_anchor_weight=0.0)

    def cosine(control) -> float:
        return torch.nn.functional.cosine_similarity(control.model_.get_classifier().weight.flatten(), flat_head,
                                                     dim=0).item()

    assert cosine(anchored) > 0.99 > cosine(fitted["control"])


def test_the_control_refuses_rows_the_router_was_not_fitted_on(fitted, split_frames):
    with pytest.raises(ValueError, match="not the rows the Router was fitted on"):
        refit_flat_head(fitted["router"], split_frames[0].iloc[:-1], split_frames[1])


def test_the_control_needs_experts_on_the_flat_trunk(split_frames):
    with pytest.raises(ValueError, match="'joint' or 'shared' mode"):
        refit_flat_head(Router(**{**JOINT, "mode": "finetune"}), split_frames[0], split_frames[1])


def test_the_comparison_counts_each_route_on_the_same_images(fitted, split_frames):
    router, control, test = fitted["router"], fitted["control"], split_frames[2]
    result = refit_comparison(router, control, test)
    table = router.predict_routes(test, ("flat", "hierarchical"))
    truth = test["label"].to_numpy()
    for route in ("flat", "hierarchical"):
        expected = np.mean(table.loc[table["route"] == route, "pred_label"].to_numpy() == truth)
        assert result["routes"][route]["accuracy"]["value"] == pytest.approx(expected)
    refit = np.asarray(router.classes_)[control.predict_proba(test).argmax(axis=1)]
    assert result["routes"][CONTROL]["accuracy"]["value"] == pytest.approx(np.mean(refit == truth))
    first = result["paired"][0]
    assert (first["first"], first["second"]) == (CONTROL, "flat")
    flat = table.loc[table["route"] == "flat", "pred_label"].to_numpy()
    assert first["b"] == int(np.sum((refit == truth) & (flat != truth)))
    normal = truth == "no_tumor"
    assert result["routes"][CONTROL]["no_tumor_recall"]["value"] == pytest.approx(np.mean(refit[normal] == "no_tumor"))
    text = refit_markdown({"seed 0": {"test": result}}, title="Refit control", setup="setup", command="python x.py")
    assert f"## test ({len(test)} images)" in text and "| seed 0 |" in text and "Across 1 model(s)" in text
