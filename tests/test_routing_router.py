"""Router and its components on the synthetic phantom data, with tiny simple_cnn models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from hierarchy.data import ImageReadError, PreprocessConfig, train_val_split
from hierarchy.labels import PLANES
from hierarchy.metrics import apply_temperature
from hierarchy.predictions import ROUTES, label_indices, plane_probabilities, probabilities
from hierarchy.routing import (
    ImageClassifier,
    Router,
    RouterError,
    Task,
    route_throughput,
    soft_route,
)
from hierarchy.routing.persistence import content_checksum
from hierarchy.training import TrainConfig

PREPROCESS = PreprocessConfig(image_size=48)
TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn",
        "weights": None, "expert_init": "scratch", "preprocess": PREPROCESS, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def router(frames, tmp_path_factory) -> Router:
    config = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0)
    return Router(train=config, **TINY).fit(frames[0], out_dir=tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def frozen_router(frames) -> Router:
    return Router(mode="frozen", **TINY).fit(frames[0])


@pytest.fixture(scope="module")
def saved(router, tmp_path_factory) -> Path:
    return router.save(tmp_path_factory.mktemp("saved") / "router")


@pytest.fixture(scope="module")
def val_rows(frames) -> pd.DataFrame:
    """The validation rows ``Router.fit`` held out (same split and seed) and fitted the temperatures on."""
    return train_val_split(frames[0], val_fraction=TINY["val_fraction"], seed=0)[1]


def _route(table: pd.DataFrame, route: str) -> np.ndarray:
    return probabilities(table[table["route"] == route])


def test_plane_classifier_and_experts_learn(frozen_router, frames):
    test = frames[1]
    assert np.mean(frozen_router.plane_model_.predict(test) == test["plane"].to_numpy()) > 0.8  # chance 1/3
    table = frozen_router.predict(test, progress=False)
    assert np.mean(table["pred_label"] == test["label"]) > 0.5  # chance 1/4


def test_predict_routes_follows_the_prediction_schema(router, frames):
    test = frames[1]
    table = router.predict_routes(test, progress=False)
    assert list(table["route"].unique()) == list(ROUTES)
    assert len(table) == len(ROUTES) * len(test)
    np.testing.assert_allclose(probabilities(table).sum(axis=1), 1.0, atol=1e-6)
    flat = table[table["route"] == "flat"]
    assert np.isnan(plane_probabilities(flat)).all() and (flat["expert"] == "flat").all()
    hard = table[table["route"] == "hierarchical"]
    assert (hard["expert"] == hard["pred_plane"]).all()
    assert set(table.loc[table["route"] == "soft", "expert"]) == {"mixture"}
    assert (table["true_label"] == np.tile(test["label"], len(ROUTES))).all()
    assert not table["referred"].any()
    assert 0.0 <= router.ensemble_weight_ <= 1.0


def test_oracle_equals_each_expert_on_its_true_plane(router, frames):
    test = frames[1]
    oracle = router.predict(test, "oracle", progress=False)
    for plane in PLANES:
        rows = (test["plane"] == plane).to_numpy()
        expected = router.experts_[plane].predict_proba(test[rows])
        np.testing.assert_allclose(probabilities(oracle[rows]), expected, atol=1e-6)
        assert (oracle.loc[rows, "expert"] == plane).all()


def test_hard_route_uses_only_the_chosen_expert(router, frames):
    test = frames[1]
    hard = router.predict(test, progress=False)
    for plane in PLANES:
        rows = (hard["pred_plane"] == plane).to_numpy()
        if rows.any():
            np.testing.assert_allclose(probabilities(hard[rows]), router.experts_[plane].predict_proba(test[rows]),
                                       atol=1e-6)


def test_rejection_marks_low_confidence_images(router, frames):
    table = router.predict(frames[1], "soft", reject_below=1.0, progress=False)
    assert table["referred"].all()


def test_save_load_round_trip_gives_identical_predictions(router, saved, frames):
    loaded = Router.load(saved)
    before = router.predict_routes(frames[1], progress=False)
    after = loaded.predict_routes(frames[1], progress=False)
    pd.testing.assert_frame_equal(before, after)
    assert loaded.ensemble_weight_ == router.ensemble_weight_
    assert json.loads((saved / "router.json").read_text())["record"]["data"]["train"]["n_images"] > 0
    with pytest.raises(FileExistsError, match="router.json"):
        router.save(saved)


def test_load_refuses_a_missing_expert(saved, tmp_path):
    broken = shutil.copytree(saved, tmp_path / "router")
    shutil.rmtree(broken / "experts" / "coronal")
    with pytest.raises(RouterError, match="coronal"):
        Router.load(broken)


def test_load_refuses_a_wrong_class_list(saved, tmp_path):
    broken = shutil.copytree(saved, tmp_path / "router")
    manifest = json.loads((broken / "router.json").read_text())
    manifest["classes"] = list(reversed(manifest["classes"]))
    manifest["checksum"] = content_checksum(manifest)  # as if saved so: the class check must still catch it
    (broken / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="axial"):
        Router.load(broken)


def test_load_refuses_another_format_version(saved, tmp_path):
    broken = shutil.copytree(saved, tmp_path / "router")
    manifest = json.loads((broken / "router.json").read_text())
    manifest["format_version"] = 99
    (broken / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version"):
        Router.load(broken)


def test_predict_names_an_unreadable_file(router, tmp_path):
    bad = tmp_path / "broken_scan.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken_scan.jpg"):
        router.predict([bad], progress=False)


def test_predict_accepts_folders_and_in_memory_images(router, synthetic_root):
    folder = synthetic_root / "classification_task" / "test" / "glioma"
    table = router.predict(folder, progress=False)
    assert len(table) == len(list(folder.glob("*.jpg")))
    assert table["id"].str.endswith(".jpg").all()
    image = np.zeros((40, 40), np.uint8)
    table = router.predict([image, image.astype(float) / 255], progress=False)
    assert list(table["id"]) == ["input_0", "input_1"]
    with pytest.raises(ValueError, match="oracle"):
        router.predict([image], "oracle")


def test_fit_refuses_test_rows(frames):
    with pytest.raises(ValueError, match="test-split"):
        Router(**TINY).fit(pd.concat(frames))


def test_components_validate_their_input(frames):
    plane_model = ImageClassifier("simple_cnn", Task("plane", PLANES), weights=None, preprocess=PREPROCESS)
    with pytest.raises(NotFittedError):
        plane_model.predict_proba(frames[1])
    with pytest.raises(NotFittedError):
        Router(**TINY).predict(frames[1])
    odd = frames[0].copy()
    odd.loc[0, "label"] = "astrocytoma"
    flat = ImageClassifier("simple_cnn", Task("label", ("glioma", "meningioma", "pituitary", "no_tumor")),
                           weights=None, preprocess=PREPROCESS)
    with pytest.raises(ValueError, match="astrocytoma"):
        flat.fit(odd, odd)
    expert = Task("label", ("glioma", "no_tumor"), column="plane", value="axial")
    assert expert.row_mask(frames[0]).sum() == (frames[0]["plane"] == "axial").sum()


def test_frozen_mode_shares_one_trunk_pass(frozen_router, frames, monkeypatch):
    router = frozen_router
    assert len(set(router._trunks.values())) == 1
    calls = []
    for component in router.components_.values():
        original = component.model_.forward_features
        monkeypatch.setattr(component.model_, "forward_features",
                            lambda x, f=original: calls.append(len(x)) or f(x))
    table = router.predict_routes(frames[1], batch_size=len(frames[1]), progress=False)
    assert calls == [len(frames[1])]  # five heads, one trunk pass
    flat = router.flat_model_.predict_proba(frames[1])
    np.testing.assert_allclose(probabilities(table[table["route"] == "flat"]), flat, atol=1e-6)
    soft = soft_route(router.plane_model_.predict_proba(frames[1]),
                      {p: router.experts_[p].predict_proba(frames[1]) for p in PLANES}, planes=PLANES)
    np.testing.assert_allclose(probabilities(table[table["route"] == "soft"]), soft, atol=1e-6)


def test_experts_can_start_from_the_flat_model(frames, tmp_path):
    router = Router(mode="frozen", **{**TINY, "expert_init": "flat"}).fit(frames[0])
    assert all(router.experts_[p].trunk_key() == router.flat_model_.trunk_key() for p in PLANES)
    assert "trained flat model" in router.experts_["axial"].model_.weights_origin
    with pytest.raises(ValueError, match="needs a flat model"):
        Router(**{**TINY, "expert_init": "flat", "flat": None}).fit(frames[0])
    reloaded = Router.load(router.save(tmp_path / "router"))
    pd.testing.assert_frame_equal(reloaded.predict_routes(frames[1], progress=False),
                                  router.predict_routes(frames[1], progress=False))



def test_shared_mode_puts_every_head_on_the_fine_tuned_flat_trunk(frames, tmp_path):
    config = TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)
    router = Router(mode="shared", train=config, feature_views=2, **TINY).fit(frames[0], out_dir=tmp_path)
    assert len(set(router._trunks.values())) == 1
    assert (tmp_path / "training" / "flat" / "log.csv").exists()  # the flat model was fine-tuned
    assert router.record_["config"]["mode"] == "shared"
    table = router.predict_routes(frames[1], progress=False)
    np.testing.assert_allclose(probabilities(table).sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="same backbone"):
        Router(mode="shared", **{**TINY, "plane": "resnet50"}).fit(frames[0])


def test_predict_under_a_perturbation(frozen_router, frames):
    clean = frozen_router.predict(frames[1], "flat", progress=False)
    jpeg = frozen_router.predict(frames[1], "flat", progress=False, perturbation="jpeg_q75")
    assert len(jpeg) == len(clean) and not np.allclose(probabilities(jpeg), probabilities(clean))
    with pytest.raises(ValueError, match="blur"):
        frozen_router.predict(frames[1], "flat", progress=False, perturbation="blur")


def test_decoding_in_worker_processes_changes_nothing(frozen_router, frames, tmp_path):
    rows = frames[1].head(40)
    serial = frozen_router.predict_routes(rows, progress=False, perturbation="gamma_0.8", num_workers=0)
    parallel = frozen_router.predict_routes(rows, progress=False, perturbation="gamma_0.8", num_workers=2,
                                            batch_size=8)
    pd.testing.assert_frame_equal(serial, parallel)
    bad = tmp_path / "broken_scan.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [*rows["path"].head(9), bad, *rows["path"].tail(9)]
    with pytest.raises(ImageReadError, match="broken_scan.jpg"):
        frozen_router.predict(paths, progress=False, num_workers=2, batch_size=4)
    table = frozen_router.predict(paths, progress=False, num_workers=2, batch_size=4, skip_bad=True)
    assert len(table) == 18 and not table["id"].str.contains("broken_scan").any()
    assert table.attrs["skipped"] == frozen_router.predict(paths, progress=False, skip_bad=True).attrs["skipped"]
    assert [s["id"] for s in table.attrs["skipped"]] == ["broken_scan.jpg"]


def test_decoding_workers_only_beside_an_accelerator(monkeypatch):
    import torch

    from hierarchy.routing.inputs import decode_workers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert decode_workers(8) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert decode_workers(8) == 8


CALIBRATED = ("flat", "hierarchical", "soft", "ensemble")


def test_fit_gives_every_route_a_temperature(router):
    assert set(router.temperatures_) == set(CALIBRATED)
    assert all(isinstance(t, float) and np.isfinite(t) and t > 0 for t in router.temperatures_.values())
    assert router.record_["config"]["temperatures"] == router.temperatures_


def test_calibrated_output_keeps_the_argmax(router, frames):
    plain = router.predict_routes(frames[1], progress=False)
    calibrated = router.predict_routes(frames[1], progress=False, calibrated=True)
    pd.testing.assert_series_equal(plain["pred_label"], calibrated["pred_label"])
    np.testing.assert_array_equal(probabilities(plain).argmax(axis=1), probabilities(calibrated).argmax(axis=1))
    np.testing.assert_allclose(probabilities(calibrated).sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(_route(calibrated, "oracle"),  # the oracle borrows the hierarchical temperature
                               apply_temperature(_route(plain, "oracle"), router.temperatures_["hierarchical"]))


def test_temperature_scaling_lowers_validation_nll(router, val_rows):
    y_val = label_indices(val_rows["label"], router.classes_)
    plain = router.predict_routes(val_rows, CALIBRATED, progress=False)
    calibrated = router.predict_routes(val_rows, CALIBRATED, progress=False, calibrated=True)

    def nll(proba):
        return -np.mean(np.log(np.maximum(proba[np.arange(len(y_val)), y_val], 1e-300)))

    lowered = 0
    for route in CALIBRATED:
        before, after = nll(_route(plain, route)), nll(_route(calibrated, route))
        assert after <= before + 1e-9, route
        lowered += after < before - 1e-6
    assert lowered >= 1  # a temperature of exactly 1 everywhere would mean calibration did nothing


def test_save_load_keeps_temperatures(router, saved, frames):
    loaded = Router.load(saved)
    assert loaded.temperatures_ == router.temperatures_
    pd.testing.assert_frame_equal(router.predict_routes(frames[1], progress=False, calibrated=True),
                                  loaded.predict_routes(frames[1], progress=False, calibrated=True))


def test_calibrate_refuses_test_rows(router, frames):
    with pytest.raises(ValueError, match="test-split"):
        router.calibrate(pd.concat(frames))


def test_calibrated_output_needs_temperatures(saved, frames, tmp_path):
    older = shutil.copytree(saved, tmp_path / "router")  # a router saved without temperatures
    manifest = json.loads((older / "router.json").read_text())
    manifest["temperatures"] = {}
    manifest["checksum"] = content_checksum(manifest)
    (older / "router.json").write_text(json.dumps(manifest))
    router = Router.load(older)
    assert router.temperatures_ == {}
    assert len(router.predict(frames[1], progress=False)) == len(frames[1])
    with pytest.raises(ValueError, match="no temperatures"):
        router.predict(frames[1], progress=False, calibrated=True)


def test_images_without_a_plane_train_the_flat_model_only(frames):
    train = frames[0].copy()
    unlabelled = train.index[::5]
    train.loc[unlabelled, "plane"] = None
    router = Router(mode="frozen", **TINY).fit(train)
    n_flat = router.flat_model_.trained_on_["train"]["n_images"] + router.flat_model_.trained_on_["val"]["n_images"]
    n_plane = router.plane_model_.trained_on_["train"]["n_images"] + router.plane_model_.trained_on_["val"]["n_images"]
    n_experts = sum(e.trained_on_["train"]["n_images"] + e.trained_on_["val"]["n_images"]
                    for e in router.experts_.values())
    assert n_flat == len(train) and n_plane == n_experts == len(train) - len(unlabelled)


def test_route_throughput_of_a_folder_counts_its_images(frozen_router, synthetic_root, monkeypatch):
    folder = synthetic_root / "classification_task" / "test" / "glioma"
    n_images = len(list(folder.glob("*.jpg")))
    clock = iter(range(0, 1000, 2))  # every timed run takes 2 "seconds"
    monkeypatch.setattr("hierarchy.routing.throughput.time", SimpleNamespace(perf_counter=lambda: next(clock)))
    speeds = route_throughput(frozen_router, str(folder), ("flat",), repeats=1, warmup=0)
    assert speeds["flat"] == pytest.approx(n_images / 2)  # images per second, not characters of the path
