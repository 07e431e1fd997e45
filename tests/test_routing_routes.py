"""The route maths, on hand-made probability arrays."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchy.labels import PLANES
from hierarchy.routing.routes import (
    apply_rejection,
    choose_ensemble_weight,
    ensemble_route,
    hard_route,
    oracle_route,
    soft_route,
)


def _random_proba(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    raw = rng.random((n, k)) + 1e-3
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.fixture
def experts() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {p: _random_proba(rng, 6, 4) for p in PLANES}


def test_hard_and_soft_agree_on_one_hot_planes(experts):
    chosen = np.array([0, 1, 2, 2, 1, 0])
    one_hot = np.eye(3)[chosen]
    hard, used = hard_route(one_hot, experts, planes=PLANES)
    np.testing.assert_allclose(hard, soft_route(one_hot, experts, planes=PLANES))
    assert list(used) == [PLANES[i] for i in chosen]


def test_soft_route_is_the_plane_weighted_mixture(experts):
    plane = np.array([[0.5, 0.25, 0.25]] * 6)
    expected = 0.5 * experts["axial"] + 0.25 * experts["coronal"] + 0.25 * experts["sagittal"]
    mixed = soft_route(plane, experts, planes=PLANES)
    np.testing.assert_allclose(mixed, expected)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)


def test_hard_route_takes_the_argmax_plane(experts):
    plane = np.array([[0.2, 0.5, 0.3]] * 6)
    proba, used = hard_route(plane, experts, planes=PLANES)
    np.testing.assert_allclose(proba, experts["coronal"])
    assert set(used) == {"coronal"}


def test_oracle_uses_the_true_plane_expert(experts):
    truth = ["sagittal", "axial", "coronal", "axial", "sagittal", "coronal"]
    proba = oracle_route(truth, experts, planes=PLANES)
    for i, plane in enumerate(truth):
        np.testing.assert_allclose(proba[i], experts[plane][i])
    with pytest.raises(ValueError, match="known plane"):
        oracle_route(["axial", None, "axial", "axial", "axial", "axial"], experts, planes=PLANES)


def test_ensemble_weight_is_the_flat_share(experts):
    flat, soft = experts["axial"], experts["coronal"]
    np.testing.assert_allclose(ensemble_route(flat, soft, 1.0), flat)
    np.testing.assert_allclose(ensemble_route(flat, soft, 0.0), soft)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ensemble_route(flat, soft, 1.5)


def test_choose_ensemble_weight_prefers_the_better_model():
    y = np.array([0, 1, 2, 3] * 5)
    good = np.full((20, 4), 0.02)
    good[np.arange(20), y] = 0.94
    bad = np.full((20, 4), 0.25)
    assert choose_ensemble_weight(y, good, bad) == 1.0
    assert choose_ensemble_weight(y, bad, good) == 0.0
    assert choose_ensemble_weight(y, good, good) == 0.0  # ties go to the hierarchical side


def test_rejection_refers_low_confidence_rows():
    proba = np.array([[0.9, 0.05, 0.03, 0.02], [0.4, 0.3, 0.2, 0.1]])
    assert apply_rejection(proba, 0.5).tolist() == [False, True]
    assert apply_rejection(proba, None).tolist() == [False, False]
    with pytest.raises(ValueError, match="reject_below"):
        apply_rejection(proba, 2.0)


def test_bad_probabilities_are_refused(experts):
    with pytest.raises(ValueError, match="sum to 1"):
        soft_route(np.ones((6, 3)), experts, planes=PLANES)
    with pytest.raises(ValueError, match="columns"):
        hard_route(np.full((6, 2), 0.5), experts, planes=PLANES)
    with pytest.raises(ValueError, match="no expert"):
        soft_route(np.eye(3)[[0] * 6], {"axial": experts["axial"]}, planes=PLANES)


def test_routes_take_the_planes_they_are_given():
    rng = np.random.default_rng(1)
    experts = {p: _random_proba(rng, 4, 3) for p in ("front", "side")}
    plane = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(TypeError):
        hard_route(plane, experts)  # no BRISC default for two groups
    proba, used = hard_route(plane, experts, planes=("front", "side"))
    assert used.tolist() == ["front", "side", "front", "side"]
    np.testing.assert_allclose(proba[1], experts["side"][1])
    np.testing.assert_allclose(soft_route(plane, experts, planes=("front", "side")),
                               plane[:, :1] * experts["front"] + plane[:, 1:] * experts["side"])
