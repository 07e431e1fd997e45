"""Test-time augmentation in Router.predict_routes: views averaged per component, OOD score included."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import PreprocessConfig
from hierarchy.predictions import probabilities
from hierarchy.routing import Router
from hierarchy.training.runtime import AMP_ENV

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch", "val_fraction": 0.25,
        # no foreground crop: padding an odd-width crop to a square shifts it, so mirror symmetry would not
        # survive decoding
        "preprocess": PreprocessConfig(image_size=48, crop_foreground=False)}


@pytest.fixture(scope="module", autouse=True)
def fp32():
    """These tests compare views that agree up to float rounding; bf16 rounding, amplified by a random tiny
    trunk, would blur that, so the module runs in fp32."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(AMP_ENV, "off")
        yield


@pytest.fixture(scope="module")
def router(frames, fp32) -> Router:
    return Router(mode="frozen", **TINY).fit(frames[0])


def _numeric(table: pd.DataFrame) -> pd.DataFrame:
    return table.select_dtypes("number")


def test_identity_alone_equals_no_tta(router, frames):
    plain = router.predict_routes(frames[1])
    identity = router.predict_routes(frames[1], tta=("identity",))
    pd.testing.assert_frame_equal(plain, identity)


def test_hflip_of_a_mirror_symmetric_image_changes_nothing(router, frames):
    images = [np.asarray(Image.open(p).convert("L").resize((48, 48))) for p in frames[1]["path"][:8]]
    symmetric = [np.maximum(image, image[:, ::-1]) for image in images]
    plain = router.predict_routes(symmetric)
    flipped = router.predict_routes(symmetric, tta=("identity", "hflip"))
    assert (plain["pred_label"] == flipped["pred_label"]).all()
    probability_columns = [c for c in plain.columns if c.startswith(("prob_", "plane_prob_"))]
    np.testing.assert_allclose(flipped[probability_columns], plain[probability_columns], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flipped["ood_score"], plain["ood_score"], rtol=1e-3)


def test_views_are_averaged_per_component(router, frames):
    images = [np.asarray(Image.open(p).convert("L").resize((48, 48))) for p in frames[1]["path"][:8]]
    mirrored = [image[:, ::-1].copy() for image in images]
    tta = router.predict_routes(images, ("flat", "soft"), tta=("identity", "hflip"))
    for route in ("flat", "soft"):
        # each component's probabilities (and so each linear route) are the mean over the two views; a mirrored
        # file decodes to the mirrored batch up to float rounding
        expected = (probabilities(router.predict(images, route), router.classes_)
                    + probabilities(router.predict(mirrored, route), router.classes_)) / 2
        np.testing.assert_allclose(probabilities(tta[tta["route"] == route], router.classes_), expected,
                                   atol=1e-3)
    expected_ood = (router.predict(images)["ood_score"].to_numpy()
                    + router.predict(mirrored)["ood_score"].to_numpy()) / 2
    np.testing.assert_allclose(tta[tta["route"] == "flat"]["ood_score"], expected_ood, rtol=1e-2)


def test_tta_probabilities_still_sum_to_one(router, frames):
    table = router.predict_routes(frames[1], tta=True)
    proba = probabilities(table, router.classes_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(table["route"]) == set(router.available_routes(frames[1]))


def test_the_routers_tta_setting_is_the_default_and_false_turns_it_off(router, frames):
    with_tta = copy.deepcopy(router).set_params(tta="identity,hflip")
    np.testing.assert_array_equal(
        probabilities(with_tta.predict(frames[1]), router.classes_),
        probabilities(router.predict(frames[1], tta=True), router.classes_))
    np.testing.assert_array_equal(
        probabilities(with_tta.predict(frames[1], tta=False), router.classes_),
        probabilities(router.predict(frames[1]), router.classes_))


def test_unknown_views_are_refused(router, frames):
    with pytest.raises(ValueError, match="unknown TTA views"):
        router.predict(frames[1], tta=("identity", "spin"))
