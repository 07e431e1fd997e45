"""Frozen features: cache key, cache hit/miss/invalidation, linear heads on features, attaching them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.utils.data import TensorDataset

from hierarchy.data import ImageDataset, PreprocessConfig, index_dataset
from hierarchy.provenance import data_fingerprint
from hierarchy.training import attach_head, extract_features, feature_cache_key, fit_linear_head
from hierarchy.training.runtime import resolve_runtime

KEY = {"backbone": "test_efficientnet", "weights": "random-seed-0", "preprocess": "fp-a", "data": "d-1"}


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_efficientnet", num_classes=4, in_chans=1).eval()


@pytest.fixture
def images() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(10) % 4
    return TensorDataset(torch.randn(10, 1, 32, 32, generator=generator), y)


def _count_forward_features(model: torch.nn.Module, monkeypatch) -> list[int]:
    calls = []
    original = model.forward_features

    def counted(x):
        calls.append(len(x))
        return original(x)

    monkeypatch.setattr(model, "forward_features", counted)
    return calls


def test_feature_cache_key_is_order_independent_and_sensitive():
    assert feature_cache_key(a=1, b=[1, 2]) == feature_cache_key(b=[1, 2], a=1)
    assert feature_cache_key(a=1, b=[1, 2]) != feature_cache_key(a=1, b=[2, 1])
    assert len(feature_cache_key(a=1)) == 64
    with pytest.raises(TypeError, match="plain JSON"):
        feature_cache_key(a=object())


def test_extract_features_caches_and_invalidates(model, images, tmp_path, monkeypatch):
    calls = _count_forward_features(model, monkeypatch)
    first = extract_features(model, images, cache_dir=tmp_path, key=KEY, batch_size=4, progress=False)
    assert first.shape == (10, model.num_features) and first.dtype == np.float32
    assert sum(calls) == 10
    runtime = resolve_runtime(device="cpu")  # the extractor's default precision and layout
    with torch.no_grad(), runtime.autocast():
        direct = model.forward_head(model.forward_features(images.tensors[0]), pre_logits=True).float()
    np.testing.assert_allclose(first, direct.numpy(), rtol=1e-5, atol=1e-6)
    (sidecar,) = tmp_path.glob("features-*.json")
    assert json.loads(sidecar.read_text())["key"] == KEY
    assert sidecar.with_suffix(".npy").is_file()

    calls.clear()
    again = extract_features(model, images, cache_dir=tmp_path, key=dict(KEY), progress=False)
    assert calls == [] and np.array_equal(again, first)  # hit

    model.reset_classifier(3)  # the classifier plays no part in pre-logit features
    extract_features(model, images, cache_dir=tmp_path, key=KEY, progress=False)
    assert calls == []

    extract_features(model, images, cache_dir=tmp_path, key={**KEY, "preprocess": "fp-b"}, progress=False)
    assert sum(calls) == 10  # a changed preprocessing fingerprint misses
    with torch.no_grad():
        model.conv_stem.weight.mul_(2)
    calls.clear()
    extract_features(model, images, cache_dir=tmp_path, key=KEY, progress=False)
    assert sum(calls) == 10  # changed backbone weights miss as well
    assert len(list(tmp_path.glob("features-*.npy"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_cached_features_of_another_dataset_size_are_refused(model, images, tmp_path):
    extract_features(model, images, cache_dir=tmp_path, key=KEY, progress=False)
    smaller = TensorDataset(*(t[:6] for t in images.tensors))
    with pytest.raises(ValueError, match="10 rows but the dataset has 6"):
        extract_features(model, smaller, cache_dir=tmp_path, key=KEY, progress=False)


def _blobs(n: int, d: int, seed: int, shift: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, d)).astype(np.float32) * 3 + 10  # off-centre, large scale
    x[np.arange(n), y] += shift * 3
    return x, y


def test_fit_linear_head_learns_and_validates_input():
    x, y = _blobs(800, 32, 0)
    xv, yv = _blobs(400, 32, 1)
    head = fit_linear_head(x, y, 4, val=(xv, yv))
    assert isinstance(head, torch.nn.Linear) and tuple(head.weight.shape) == (4, 32)
    with torch.no_grad():
        accuracy = (head(torch.from_numpy(xv)).argmax(1).numpy() == yv).mean()
    assert accuracy > 0.85
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        fit_linear_head(x, y + 1, 4)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_head(x, y, 4)


def test_fit_linear_head_matches_sklearn_logistic_regression():
    x, y = _blobs(600, 16, 2, shift=0.7)
    weight_decay = 1e-2
    head = fit_linear_head(x, y, 4, weight_decay=weight_decay)
    scaler = StandardScaler().fit(x)
    # sklearn minimises sum(loss) + ||W||^2 / (2C); ours mean(loss) + weight_decay / 2 ||W||^2.
    reference = LogisticRegression(C=1 / (weight_decay * len(x)), max_iter=2000, tol=1e-8)
    reference.fit(scaler.transform(x), y)
    with torch.no_grad():
        ours = head(torch.from_numpy(x)).softmax(1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(scaler.transform(x)), atol=2e-3)


def test_class_balanced_head_favours_the_rare_class():
    rng = np.random.default_rng(0)
    y = np.array([0] * 450 + [1] * 50)
    x = (rng.standard_normal((500, 2)) + np.where(y[:, None] == 1, 1.0, 0.0)).astype(np.float32)
    with torch.no_grad():
        plain = fit_linear_head(x, y, 2)(torch.from_numpy(x)).argmax(1).numpy()
        balanced = fit_linear_head(x, y, 2, class_balanced=True)(torch.from_numpy(x)).argmax(1).numpy()
    assert (balanced == 1).sum() > 2 * (plain == 1).sum()
    assert (balanced[y == 1] == 1).mean() > 0.6


def test_attached_head_gives_the_same_probabilities_from_images(model, images, tmp_path):
    features = extract_features(model, images, cache_dir=tmp_path, key=KEY, progress=False)
    head = fit_linear_head(features, images.tensors[1].numpy(), 3 + 1)
    attach_head(model, head)
    with torch.no_grad():
        from_features = head(torch.from_numpy(features)).softmax(1)
        from_images = model(images.tensors[0]).softmax(1)
    torch.testing.assert_close(from_images, from_features, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot take a head with 7 inputs"):
        attach_head(model, torch.nn.Linear(7, 4))


def test_the_same_rows_in_another_order_are_not_a_stale_cache_hit(model, synthetic_root, tmp_path, monkeypatch):
    frame = index_dataset(synthetic_root).head(8)
    preprocess = PreprocessConfig(image_size=32)
    reversed_frame = frame.iloc[::-1]
    # the key callers pass: an order-free fingerprint of the rows
    key = {**KEY, "data": data_fingerprint(frame)}
    assert data_fingerprint(reversed_frame) == data_fingerprint(frame)
    first = extract_features(model, ImageDataset(frame, preprocess, target=None), cache_dir=tmp_path, key=key,
                             progress=False)
    calls = _count_forward_features(model, monkeypatch)
    second = extract_features(model, ImageDataset(reversed_frame, preprocess, target=None), cache_dir=tmp_path, key=key,
                              progress=False)
    assert sum(calls) == len(frame)  # computed, not read from the cache of the other order
    np.testing.assert_allclose(second, first[::-1], rtol=1e-5, atol=1e-6)
    again = extract_features(model, ImageDataset(reversed_frame, preprocess, target=None), cache_dir=tmp_path, key=key,
                             progress=False)
    assert sum(calls) == len(frame)  # now a hit, for this order
    np.testing.assert_array_equal(again, second)


def test_a_model_stays_differentiable_after_feature_extraction(tmp_path):
    """Extraction runs in inference mode; the model's parameters must not become inference tensors there,
    or Integrated Gradients through the same model fails afterwards."""
    import torch

    from hierarchy.models import create
    from hierarchy.training.features import _compute

    model = create("simple_cnn", 3, weights=None)
    dataset = torch.utils.data.TensorDataset(torch.zeros(4, 1, 32, 32), torch.zeros(4))
    _compute(model, dataset, batch_size=2, num_workers=0, progress=False)  # features and targets
    assert not any(p.is_inference() for p in model.parameters())
    x = torch.zeros(1, 1, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None
