"""Expert heads pulled towards the flat model's head (``RouterConfig.expert_anchor_weight``,
``fit_linear_head``'s ``prior``): an expert departs from the flat head only where its rows pay for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.routing import ImageClassifier, Router, RouterConfig, Task
from hierarchy.routing.fitting import fit_components
from hierarchy.training import TrainConfig, fit_linear_head


def _shortcut_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0 is the tumour; feature 1 the image's source, which tells the class better in training."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    return np.column_stack([y + rng.normal(0, 0.6, 400), y + rng.normal(0, 0.1, 400)]).astype(np.float32), y


def _prior(weights: list[list[float]], bias: list[float]) -> nn.Linear:
    head = nn.Linear(len(weights[0]), len(weights))
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weights))
        head.bias.copy_(torch.tensor(bias))
    return head


def test_a_pulled_head_keeps_the_prior_s_reading_of_the_features() -> None:
    x, y = _shortcut_data()
    prior = _prior([[-1.0, 0.0], [1.0, 0.0]], [0.5, -0.5])  # reads the tumour feature only

    def gap(head: nn.Linear) -> np.ndarray:
        w = head.weight.detach().numpy()
        return w[1] - w[0]

    plain = fit_linear_head(x, y, 2)
    pulled = fit_linear_head(x, y, 2, prior=prior, prior_weight=10.0)
    assert gap(plain)[1] > gap(plain)[0]  # left alone, the head leans on the source
    assert gap(pulled)[0] > gap(pulled)[1] > 0  # pulled, it leans on the tumour, and learns some source
    rigid = fit_linear_head(x, y, 2, prior=prior, prior_weight=1e5)
    torch.testing.assert_close(rigid.weight, prior.weight, atol=0.02, rtol=0)
    loose = fit_linear_head(x, y, 2, prior=prior, prior_weight=1e-6)
    assert gap(loose)[1] > gap(loose)[0]  # a negligible pull leaves the data's answer
    unused = fit_linear_head(x, y, 2, prior=prior, prior_weight=0.0)
    torch.testing.assert_close(unused.weight, plain.weight)
    with pytest.raises(ValueError, match="prior_weight"):
        fit_linear_head(x, y, 2, prior=prior, prior_weight=-1.0)
    with pytest.raises(ValueError, match=r"nn.Linear\(2, 2\)"):
        fit_linear_head(x, y, 2, prior=nn.Linear(3, 2), prior_weight=1.0)


def test_the_setting_is_checked() -> None:
    assert RouterConfig().expert_anchor_weight == 0.0
    with pytest.raises(ValueError, match="expert_anchor_weight must be >= 0"):
        RouterConfig(expert_anchor_weight=-1.0)
    with pytest.raises(ValueError, match="flat=None"):
        RouterConfig(flat=None, expert_anchor_weight=1.0)


@pytest.fixture(scope="module")
def split(synthetic_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = index_dataset(synthetic_root)
    return train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_joint_experts_are_pulled_towards_the_flat_head(split, tmp_path: Path) -> None:
    train, val = split
    routers = {weight: Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None, mode="joint",
                              preprocess=PreprocessConfig(image_size=32), expert_anchor_weight=weight,
                              train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)
                              ).fit(train, val, out_dir=tmp_path / f"run{weight}")
               for weight in (0.0, 1e4)}
    cosines = {}
    for weight, router in routers.items():
        flat = router.flat_model_.check_fitted().get_classifier().weight
        cosines[weight] = [_cosine(e.check_fitted().get_classifier().weight, flat) for e in router.experts_.values()]
    assert min(cosines[1e4]) > 0.99 > max(cosines[0.0])
    # both runs share one trunk (same seed): only the heads differ
    torch.testing.assert_close(routers[0.0].flat_model_.check_fitted().get_classifier().weight,
                               routers[1e4].flat_model_.check_fitted().get_classifier().weight)
    assert routers[1e4].config.expert_anchor_weight == 1e4
    assert len(routers[1e4].predict_routes(val.head(3), ("hierarchical",))) == 3


def test_an_expert_without_a_flat_head_on_its_trunk_is_refused(split, tmp_path: Path) -> None:
    train, val = split
    expert = ImageClassifier("simple_cnn", Task("label", ("glioma", "meningioma", "no_tumor", "pituitary")),
                             weights=None, preprocess=PreprocessConfig(image_size=32), mode="frozen")
    with pytest.raises(ValueError, match="expert_anchor_weight > 0 pulls the 'axial' expert"):
        fit_components({"axial": expert}, train, val, tmp_path, expert_anchor_weight=1.0)
