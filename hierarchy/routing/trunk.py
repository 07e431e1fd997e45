"""Running a timm-style classifier as trunk (everything up to pre-logits) then head, so that components
whose trunks are identical (equal ``hierarchy.training.features.backbone_fingerprint``) share one forward
pass per image.

The trunk runs under :func:`hierarchy.training.runtime.resolve_runtime`'s defaults: on the GPU when there is one
(the model moves there, as in training), with channels-last and bf16 autocast (on a CPU, where it runs bf16
natively); ``amp="off"`` gives fp32 throughout.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hierarchy.training.runtime import Runtime, pre_logit_features, resolve_runtime


@torch.no_grad()
def trunk_features(model: nn.Module, x: torch.Tensor, *, amp: str = "auto",
                   runtime: Runtime | None = None) -> torch.Tensor:
    """Pre-logit features (what the classifier sees) of a preprocessed batch, as float32.

    ``runtime`` (default: ``resolve_runtime(amp)``: CUDA when available) sets the device, autocast dtype and
    memory format; the model is moved to that device and memory format (values unchanged), which is what makes
    channels-last pay on the CPU.
    """
    runtime = runtime or resolve_runtime(amp)
    runtime.prepare(model)
    return pre_logit_features(model, x, runtime)


@torch.no_grad()
def head_proba(model: nn.Module, features: torch.Tensor) -> np.ndarray:
    """Softmax probabilities (float64) of the model's classifier applied to pre-logit features.

    The classifier runs in float32 outside any autocast, so its logits are float32 whatever the trunk ran in.
    """
    with torch.autocast(features.device.type, enabled=False):
        logits = model.get_classifier()(features.float())
    return torch.softmax(logits.double(), dim=1).cpu().numpy()
