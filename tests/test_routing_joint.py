"""Router mode 'joint': one backbone trained on the tumour label and the parent group at once; its tumour head
is the flat model, its group head the parent-group classifier, experts on its frozen trunk: one trunk pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hierarchy.data import PreprocessConfig
from hierarchy.predictions import ROUTES, probabilities
from hierarchy.routing import ImageClassifier, Router, RouterConfig
from hierarchy.routing import components as components_module
from hierarchy.training import TrainConfig

JOINT = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
         "mode": "joint", "preprocess": PreprocessConfig(image_size=32),
         "train": TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, aux_weight=0.5)}


@pytest.fixture(scope="module")
def frames_missing_planes(split_frames) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training rows (four without a plane), validation rows and test rows."""
    train, val, test = split_frames
    train = train.copy()
    train.loc[train.index[:4], "plane"] = None
    return train, val, test


@pytest.fixture(scope="module")
def fitted(frames_missing_planes) -> dict:
    seen: dict = {}
    original = components_module.train_joint

    def spy(model, train_data, val_data, config, out_dir, **kwargs):
        seen.update(aux=train_data.aux_targets.copy(), aux_weight=config.aux_weight, **kwargs)
        seen["calls"] = seen.get("calls", 0) + 1
        return original(model, train_data, val_data, config, out_dir, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components_module, "train_joint", spy)
        router = Router(**JOINT).fit(frames_missing_planes[0], frames_missing_planes[1])
    return {"router": router, **seen}


@pytest.fixture(scope="module")
def router(fitted) -> Router:
    return fitted["router"]


def test_one_backbone_is_trained_jointly_on_label_and_plane(fitted, frames_missing_planes):
    train = frames_missing_planes[0]
    assert fitted["calls"] == 1 and fitted["aux_classes"] == 3 and fitted["aux_weight"] == 0.5
    # rows without a plane contribute the tumour loss only (auxiliary target -1)
    assert (fitted["aux"] == -1).sum() == train["plane"].isna().sum() == 4
    assert len(fitted["aux"]) == len(train)


def test_every_component_sits_on_the_one_jointly_trained_trunk(router):
    assert router.flat_model_.mode == "joint" and router.plane_model_.mode == "aux"
    assert {e.mode for e in router.experts_.values()} == {"frozen"}
    assert len({c.trunk_key() for c in router.components_.values()}) == 1
    assert router.ood_trunk_ == "shared"
    head = router.plane_model_.model_.get_classifier()
    assert torch.equal(head.weight, router.flat_model_.aux_head_.weight)
    assert torch.equal(head.bias, router.flat_model_.aux_head_.bias)


def test_every_route_costs_one_trunk_pass(router, frames_missing_planes, monkeypatch):
    test = frames_missing_planes[2]
    calls = []
    original = ImageClassifier.features_from_batch

    def count(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(ImageClassifier, "features_from_batch", count)
    table = router.predict_routes(test, batch_size=16)
    assert set(table["route"]) == set(ROUTES)
    assert sum(calls) == len(test) and len(calls) == -(-len(test) // 16)  # one pass per batch, all routes
    np.testing.assert_allclose(probabilities(table, router.classes_).sum(axis=1), 1.0, atol=1e-6)
    assert table["ood_score"].notna().all()


def test_joint_router_saves_and_loads(router, frames_missing_planes, tmp_path):
    router.save(tmp_path / "router")
    loaded = Router.load(tmp_path / "router")
    assert loaded.mode == "joint" and loaded.config.train.aux_weight == 0.5
    before, after = router.predict_routes(frames_missing_planes[2]), loaded.predict_routes(frames_missing_planes[2])
    pd.testing.assert_frame_equal(before, after)
    assert len({c.trunk_key() for c in loaded.components_.values()}) == 1


def test_joint_mode_needs_one_backbone_name():
    with pytest.raises(ValueError, match="mode='joint' puts every head on the flat model's trunk"):
        RouterConfig(mode="joint", plane="simple_cnn", experts="simple_cnn", flat="resnet18")
    with pytest.raises(ValueError, match="mode='joint' puts every head"):
        Router(**{**JOINT, "flat": None}).fit(pd.DataFrame({"path": ["a"], "label": ["x"], "plane": ["axial"]}))
