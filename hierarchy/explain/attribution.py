"""Attribution maps (Grad-CAM, Integrated Gradients) for a batch of images, via captum."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from torch import nn

from hierarchy.explain.target_layers import gradcam_target_layer

METHODS: tuple[str, ...] = ("gradcam", "integrated_gradients")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _target_tensor(targets: Sequence[int] | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """Targets as a (n,) long tensor on ``device``; a wrong count raises ``ValueError``."""
    tensor = torch.as_tensor(targets, dtype=torch.long).reshape(-1).to(device)
    if tensor.numel() != n:
        raise ValueError(f"got {tensor.numel()} targets for {n} images; give one class index per image")
    return tensor


def _normalise_per_image(maps: torch.Tensor) -> np.ndarray:
    """Scale each non-negative (N, H, W) map so its maximum is 1; an all-zero map stays zero."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps / peak[:, None, None]).detach().cpu().numpy().astype(np.float32)


def _gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    cam = LayerGradCam(model, gradcam_target_layer(model))
    maps = cam.attribute(images, target=targets, relu_attributions=True)
    maps = LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return maps[:, 0]


def _integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    baseline: float | torch.Tensor | None,
    n_steps: int,
) -> torch.Tensor:
    if baseline is None:  # the darkest value of each image: its background and letterbox padding
        baseline = images.flatten(1).amin(dim=1).reshape(-1, 1, 1, 1).expand_as(images)
    elif isinstance(baseline, torch.Tensor):
        baseline = baseline.to(images.device)
    ig = IntegratedGradients(model)
    maps = ig.attribute(
        images,
        baselines=baseline,
        target=targets,
        n_steps=n_steps,
        internal_batch_size=max(len(images), n_steps),
    )
    return maps.abs().sum(dim=1)


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    *,
    method: str = "gradcam",
    baseline: float | torch.Tensor | None = None,
    n_steps: int = 32,
) -> np.ndarray:
    """Attribution maps of ``model``'s logit for ``targets`` (one class index per image).

    ``images`` is an (N, C, H, W) batch as the model sees it (normalised). Returns a float32
    (N, H, W) array at input resolution, each map scaled to [0, 1] by its own maximum.

    - ``"gradcam"``: captum ``LayerGradCam`` on :func:`gradcam_target_layer`, ReLU'd, upsampled
      bilinearly to (H, W).
    - ``"integrated_gradients"``: captum ``IntegratedGradients`` with ``n_steps`` steps, absolute
      value summed over channels. ``baseline`` defaults to each image's minimum (black, like the
      background and the letterbox padding); pass ``0.0`` for the normalised-mean image.

    The model runs in eval mode and gets its previous mode back. Unknown ``method``: ``ValueError``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; expected one of {METHODS}")
    if images.dim() != 4:
        raise ValueError(f"images must be an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    images = images.detach().to(device)
    target = _target_tensor(targets, len(images), device)
    with _eval_mode(model):
        if method == "gradcam":
            maps = _gradcam(model, images, target)
        else:
            maps = _integrated_gradients(model, images, target, baseline, n_steps)
    return _normalise_per_image(maps)
