"""Loading never runs code the caller did not trust: a crafted file in every load path (Router folder with a
module factory or a scikit-learn head, checkpoint, feature cache, ImageNet weights, model bundle, OOD scorer)
is refused, names what would have run, and runs none of it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import timm
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset

from hierarchy.cli import main
from hierarchy.data import PreprocessConfig
from hierarchy.models import create, load_bundle, save_bundle
from hierarchy.models.bundle import BundleError
from hierarchy.routing import ModuleClassifier, Router, SklearnClassifier, UntrustedCodeError
from hierarchy.routing.ood import FeatureOODScorer
from hierarchy.routing.persistence import ROUTER_FILE, content_checksum
from hierarchy.training import TrainConfig, extract_features
from hierarchy.training.checkpoint import load_checkpoint

RAN: list[object] = []  # what a crafted file managed to run


def _record(*args: object) -> int:
    RAN.append(args)
    return 0


class Payload:
    """Unpickling it calls ``_record``: what an attacker's pickle would do with ``os.system``."""

    def __reduce__(self):
        return _record, ("unpickled",)


class HomeMadeLogistic(LogisticRegression):
    """A type skops does not trust."""


def tiny_net(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


TINY_NET = f"{tiny_net.__module__}:{tiny_net.__qualname__}"


@pytest.fixture(autouse=True)
def _clear():
    RAN.clear()
    yield
    RAN.clear()


@pytest.fixture(scope="module")
def saved(frames, tmp_path_factory) -> Path:
    router = Router(plane=SklearnClassifier(LogisticRegression(max_iter=200), "simple_cnn", weights=None),
                    experts=ModuleClassifier(tiny_net), flat="simple_cnn", mode="frozen", weights=None,
                    expert_init="scratch", preprocess=PreprocessConfig(image_size=32), val_fraction=0.25,
                    train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0), ood=False)
    return router.fit(frames[0]).save(tmp_path_factory.mktemp("trust") / "router")


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "router"))


def _rehash(folder: Path, rel: str) -> None:
    """What an attacker does after editing ``rel``: record its new sha256 and the manifest's new checksum."""
    manifest = json.loads((folder / ROUTER_FILE).read_text())
    manifest["files"][rel] = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    manifest["checksum"] = content_checksum(manifest)
    (folder / ROUTER_FILE).write_text(json.dumps(manifest))


def _name_factory(folder: Path, expert: str, factory: str) -> None:
    rel = f"experts/{expert}/config.json"
    config = json.loads((folder / rel).read_text())
    config["factory"] = factory
    (folder / rel).write_text(json.dumps(config))
    _rehash(folder, rel)


def test_a_module_factory_is_imported_only_when_trusted(saved):
    with pytest.raises(UntrustedCodeError, match=f"{TINY_NET}.*trusted="):
        Router.load(saved)
    loaded = Router.load(saved, trusted=[TINY_NET])
    assert isinstance(next(iter(loaded.experts_.values())), ModuleClassifier)


def test_a_router_json_naming_os_system_runs_nothing(copy, monkeypatch):
    monkeypatch.setattr(os, "system", _record)
    expert = json.loads((copy / ROUTER_FILE).read_text())["planes"][0]
    _name_factory(copy, expert, "os:system")
    with pytest.raises(UntrustedCodeError) as refused:
        Router.load(copy, trusted=[TINY_NET])
    assert "'os:system'" in str(refused.value) and TINY_NET not in str(refused.value)
    assert RAN == []
    with pytest.raises(UntrustedCodeError, match="os:system"):
        Router.load(copy)  # every untrusted name is listed at once
    assert RAN == []


def test_the_cli_refuses_an_untrusted_folder_and_takes_trust_flags(saved, frames, capsys):
    image = frames[1]["path"].iloc[0]
    assert main(["predict", "--model", str(saved), image]) == 2
    assert TINY_NET in capsys.readouterr().err
    assert main(["predict", "--model", str(saved), "--trust", TINY_NET, image]) == 0


def test_a_scikit_learn_head_of_an_untrusted_type_is_refused_naming_it(copy, monkeypatch):
    head = HomeMadeLogistic(max_iter=50).fit(np.random.default_rng(0).normal(size=(8, 3)), [0, 1] * 4)
    (copy / "plane" / "head.skops").write_bytes(sio.dumps(head))
    _rehash(copy, "plane/head.skops")
    name = f"{HomeMadeLogistic.__module__}.{HomeMadeLogistic.__qualname__}"
    with pytest.raises(UntrustedCodeError, match=name):
        Router.load(copy, trusted=[TINY_NET])
    assert isinstance(Router.load(copy, trusted=[TINY_NET, name]).plane_model_.head_, HomeMadeLogistic)


def test_a_checkpoint_holding_a_pickle_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"state": Payload()}, path)
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_checkpoint(path)
    assert RAN == []


def test_a_feature_cache_holding_a_pickle_is_refused(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=2, in_chans=1).eval()
    data = TensorDataset(torch.randn(2, 1, 32, 32), torch.zeros(2))
    key = {"backbone": "test_efficientnet", "data": "two"}
    extract_features(model, data, cache_dir=tmp_path, key=key, progress=False)
    (array,) = tmp_path.glob("features-*.npy")
    np.save(array, np.array([Payload(), Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        extract_features(model, data, cache_dir=tmp_path, key=key, progress=False)
    assert RAN == []


def test_imagenet_weights_holding_a_pickle_are_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv_stem.weight": Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        create("test_efficientnet", 2, weights=path)
    assert RAN == []


def test_a_bundle_naming_code_as_its_architecture_is_refused(tmp_path):
    model = create("simple_cnn", 2, weights=None)
    folder = save_bundle(model, tmp_path / "bundle", {"classes": ["a", "b"], "preprocess": {}})
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "os:system"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="os:system"):
        load_bundle(folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(BundleError):
        load_bundle(folder)
    assert RAN == []


def test_an_ood_scorer_holding_a_pickle_is_refused(tmp_path):
    scorer = FeatureOODScorer().fit(np.random.default_rng(0).normal(size=(20, 3)))
    scorer.save(tmp_path / "ood")
    (array,) = (tmp_path / "ood").glob("*.safetensors")
    array.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        FeatureOODScorer.load(tmp_path / "ood")
    assert RAN == []
