"""Running a timm-style classifier as trunk (everything up to pre-logits) then head, so that components
whose trunks are identical (equal ``hierarchy.training.features.backbone_fingerprint``) share one forward
pass per image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def trunk_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-logit features (what the classifier sees) of a preprocessed batch."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


@torch.no_grad()
def head_proba(model: nn.Module, features: torch.Tensor) -> np.ndarray:
    """Softmax probabilities of the model's classifier applied to pre-logit features."""
    return torch.softmax(model.get_classifier()(features).double(), dim=1).cpu().numpy()
