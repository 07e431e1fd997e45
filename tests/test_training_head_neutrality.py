"""Heads that must favour no class on the tissue around a tumour: features pooled outside the tumour mask and
the neutrality penalty of the frozen heads (``RouterConfig.head_neutral_weight``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import Dataset

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.models import create
from hierarchy.routing import ImageClassifier, Router, SklearnClassifier, Task
from hierarchy.routing.fitting import fit_components
from hierarchy.training import JointModel, TrainConfig, fit_linear_head, outside_mask_features
from hierarchy.training.losses import neutrality


class _Items(Dataset):
    def __init__(self, x: torch.Tensor, masks: torch.Tensor) -> None:
        self.x, self.masks = x, masks

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.x[i], 0, self.masks[i]


def test_outside_features_give_the_heads_mean_evidence_outside_the_mask(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = create("tf_efficientnet_lite0", 4, weights=None).eval()
    x = torch.randn(3, 1, 64, 64)
    masks = torch.zeros(3, 64, 64)
    masks[0, :32, :32] = 1.0  # a tumour in the top-left quarter
    masks[2] = -1.0  # unknown
    features = outside_mask_features(backbone, _Items(x, masks), cache_dir=tmp_path, key={"test": 1})
    assert features.shape == (3, backbone.num_features)
    assert np.isfinite(features[0]).all() and np.isnan(features[1:]).all()  # empty and unknown masks: NaN
    with torch.no_grad():
        evidence = JointModel(backbone, 3, evidence=True).eval()(x[:1])[-1][0]  # (classes, h, w)
        outside = 1.0 - torch.nn.functional.adaptive_avg_pool2d(masks[:1, None], evidence.shape[-2:])[0, 0]
        expected = (evidence * outside).sum((1, 2)) / outside.sum()
        logits = backbone.get_classifier()(torch.as_tensor(features[:1]))[0]
        everywhere = evidence.mean((1, 2))
    # the extraction runs under the runtime's bf16 autocast on a CPU, hence the tolerance
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05)
    assert (logits - expected).abs().max() < 0.5 * (everywhere - expected).abs().max()
    again = outside_mask_features(backbone, _Items(x, masks), cache_dir=tmp_path, key={"test": 1})
    np.testing.assert_array_equal(again, features)  # cached


def test_neutral_rows_take_the_class_off_a_background_feature() -> None:
    """Feature 0 is the tumour, feature 1 the image's source, which also tells the class in training; the
    neutral rows (the source without a tumour) must get no class, so the head leans on the tumour."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    tumour = y + rng.normal(0, 0.6, 400)
    source = y + rng.normal(0, 0.1, 400)
    x = np.column_stack([tumour, source]).astype(np.float32)
    outside = np.column_stack([np.zeros(400), source]).astype(np.float32)
    plain = fit_linear_head(x, y, 2)
    neutral = fit_linear_head(x, y, 2, neutral=outside, neutral_weight=5.0)

    def gap(head: torch.nn.Linear) -> np.ndarray:
        w = head.weight.detach().numpy()
        return np.abs(w[1] - w[0])

    assert gap(neutral)[1] < 0.5 * gap(plain)[1]  # the source counts for less
    assert gap(neutral)[0] > gap(plain)[0]  # the tumour for more
    with torch.no_grad():
        left = [neutrality(head(torch.as_tensor(outside))).mean().item() for head in (plain, neutral)]
    assert left[1] < left[0]
    with pytest.raises(ValueError, match="neutral_weight"):
        fit_linear_head(x, y, 2, neutral=outside, neutral_weight=-1.0)
    with pytest.raises(ValueError, match="neutral rows"):
        fit_linear_head(x, y, 2, neutral=np.full((3, 2), np.nan, dtype=np.float32), neutral_weight=1.0)


@pytest.fixture(scope="module")
def split(synthetic_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = index_dataset(synthetic_root)
    return train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)


def _router(**settings) -> Router:
    return Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="joint",
                  preprocess=PreprocessConfig(image_size=32),
                  train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0), **settings)


def test_joint_router_fits_its_experts_with_outside_rows(split, tmp_path: Path) -> None:
    train, val = split
    calls: list[tuple[str, int, float]] = []
    original = ImageClassifier.fit_features

    def spy(self, model, train_frame, *args, neutral=None, neutral_weight=0.0, **kwargs):
        calls.append((self.task_.target, 0 if neutral is None else len(neutral), neutral_weight))
        return original(self, model, train_frame, *args, neutral=neutral, neutral_weight=neutral_weight, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageClassifier, "fit_features", spy)
        router = _router(head_neutral_weight=1.0).fit(train, val, out_dir=tmp_path / "run")
    tumour_rows = train[(train["label"] != "no_tumor") & train["mask_path"].notna()]
    experts = [c for c in calls if c[0] == "label"]
    assert len(experts) == len(router.planes_)
    assert sum(n for _, n, _ in experts) == len(tumour_rows)  # every plane's tumour rows, once
    assert all(weight == 1.0 for _, n, weight in experts if n)
    assert router.config.head_neutral_weight == 1.0
    assert len(router.predict_routes(val.head(3), ("hierarchical",))) == 3
    with pytest.raises(ValueError, match="mask_path"):
        _router(head_neutral_weight=1.0).fit(train.assign(mask_path=None), val)
    with pytest.raises(ValueError, match="head_neutral_weight"):
        _router(head_neutral_weight=-0.5)._settings()


def test_a_scikit_learn_head_refuses_neutral_rows(split, tmp_path: Path) -> None:
    train, val = split
    head = SklearnClassifier(LogisticRegression(max_iter=200), "simple_cnn", Task("label", ("glioma", "meningioma",
                             "no_tumor", "pituitary")), weights=None, preprocess=PreprocessConfig(image_size=32))
    with pytest.raises(ValueError, match="scikit-learn"):
        fit_components({"flat": head}, train, val, tmp_path, head_neutral_weight=1.0)
