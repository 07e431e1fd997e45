"""Every registered architecture builds, follows timm's classifier API and records its starting weights."""

from __future__ import annotations

import logging

import pytest
import torch

from hierarchy.models import available, create
from hierarchy.models.simple_cnn import SimpleCNN

# inception_resnet_v2's stem needs at least ~75 px; everything else works at 64 px.
MIN_SIZE = {"inception_resnet_v2": 75}


def test_available_lists_the_required_names():
    required = {"inception_resnet_v2", "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
                "efficientnet_b0", "resnetv2_50", "resnet50", "resnet101", "densenet121", "vgg16", "vgg19",
                "simple_cnn"}
    assert required <= set(available())


@pytest.mark.parametrize("name", available())
def test_create_gives_logits_and_features_for_greyscale_images(name, caplog):
    torch.manual_seed(0)
    size = MIN_SIZE.get(name, 64)
    with caplog.at_level(logging.WARNING):
        model = create(name, 4).eval()
    assert "starts from random initialisation" in caplog.text
    assert model.weights_origin == "random initialisation"
    assert model.architecture == name and model.in_chans == 1
    x = torch.randn(1, 1, size, size)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
    assert logits.shape == (1, 4)
    assert torch.isfinite(logits).all()
    assert pooled.shape[0] == 1 and pooled.ndim == 2
    assert model.num_classes == 4 and isinstance(model.get_classifier(), torch.nn.Module)


def test_reset_classifier_changes_the_number_of_outputs():
    model = create("simple_cnn", 4, in_chans=3).eval()
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_simple_cnn_has_the_specified_layers():
    model = SimpleCNN(num_classes=4, in_chans=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 3
    assert model.num_features == 128
    assert model.head_drop.p == 0.5
    assert model.pretrained_cfg["input_size"] == (1, 224, 224)
    with torch.no_grad():
        assert model.eval().forward_head(model.forward_features(torch.randn(2, 1, 32, 32)), pre_logits=True).shape == (2, 128)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: .*resnet50.*simple_cnn"):
        create("resnet5000", 4)


def test_simple_cnn_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="simple_cnn is trained from scratch"):
        create("simple_cnn", 4, weights="imagenet")
