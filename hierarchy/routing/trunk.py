"""Running a timm-style classifier as trunk (everything up to pre-logits) then head, so that components
whose trunks are identical (equal ``hierarchy.training.features.backbone_fingerprint``) share one forward
pass per image.

The trunk runs under :func:`hierarchy.training.runtime.resolve_runtime`'s defaults for the model's device
(channels-last, with bf16 autocast on a CPU that runs bf16 natively); ``amp="off"`` gives fp32 throughout.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hierarchy.training.runtime import Runtime, model_device, pre_logit_features, resolve_runtime


@torch.no_grad()
def trunk_features(model: nn.Module, x: torch.Tensor, *, amp: str = "auto",
                   runtime: Runtime | None = None) -> torch.Tensor:
    """Pre-logit features (what the classifier sees) of a preprocessed batch, as float32.

    ``runtime`` (default: ``resolve_runtime(amp, device=<the model's device>)``) sets the autocast dtype
    and memory format; the model's parameters are converted to that memory format (values unchanged), which
    is what makes channels-last pay on the CPU.
    """
    runtime = runtime or resolve_runtime(amp, device=model_device(model))
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
