"""Which layer Grad-CAM should look at, for any timm-style classifier or our small CNNs."""

from __future__ import annotations

import logging

from timm.models.efficientnet import EfficientNet
from torch import nn

log = logging.getLogger(__name__)

# Families whose last ``feature_info`` entry is not the feature map the head pools: timm
# EfficientNets run ``conv_head`` + ``bn2`` (with its activation) after the last block.
_OVERRIDES: tuple[tuple[type[nn.Module], str], ...] = ((EfficientNet, "bn2"),)
# Attributes holding the convolutional trunk of models without ``feature_info`` (our simple CNN).
_TRUNK_ATTRIBUTES: tuple[str, ...] = ("features", "blocks")


def _feature_info_module(model: nn.Module) -> str | None:
    """Name of the deepest module timm's ``feature_info`` lists, or None without one."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    if hasattr(info, "module_name"):  # timm FeatureInfo object (features_only models)
        return info.module_name(-1)
    last = info[-1]
    return last.get("module") if isinstance(last, dict) else None


def gradcam_target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional feature block before global pooling, as Grad-CAM's target layer.

    Order of preference: an explicit per-family override (EfficientNet: ``bn2``); the last
    entry of timm's ``feature_info`` (ResNet ``layer4``, ResNetV2 ``stages.3``, DenseNet
    ``features.norm5``, VGG ``features.<n>``, InceptionResNetV2 ``conv2d_7b`` ...); a ``features``
    or ``blocks`` trunk (our simple CNN); else the last ``nn.Conv2d`` (logged at debug level).
    Raises ``ValueError`` when the model has no convolution at all.
    """
    for family, attribute in _OVERRIDES:
        if isinstance(model, family):
            return model.get_submodule(attribute)
    name = _feature_info_module(model)
    if name:
        return model.get_submodule(name)
    for attribute in _TRUNK_ATTRIBUTES:
        trunk = getattr(model, attribute, None)
        if isinstance(trunk, nn.Module):
            return trunk
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer to use as a Grad-CAM target")
    log.debug("no known target layer for %s; using its last Conv2d %r", type(model).__name__, convs[-1][0])
    return convs[-1][1]
