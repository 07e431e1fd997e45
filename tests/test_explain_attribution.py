"""Grad-CAM / Integrated Gradients: target layers, output contract, and localisation on a known model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from hierarchy.explain import explain, explain_predictions, gradcam_target_layer, score_against_mask

SIZE = 64
# The square the hand-built model looks at, and one it ignores: (row0, row1, col0, col1).
SQUARE = (8, 32, 36, 60)
ELSEWHERE = (40, 60, 4, 24)


def _box_mask(box: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[box[0]:box[1], box[2]:box[3]] = True
    return mask


class _Gate(nn.Module):
    """Zero every activation outside a fixed spatial mask."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class SquareModel(nn.Module):
    """Class 0's logit is the mean (positive) intensity inside one square; nothing else matters."""

    def __init__(self, box: tuple[int, int, int, int] = SQUARE) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, kernel_size=1)
        self.features = nn.Sequential(conv, nn.ReLU(), _Gate(_box_mask(box)), nn.AvgPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 4)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.0], [0.0, 0.5]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _noise(n: int = 2, size: int = SIZE) -> torch.Tensor:
    """Bright noise everywhere, so only the model (not the image) can single out the square."""
    generator = torch.Generator().manual_seed(0)
    return 0.5 + 0.5 * torch.rand(n, 1, size, size, generator=generator)


# (architecture, expected target layer as a path into the model)
TIMM_TARGETS = [
    ("resnet10t", "layer4"),
    ("tf_efficientnet_lite0", "bn2"),
    ("resnetv2_50", "stages.3"),
    ("densenet121", "features.norm5"),
    ("mobilenetv3_small_100", "blocks.5"),
]


@pytest.mark.parametrize(("name", "expected"), TIMM_TARGETS + [("inception_resnet_v2", "conv2d_7b")])
def test_target_layer_per_architecture(name: str, expected: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=4, in_chans=1)
    layer = gradcam_target_layer(model)
    assert layer is model.get_submodule(expected)


@pytest.mark.parametrize("name", [name for name, _ in TIMM_TARGETS])
@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_maps_have_input_size_and_unit_range(name: str, method: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4, in_chans=1)
    images = torch.randn(2, 1, 48, 40)
    maps = explain(model, images, torch.tensor([0, 3]), method=method, n_steps=4)
    assert maps.shape == (2, 48, 40)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(2, -1).max(axis=1)
    assert np.all((peaks == 0.0) | np.isclose(peaks, 1.0))  # each map is scaled by its own peak


def test_trunk_attribute_and_last_conv_fallback() -> None:
    model = SquareModel()
    assert gradcam_target_layer(model) is model.features
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.AdaptiveAvgPool2d(1))
    assert gradcam_target_layer(plain) is plain[2]
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        gradcam_target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_attribution_concentrates_where_the_model_looks(method: str) -> None:
    maps = explain(SquareModel(), _noise(), [0, 0], method=method, n_steps=16)
    for attribution in maps:
        inside = score_against_mask(attribution, _box_mask(SQUARE))
        assert inside["inside_fraction"] > 0.8
        assert inside["pointing_hit"] is True
        outside = score_against_mask(attribution, _box_mask(ELSEWHERE))
        assert outside["inside_fraction"] < 0.1
        assert outside["pointing_hit"] is False


def test_model_mode_restored_and_errors() -> None:
    model = SquareModel().train()
    explain(model, _noise(1), [0])
    assert model.training
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain(model, _noise(1), [0], method="saliency")
    with pytest.raises(ValueError, match="targets"):
        explain(model, _noise(2), [0])


def test_explain_predictions_uses_the_deciding_expert() -> None:
    experts = {"axial": SquareModel(SQUARE), "flat": SquareModel(ELSEWHERE)}
    pred = pd.DataFrame({"expert": ["flat", "axial", "flat"], "pred_label": ["cyst"] * 3})
    with pytest.raises(ValueError, match="give classes"):  # names, and no BRISC fallback to look them up in
        explain_predictions(experts, _noise(3), pred)
    maps = explain_predictions(experts, _noise(3), pred, classes=("cyst", "mass", "normal"))
    looked_at = [SQUARE if e == "axial" else ELSEWHERE for e in pred["expert"]]
    for attribution, box in zip(maps, looked_at, strict=True):
        assert score_against_mask(attribution, _box_mask(box))["inside_fraction"] > 0.8
    mixture = pred.assign(expert="mixture")
    with pytest.raises(ValueError, match="mixture"):
        explain_predictions(experts, _noise(3), mixture, classes=("cyst", "mass", "normal"))
