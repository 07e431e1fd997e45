"""A small from-scratch CNN that follows timm's classifier API, so it is used like every other backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SimpleCNN(nn.Module):
    """Three conv blocks (32-64-128, ReLU, max-pooling), global average pooling, dense 128, dropout, classifier.

    ``forward_head(x, pre_logits=True)`` returns the 128-d output of the dense layer, the
    features a linear head or a feature cache should use.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 1, drop_rate: float = 0.5,
                 hidden_size: int = 128) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.features = nn.Sequential(_conv_block(in_chans, 32), _conv_block(32, 64), _conv_block(64, 128))
        self.num_features = 128
        self.head_hidden_size = hidden_size
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = nn.Sequential(nn.Flatten(1), nn.Linear(self.num_features, hidden_size),
                                        nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_classifier(num_classes)
        self.pretrained_cfg: dict[str, Any] = {
            "architecture": "simple_cnn",
            "input_size": (in_chans, 224, 224),
            "num_classes": num_classes,
            "first_conv": "features.0.0",
            "classifier": "fc",
        }
        self.default_cfg = self.pretrained_cfg

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a freshly initialised one (``0`` gives an identity)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"simple_cnn supports only global_pool='avg', got {global_pool!r}")
        self.num_classes = num_classes
        self.fc = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.global_pool(x))
        if pre_logits:
            return x
        return self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
