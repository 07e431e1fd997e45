"""One source of truth for settings: ``RouterConfig`` holds the defaults and checks, every entry point merges
overrides with one function and one key spelling, combinations that cannot train are refused before training,
and every profile's components build (the ``full`` one with and without InceptionResNetV2 weights)."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import replace

import pytest

from hierarchy.cli import build_parser
from hierarchy.cli.train import router_config
from hierarchy.data import PreprocessConfig
from hierarchy.data.augment import augment_preset
from hierarchy.experiment.ablation import Arm, arm_config
from hierarchy.experiment.profiles import PROFILES, ExperimentConfig, resolve_config
from hierarchy.experiment.weights_plan import plan_weights
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.provenance import run_record
from hierarchy.routing import ImageClassifier, Router, RouterConfig
from hierarchy.training import TrainConfig

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch"}


def _train_args(*flags: str):
    return build_parser().parse_args(["train", "--data", "d", "--out", "o", *flags])


def test_router_and_router_config_train_with_the_same_seed():
    direct = Router(seed=3, **TINY).build_components(("a", "b"), ("x", "y"))
    configured = Router.from_config(RouterConfig(seed=3, **TINY)).build_components(("a", "b"), ("x", "y"))
    for name, component in direct.items():
        assert component.train_config == configured[name].train_config
        assert component.train_config.seed == 3
    assert RouterConfig(seed=3).train.seed == 3
    assert Router(seed=3, train=TrainConfig(epochs=2)).config.train.seed == 3
    with pytest.raises(ValueError, match="one seed"):
        RouterConfig(seed=3, train=TrainConfig(seed=5))


def test_router_defaults_are_router_config_defaults():
    assert Router().config == RouterConfig()


def test_cli_seed_sets_every_components_seed():
    assert router_config(_train_args("--seed", "5")).train.seed == 5


def test_a_field_override_modifies_the_chosen_preset_at_every_entry_point():
    light = augment_preset("light")
    wanted = replace(light, jpeg_p=0.2)
    assert light.rotate_degrees > 0 and light.jpeg_p != 0.2
    cli = router_config(_train_args("--set", "preprocess.augment.jpeg_p=0.2")).preprocess.augment
    experiment = resolve_config("cpu", overrides={"router.preprocess.augment.jpeg_p": 0.2}).router.preprocess.augment
    arm = arm_config(RouterConfig(), Arm("jpeg", "jpeg 0.2", {"preprocess.augment.jpeg_p": 0.2})).preprocess.augment
    assert cli == experiment == arm == wanted
    robust = router_config(_train_args("--set", "preprocess.augment=robust",
                                       "--set", "preprocess.augment.jpeg_p=0.2")).preprocess.augment
    assert robust == replace(augment_preset("robust"), jpeg_p=0.2)
    assert router_config(_train_args("--set", "train.epochs=3")).train.epochs == 3


def test_unknown_keys_and_groups_given_as_values_are_refused():
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        router_config(_train_args("--set", "train.epoch=3"))
    with pytest.raises(ValueError, match="single setting"):
        router_config(_train_args("--set", "mode.kind=3"))


@pytest.mark.parametrize("settings, reason", [
    ({"experts": "tf_efficientnet_lite2", "flat": "inception_resnet_v2", "expert_init": "flat"},
     "same backbone"),
    ({"expert_init": "flat", "flat": None}, "needs a flat model"),
    ({"mode": "joint", "plane": "simple_cnn"}, "same backbone name"),
    ({"plane_epochs": 0}, "plane_epochs"),
])
def test_combinations_that_cannot_train_are_refused_before_training(settings, reason):
    with pytest.raises(ValueError, match=reason):
        RouterConfig(**settings)
    with pytest.raises(ValueError, match=reason):
        Router(**settings).fit("never-read")


@pytest.fixture(params=["present", "absent"])
def irv2_weights(request, tmp_path, monkeypatch) -> bool:
    """Offline InceptionResNetV2 weights (a stand-in file: only its presence is read) present or absent."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    if request.param == "present":
        (weights_dir / "inception_resnet_v2.safetensors").write_bytes(b"")
    monkeypatch.setenv("HIERARCHY_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return request.param == "present"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_builds_its_components(profile, irv2_weights):
    config = resolve_config(profile)
    plan = plan_weights(config)
    intended = config.router.flat
    assert plan["flat_backbone"] == (intended if irv2_weights or intended != "inception_resnet_v2"
                                     else config.flat_fallback_backbone)
    router = Router.from_config(config.router_config(1, plan["flat_backbone"]))
    components = router.build_components(TUMOR_CLASSES, PLANES)
    assert list(components) == ["flat", "plane", *PLANES]
    assert components["flat"].backbone == plan["flat_backbone"]
    for name, component in components.items():
        assert isinstance(component, ImageClassifier) and component.train_config.seed == 1
        assert component.preprocess == config.router.preprocess
        if component.init_from is not None:  # starts from the flat model's trunk: must be the same network
            assert component.init_from.backbone == component.backbone, name
    if profile == "full":
        assert components["flat"].backbone == ("inception_resnet_v2" if irv2_weights else "tf_efficientnet_lite2")
        assert {components[p].backbone for p in PLANES} == {"tf_efficientnet_lite2"}


def test_environment_fallbacks_are_recorded_in_the_run_record(monkeypatch):
    monkeypatch.setenv("HIERARCHY_AMP", "off")
    assert run_record({}, runtime="cpu")["environment"] == {"HIERARCHY_AMP": "off"}
    monkeypatch.delenv("HIERARCHY_AMP")
    assert run_record({}, runtime="cpu")["environment"] == {}
    assert "HIERARCHY_AMP" not in os.environ


def test_preprocess_presets_are_the_public_interface():
    assert PreprocessConfig(augment="robust").augment == augment_preset("robust")


def _leaf_settings(kind: type) -> list[str]:
    """Every setting of ``kind`` as a dotted key, groups of settings expanded (``train.epochs``)."""
    hints = typing.get_type_hints(kind)
    keys = []
    for f in dataclasses.fields(kind):
        group = hints[f.name]
        keys += ([f"{f.name}.{k}" for k in _leaf_settings(group)] if dataclasses.is_dataclass(group)
                 else [f.name])
    return keys


def test_the_settings_are_counted():
    # issue 23: 84 settings before (71 in RouterConfig); 8 that nothing set were removed; the study design
    # (issue 22) added 6, set by --cv/--cv-repeats or --set and tested (primary_routes, primary_subset,
    # multiplicity, calibration_fraction, cv_folds, cv_repeats), and conformal_allow_empty (--set, tested in
    # test_experiment_generalisation, named in every conformal section); issue 21 added train.evidence_weight
    # (the disease ablation's arm all_three_paste_half_mask3_evidence, tested in test_training_mask_supervision),
    # then train.neutral_weight (the arm all_three_paste_half_mask3_evidence_neutral, tested there too) and
    # head_neutral_weight (the arm all_three_paste_half_mask3_evidence_neutral_heads, test_training_head_neutrality),
    # train.sham_edits (the arm ..._8ep_sham) and train.removal_fills (the arm ..._8ep_sham_fills, which the cpu
    # profile adopted; both tested in test_data_counterfactual and test_training_mask_supervision), then
    # expert_anchor_weight (the arm ..._8ep_sham_fills_anchored, tested in test_training_expert_anchor).
    # A new setting changes these numbers: give it a profile, an ablation arm or a documented extension point
    # with a test.
    assert len(_leaf_settings(RouterConfig)) == 69
    assert len(_leaf_settings(ExperimentConfig)) == 89
    removed = {"train.max_steps_per_epoch", "train.compile", "train.persistent_workers", "train.prefetch_factor",
               "train.sync_batchnorm", "preprocess.mean", "preprocess.std", "preprocess.clahe_clip_limit"}
    assert not removed & set(_leaf_settings(RouterConfig))


def test_removed_settings_load_from_older_files_only_at_their_fixed_value():
    old = RouterConfig().to_dict()
    old["train"] |= {"compile": False, "sync_batchnorm": True, "max_steps_per_epoch": None}
    old["preprocess"] |= {"mean": 0.449, "std": 0.226}
    assert RouterConfig.from_dict(old) == RouterConfig()
    old["train"]["persistent_workers"] = True
    with pytest.raises(ValueError, match=r"TrainConfig settings \['persistent_workers'\] were removed"):
        RouterConfig.from_dict(old)
