"""Router as a scikit-learn estimator: parameters, clone, RouterConfig, label sets learned from the data,
mixed components (simple_cnn, a scikit-learn head, a user nn.Module), rejection and default routes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from torch import nn

from hierarchy.data import PreprocessConfig
from hierarchy.predictions import probabilities
from hierarchy.routing import (
    ModuleClassifier,
    Router,
    RouterConfig,
    SklearnClassifier,
    UntrustedCodeError,
)
from hierarchy.training import TrainConfig

CLASSES = ("bright", "dark", "striped")
SEQUENCES = ("t1", "t2")
TINY_TRAIN = TrainConfig(epochs=2, batch_size=8, warmup_epochs=0)


class HomeMadeLogistic(LogisticRegression):
    """A user's own estimator class: not on the trusted list."""


def tiny_net(num_classes: int) -> nn.Module:
    """A user's own network: importable, so a Router holding it can be saved and loaded."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


def _image(label: str, sequence: str, rng: np.random.Generator) -> np.ndarray:
    base = {"bright": 200, "dark": 40, "striped": 120}[label] + (20 if sequence == "t2" else 0)
    image = rng.normal(base, 10, (32, 32))
    if label == "striped":
        image[::4] = 255
    if sequence == "t2":
        image[:, :8] = 0
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 3-class dataset whose parent groups are MRI sequences, read from a CSV (not BRISC's labels)."""
    root = tmp_path_factory.mktemp("custom")
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", 8), ("test", 3)):
        for label in CLASSES:
            for sequence in SEQUENCES:
                for i in range(n):
                    path = root / f"{split}_{label}_{sequence}_{i}.png"
                    Image.fromarray(_image(label, sequence, rng)).save(path)
                    rows.append({"id": path.name, "path": str(path), "label": label, "sequence": sequence,
                                 "split": split})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    frame = pd.read_csv(root / "index.csv")
    return (frame[frame["split"] == "train"].reset_index(drop=True),
            frame[frame["split"] == "test"].reset_index(drop=True))


def mixed_router() -> Router:
    return Router(plane=SklearnClassifier(LogisticRegression(max_iter=1000), "simple_cnn", weights=None),
                  experts=ModuleClassifier(tiny_net), flat="simple_cnn", mode="frozen", weights=None,
                  expert_init="scratch", parent="sequence", preprocess=PreprocessConfig(image_size=32),
                  train=TINY_TRAIN, val_fraction=0.25)


@pytest.fixture(scope="module")
def fitted(custom) -> Router:
    return mixed_router().fit(custom[0])


def test_params_round_trip_through_get_params_set_params_and_clone():
    router = mixed_router()
    params = router.get_params(deep=False)
    assert params["parent"] == "sequence" and params["mode"] == "frozen"
    assert "plane__estimator__max_iter" in router.get_params(deep=True)
    copy = clone(router)
    assert copy is not router and copy.get_params(deep=False).keys() == params.keys()
    assert copy.plane.estimator.max_iter == 1000 and copy.plane is not router.plane
    assert router.set_params(mode="finetune", plane__estimator__C=0.5) is router
    assert router.mode == "finetune" and router.plane.estimator.C == 0.5
    with pytest.raises(NotFittedError):
        copy.predict_routes(["x.png"])


def test_router_config_round_trip():
    config = RouterConfig(plane="simple_cnn", experts="simple_cnn", flat=None, mode="frozen",
                          weights=None, parent="sequence", train=TINY_TRAIN, plane_epochs=3)
    router = Router.from_config(config)
    assert router.config == config
    assert RouterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.train_config("plane").epochs == 3 and config.train_config("flat").epochs == 2
    with pytest.raises(TypeError, match="component objects"):
        _ = mixed_router().config
    with pytest.raises(ValueError, match="mode must be one of"):
        RouterConfig(mode="half")
    with pytest.raises(ValueError, match="must be the same backbone"):
        RouterConfig(mode="shared", plane="simple_cnn", experts="resnet18", flat="simple_cnn")


