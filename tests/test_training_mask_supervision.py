"""Mask supervision (a segmentation loss on the shared trunk) and counterfactual training in joint mode."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.models import create
from hierarchy.routing import ImageClassifier, Router
from hierarchy.training import JointModel, TrainConfig
from hierarchy.training.trainer import mask_loss, outside_evidence_loss, outside_neutrality_loss


def test_mask_loss_is_the_bce_against_area_averaged_masks_and_skips_unknown_masks() -> None:
    logits = torch.zeros(3, 1, 2, 2)
    masks = torch.zeros(3, 8, 8)
    masks[0] = 1.0
    masks[1, :4, :4] = 1.0  # one quarter: the top-left cell is all tumour
    masks[2] = -1.0  # unknown
    # zero logits: BCE is log 2 whatever the target
    assert mask_loss(logits, masks).item() == pytest.approx(math.log(2))
    confident = torch.full((3, 1, 2, 2), -20.0)
    confident[0] = 20.0
    confident[1, 0, 0, 0] = 20.0
    confident[2] = 123.0  # an unknown mask's logits do not count
    assert mask_loss(confident, masks).item() == pytest.approx(0.0, abs=1e-6)
    only_unknown = mask_loss(logits[2:], masks[2:])
    assert only_unknown.item() == 0.0 and only_unknown.requires_grad is False


def test_joint_model_with_segmentation_returns_a_mask_logit_map() -> None:
    backbone = create("simple_cnn", 4, weights=None)
    model = JointModel(backbone, 3, segmentation=True)
    logits, aux, seg = model(torch.zeros(2, 1, 32, 32))
    assert logits.shape == (2, 4) and aux.shape == (2, 3)
    assert seg.shape[:2] == (2, 1) and seg.shape[-1] >= 1
    assert len(JointModel(backbone, 3)(torch.zeros(2, 1, 32, 32))) == 2


def test_outside_evidence_is_the_true_class_share_outside_the_mask_over_tumour_images() -> None:
    evidence = torch.zeros(4, 3, 2, 2)
    labels = torch.tensor([0, 1, 2, 2])
    masks = torch.zeros(4, 8, 8)
    masks[0, :4, :4] = 1.0  # tumour in the top-left cell
    evidence[0, 0, 0, 0] = 2.0  # all of class 0's positive evidence inside
    evidence[0, 1, 1, 1] = 9.0  # another class's evidence does not count
    masks[1, :4, :4] = 1.0
    evidence[1, 1, 0, 0] = 1.0
    evidence[1, 1, 1, 1] = 3.0  # three quarters of class 1's evidence outside
    evidence[1, 1, 0, 1] = -5.0  # negative evidence does not count
    evidence[2, 2] = 7.0  # a no-tumour image (empty mask): left out
    masks[3] = -1.0  # unknown mask: left out
    evidence[3, 2] = 7.0
    assert outside_evidence_loss(evidence, labels, masks).item() == pytest.approx((0.0 + 0.75) / 2)
    none = outside_evidence_loss(evidence[2:], labels[2:], masks[2:])
    assert none.item() == 0.0


def test_outside_neutrality_is_zero_for_even_evidence_outside_the_mask_and_ignores_the_inside() -> None:
    evidence = torch.zeros(3, 4, 2, 2)
    masks = torch.zeros(3, 8, 8)
    masks[0, :4, :4] = 1.0  # tumour in the top-left cell
    evidence[0, 2, 0, 0] = 30.0  # any evidence inside the mask is free
    evidence[0, :, 1, 1] = 5.0  # the same evidence for every class outside: neutral
    evidence[1, 3] = 8.0  # a no-tumour image (empty mask): left out
    masks[2] = -1.0  # unknown mask: left out
    evidence[2, 1] = 8.0
    assert outside_neutrality_loss(evidence, masks).item() == pytest.approx(0.0, abs=1e-6)
    # one outside cell of three favours class 1 by log(3) over the others' 0: softmax (3/6, 1/6, 1/6, 1/6)
    evidence[0, 1, 0, 1] = math.log(3.0)
    expected = (-(math.log(3 / 6) + 3 * math.log(1 / 6)) / 4 - math.log(4)) / 3
    assert outside_neutrality_loss(evidence, masks).item() == pytest.approx(expected, rel=1e-5)
    # a half-tumour cell counts half as an outside position
    masks[0, :4, 4:6] = 1.0
    assert outside_neutrality_loss(evidence, masks).item() == pytest.approx(0.5 * (3 * expected) / 2.5, rel=1e-5)
    assert outside_neutrality_loss(evidence[1:], masks[1:]).item() == 0.0


def test_joint_model_evidence_maps_average_to_the_logits_of_a_pooled_linear_head() -> None:
    backbone = create("tf_efficientnet_lite0", 4, weights=None)
    model = JointModel(backbone, 3, segmentation=True, evidence=True).eval()
    assert model.output_names == ("logits", "aux_logits", "seg_logits", "evidence")
    with torch.no_grad():
        logits, aux, seg, evidence = model(torch.randn(2, 1, 64, 64))
    assert evidence.shape == (2, 4, *seg.shape[-2:])
    torch.testing.assert_close(evidence.mean((2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_train_config_checks_the_new_switches() -> None:
    with pytest.raises(ValueError, match="mask_weight"):
        TrainConfig(mask_weight=-1.0)
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(mask_weight=1.0, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="paste_p"):
        TrainConfig(paste_p=2.0)
    with pytest.raises(ValueError, match="evidence_weight"):
        TrainConfig(evidence_weight=-0.1)
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(evidence_weight=1.0, cutmix_alpha=1.0)
    assert TrainConfig(evidence_weight=0.5).needs_masks and not TrainConfig().needs_masks
    with pytest.raises(ValueError, match="sham_edits"):
        TrainConfig(sham_edits=True, style_swap_p=0.5)
    assert TrainConfig(removal_p=0.25, sham_edits=True).counterfactual_switches == {
        "paste_p": 0.0, "removal_p": 0.25, "style_swap_p": 0.0, "sham_edits": True}
    assert "sham_edits" not in TrainConfig(removal_p=0.25).counterfactual_switches  # earlier caches keep their keys
    fills = TrainConfig.from_dict({"removal_p": 0.25, "removal_fills": ["biharmonic", "diffusion"]})
    assert fills.counterfactual_switches["removal_fills"] == ("biharmonic", "diffusion")
    assert "removal_fills" not in TrainConfig(removal_p=0.25).counterfactual_switches
    with pytest.raises(ValueError, match="removal_fills"):
        TrainConfig(removal_p=0.25, removal_fills=("telea",))
    with pytest.raises(ValueError, match="removal_fills"):
        TrainConfig(removal_p=0.25, removal_fills=("diffusion", "diffusion"))
    with pytest.raises(ValueError, match="removal_p"):
        TrainConfig(removal_fills=("diffusion",))
    with pytest.raises(ValueError, match="neutral_weight"):
        TrainConfig(neutral_weight=-1.0)
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(neutral_weight=1.0, mixup_alpha=0.2)
    assert TrainConfig(neutral_weight=0.5).needs_masks and TrainConfig(neutral_weight=0.5).needs_evidence
    assert not TrainConfig(mask_weight=1.0).needs_evidence
    assert TrainConfig(style_swap_p=0.5).counterfactual and not TrainConfig().counterfactual


@pytest.fixture(scope="module")
def split(synthetic_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    return train, val


def _router(**train: float) -> Router:
    return Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="joint",
                  preprocess=PreprocessConfig(image_size=32),
                  train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, **train))


def test_joint_router_trains_with_mask_supervision_and_counterfactuals(split, tmp_path: Path) -> None:
    train, val = split
    assert train["mask_path"].notna().any()
    router = _router(mask_weight=1.0, evidence_weight=1.0, neutral_weight=1.0, paste_p=0.5, removal_p=0.5,
                     style_swap_p=0.5)
    router.fit(train, val, out_dir=tmp_path / "run")
    checkpoint = torch.load(next((tmp_path / "run").rglob("checkpoint_last.pt")), weights_only=True)
    assert any(key.startswith("seg_head.") for key in checkpoint["model"])
    assert np.isfinite(pd.read_csv(next((tmp_path / "run").rglob("log.csv")))["train_loss"]).all()
    table = router.predict_routes(val.head(4), ("flat", "hierarchical"))
    assert len(table) == 8


def test_mask_weight_is_refused_without_masks_or_outside_joint_mode(split) -> None:
    train, val = split
    with pytest.raises(ValueError, match="mask_path"):
        _router(mask_weight=1.0).fit(train.assign(mask_path=None), val)
    with pytest.raises(ValueError, match="mask_path"):
        _router(evidence_weight=1.0).fit(train.assign(mask_path=None), val)
    with pytest.raises(ValueError, match="mask_path"):
        _router(neutral_weight=1.0).fit(train.assign(mask_path=None), val)
    finetune = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="finetune",
                      preprocess=PreprocessConfig(image_size=32),
                      train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, mask_weight=1.0))
    with pytest.raises(ValueError, match="mode='joint'"):
        finetune.fit(train, val)


def test_counterfactual_feature_views_give_the_heads_the_views_labels(split, tmp_path: Path) -> None:
    """With feature_views=2 and counterfactuals, the experts' second view holds pasted-in tumours labelled with
    their class and removed tumours labelled no_tumor, so the heads cannot relearn the image source."""
    train, val = split
    seen: list[pd.DataFrame] = []
    router = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="joint",
                    feature_views=2, preprocess=PreprocessConfig(image_size=32),
                    train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, paste_p=1.0, removal_p=1.0))
    original = ImageClassifier.fit_features

    def spy(self, model, train_frame, *args, **kwargs):
        seen.append(train_frame)
        return original(self, model, train_frame, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageClassifier, "fit_features", spy)
        router.fit(train, val, out_dir=tmp_path / "run")
    views = seen[0]
    assert len(views) == 2 * len(train)
    clean, augmented = views.iloc[:len(train)], views.iloc[len(train):]
    assert (clean["label"].to_numpy() == train["label"].to_numpy()).all()
    was_normal = (train["label"] == "no_tumor").to_numpy()
    had_mask = train["mask_path"].notna().to_numpy() & ~was_normal
    assert (augmented["label"].to_numpy()[had_mask] == "no_tumor").all()  # every tumour removed
    assert (augmented["label"].to_numpy()[was_normal] != "no_tumor").mean() > 0.5  # most normals got a tumour
