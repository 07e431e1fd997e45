"""Bundles round-trip exactly and refuse anything that is not the bundle that was saved."""

from __future__ import annotations

import json

import pytest
import torch

from hierarchy.labels import TUMOR_CLASSES
from hierarchy.models import BundleError, create, load_bundle, save_bundle
from hierarchy.models.bundle import CONFIG_FILE, WEIGHTS_FILE

CONFIG = {"classes": list(TUMOR_CLASSES), "preprocess": {"image_size": 32}, "training": {"epochs": 1}}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create("simple_cnn", len(TUMOR_CLASSES)).eval()


@pytest.fixture
def bundle(model, tmp_path):
    return save_bundle(model, tmp_path / "bundle", CONFIG)


def test_round_trip_gives_identical_logits_and_full_config(model, bundle):
    x = torch.randn(3, 1, 32, 32)
    loaded, config = load_bundle(bundle, expect={"classes": TUMOR_CLASSES})
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert sorted(p.name for p in bundle.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert config["format"] == "hierarchy-bundle" and config["format_version"] == 1
    assert config["architecture"] == "simple_cnn" and config["num_classes"] == 4 and config["in_chans"] == 1
    assert config["classes"] == list(TUMOR_CLASSES)
    assert config["preprocess"] == {"image_size": 32} and config["training"] == {"epochs": 1}
    assert config["weights_origin"] == "random initialisation" == loaded.weights_origin
    assert config["data_hashes"] == {} and "torch" in config["versions"]
    assert len(config["weights_sha256"]) == 64


def test_loading_a_bundle_does_not_warn_about_random_initialisation(bundle, caplog):
    load_bundle(bundle)
    assert "random initialisation" not in caplog.text


def test_refuses_to_overwrite_unless_asked(model, bundle):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_bundle(model, bundle, CONFIG)
    torch.nn.init.zeros_(model.get_classifier().weight)
    save_bundle(model, bundle, CONFIG, overwrite=True)
    loaded, _ = load_bundle(bundle)
    assert torch.count_nonzero(loaded.get_classifier().weight) == 0
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle"]  # no staging folders left behind


def test_tampered_weights_are_refused(bundle):
    weights = bundle / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{WEIGHTS_FILE}.*sha256"):
        load_bundle(bundle)


def test_other_format_version_is_refused(bundle):
    config_path = bundle / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["format_version"] = 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match="format_version 2"):
        load_bundle(bundle)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_missing_file_is_refused_by_name(bundle, name):
    (bundle / name).unlink()
    with pytest.raises(BundleError, match=name):
        load_bundle(bundle)


def test_expect_mismatch_is_refused(bundle):
    with pytest.raises(BundleError, match="classes"):
        load_bundle(bundle, expect={"classes": ["axial", "coronal", "sagittal"]})


def test_tensors_of_another_architecture_are_refused(bundle, tmp_path):
    other = save_bundle(create("simple_cnn", 3), tmp_path / "other", {**CONFIG, "classes": ["a", "b", "c"]})
    config = json.loads((other / CONFIG_FILE).read_text())
    (bundle / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    original = json.loads((bundle / CONFIG_FILE).read_text())
    original["weights_sha256"] = config["weights_sha256"]
    (bundle / CONFIG_FILE).write_text(json.dumps(original))
    with pytest.raises(BundleError, match="does not fit simple_cnn"):
        load_bundle(bundle)


def test_config_must_describe_the_model(model, tmp_path):
    with pytest.raises(ValueError, match="preprocess"):
        save_bundle(model, tmp_path / "b", {"classes": list(TUMOR_CLASSES)})
    with pytest.raises(ValueError, match="3 classes"):
        save_bundle(model, tmp_path / "b", {**CONFIG, "classes": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="in_chans"):
        save_bundle(model, tmp_path / "b", {**CONFIG, "in_chans": 3})
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("num_classes", "3", "num_classes"),
    ("num_classes", True, "num_classes"),
    ("in_chans", 1.5, "in_chans"),
    ("architecture", 7, "architecture"),
    ("classes", "glioma", "classes"),
    ("classes", ["a", "b"], "classes"),
    ("preprocess", [], "preprocess"),
    ("weights_sha256", None, "weights_sha256"),
])
def test_config_with_wrong_types_is_a_bundle_error_naming_the_file(bundle, key, value, message):
    path = bundle / CONFIG_FILE
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(bundle)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("key", ["architecture", "num_classes", "in_chans", "classes", "preprocess"])
def test_config_missing_a_key_is_a_bundle_error_naming_the_file(bundle, key):
    path = bundle / CONFIG_FILE
    config = json.loads(path.read_text())
    del config[key]
    path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match=key) as caught:
        load_bundle(bundle)
    assert str(path) in str(caught.value)