def test_label_sets_are_learned_from_the_training_frame(fitted):
    assert fitted.classes_ == CLASSES and fitted.planes_ == SEQUENCES
    assert set(fitted.experts_) == set(SEQUENCES)
    assert isinstance(fitted.plane_model_, SklearnClassifier)
    assert all(isinstance(e, ModuleClassifier) for e in fitted.experts_.values())


def test_mixed_router_predicts_every_route_and_learns(fitted, custom):
    test = custom[1]
    table = fitted.predict_routes(test)
    assert list(table["route"].unique()) == ["flat", "hierarchical", "soft", "ensemble", "oracle"]
    np.testing.assert_allclose(probabilities(table, CLASSES).sum(axis=1), 1.0, atol=1e-6)
    assert set(table["true_plane"]) == set(SEQUENCES)
    hard = table[table["route"] == "hierarchical"]
    assert (hard["pred_plane"].to_numpy() == test["sequence"].to_numpy()).mean() > 0.8  # sequences differ a lot
    assert fitted.predict_proba(test, "flat").shape == (len(test), len(CLASSES))


def test_mixed_router_saves_and_loads(fitted, custom, tmp_path):
    saved = fitted.save(tmp_path / "router")
    manifest = json.loads((saved / "router.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["config"]["parent"] == "sequence"
    assert manifest["config"]["plane"]["component"] == "sklearn"
    assert (saved / "plane" / "head.skops").is_file()
    factory = f"{tiny_net.__module__}:{tiny_net.__qualname__}"
    with pytest.raises(UntrustedCodeError, match=factory):
        Router.load(saved)  # the folder names code to import: only a caller who trusts it may load
    loaded = Router.load(saved, trusted=[factory])
    assert loaded.classes_ == CLASSES and loaded.planes_ == SEQUENCES and loaded.parent == "sequence"
    pd.testing.assert_frame_equal(fitted.predict_routes(custom[1]), loaded.predict_routes(custom[1]))


def test_unsafe_components_are_refused_at_save_time(fitted, tmp_path):
    local = clone(fitted.experts_["t1"]).set_params(factory=lambda n: tiny_net(n))
    local.model_ = fitted.experts_["t1"].model_
    with pytest.raises(ValueError, match="importable module"):
        local.save(tmp_path / "module")
    head = clone(fitted.plane_model_)
    head.model_ = fitted.plane_model_.model_
    head.head_ = HomeMadeLogistic()  # a type skops does not know, so loading it could run anything
    with pytest.raises(ValueError, match="cannot save .* safely"):
        head.save(tmp_path / "head")


def test_rejection_refers_more_images_as_the_threshold_rises(fitted, custom):
    table = fitted.predict(custom[1], "soft")
    top = probabilities(table, CLASSES).max(axis=1)
    previous = -1
    for threshold in (0.0, float(np.quantile(top, 0.25)), float(np.median(top)), float(top.max()) + 1e-9, 1.0):
        referred = fitted.predict(custom[1], "soft", reject_below=threshold)["referred"]
        assert referred.sum() == (top < threshold).sum() >= previous
        previous = referred.sum()
    assert previous == len(top)
    assert fitted.predict(custom[1], "soft", reject_below=0.0)["referred"].sum() == 0


def test_predict_routes_on_paths_defaults_to_the_routes_they_allow(fitted, custom):
    table = fitted.predict_routes(list(custom[1]["path"][:4]))
    assert list(table["route"].unique()) == ["flat", "hierarchical", "soft", "ensemble"]
    with pytest.raises(ValueError, match="oracle"):
        fitted.predict_routes(list(custom[1]["path"][:4]), ("oracle",))


def test_fit_names_a_missing_parent_column(custom):
    with pytest.raises(ValueError, match="'plane' column"):
        Router(plane="simple_cnn", experts="simple_cnn", flat=None, weights=None, expert_init="scratch",
               mode="frozen").fit(custom[0].drop(columns=["split"]))


def test_any_timm_name_is_accepted_by_create_and_a_typo_is_named():
    from hierarchy.models import create

    model = create("resnet10t", 3)
    assert model.num_classes == 3
    with pytest.raises(ValueError, match="resnet5O"):
        create("resnet5O", 3)
