import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from hierarchy.routing.ood import (
    NORMALIZATIONS,
    FeatureOODScorer,
    MultiDepthOODScorer,
    energy_score,
)

D = 16


def gaussian_classes(n_per_class: int, shift: float = 0.0, seed: int = 0):
    """Three Gaussian classes in D dimensions; ``shift`` moves every point along new directions."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, D))
    centres[np.arange(3), np.arange(3)] = 4.0
    centres += 5.0  # away from the origin, so L2 normalisation keeps the structure
    labels = np.repeat(["glioma", "meningioma", "no_tumor"], n_per_class)
    features = centres[np.repeat(np.arange(3), n_per_class)] + rng.normal(size=(3 * n_per_class, D))
    features[:, 8:] += shift
    return features, labels


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_shifted_points_score_higher(normalize):
    train, labels = gaussian_classes(200)
    test_in, _ = gaussian_classes(100, seed=1)
    test_out, _ = gaussian_classes(100, shift=6.0, seed=2)
    scorer = FeatureOODScorer(normalize=normalize).fit(train, labels)
    scores_in, scores_out = scorer.score(test_in), scorer.score(test_out)
    assert scores_in.shape == (300,)
    auroc = roc_auc_score(np.r_[np.zeros(300), np.ones(300)], np.r_[scores_in, scores_out])
    assert auroc > 0.97
    # a shift along directions that separate no class is still seen
    assert np.median(scores_out) > np.quantile(scorer.train_scores_, 0.99)


def test_threshold_refers_about_one_minus_q_of_training_like_points():
    train, labels = gaussian_classes(500)
    fresh, _ = gaussian_classes(500, seed=3)
    scorer = FeatureOODScorer().fit(train, labels)
    for q in (0.8, 0.95):
        assert scorer.threshold(q) == pytest.approx(np.quantile(scorer.train_scores_, q))
        assert scorer.is_atypical(fresh, q).mean() == pytest.approx(1 - q, abs=0.04)
    assert scorer.is_atypical(train, 0.9).mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="q must be"):
        scorer.threshold(1.5)


def test_out_of_fold_reference_scores_hold_with_more_dimensions_than_rows():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    centres = 5.0 + 4.0 * np.eye(3, 64)
    train = centres[np.repeat(np.arange(3), 20)] + rng.normal(size=(60, 64))
    fresh = centres[np.repeat(np.arange(3), 100)] + rng.normal(size=(300, 64))
    in_sample = FeatureOODScorer().fit(train, labels)
    out_of_fold = FeatureOODScorer(cv=5).fit(train, labels)
    np.testing.assert_array_equal(in_sample.means_, out_of_fold.means_)
    assert in_sample.is_atypical(fresh, 0.5).mean() > 0.75  # in-sample scores are too small
    assert out_of_fold.is_atypical(fresh, 0.5).mean() == pytest.approx(0.5, abs=0.2)
    with pytest.raises(ValueError, match="cv must be"):
        FeatureOODScorer(cv=1).fit(train, labels)


def test_mahalanobis_without_labels_uses_one_gaussian():
    train, _ = gaussian_classes(100)
    scorer = FeatureOODScorer(normalize=None).fit(train)
    assert scorer.classes_ == ["all"]
    np.testing.assert_allclose(scorer.means_[0], train.mean(axis=0))


def test_fitted_only_on_what_it_is_given():
    train, labels = gaussian_classes(100)
    other, _ = gaussian_classes(100, shift=3.0, seed=5)
    scorer = FeatureOODScorer(normalize="standard").fit(train, labels)
    before = {k: v.copy() for k, v in scorer.state_arrays().items()}
    scorer.score(other)
    scorer.is_atypical(other, 0.9)
    after = scorer.state_arrays()
    assert scorer.n_train_ == 300 and after["train_scores"].shape == (300,)
    for name, array in before.items():
        np.testing.assert_array_equal(array, after[name])
    np.testing.assert_allclose(scorer.center_, train.mean(axis=0))
    refit = FeatureOODScorer(normalize="standard").fit(np.r_[train, other], np.r_[labels, labels])
    assert not np.allclose(refit.center_, scorer.center_)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_save_load_round_trip_is_exact(tmp_path, normalize):
    train, labels = gaussian_classes(50)
    test, _ = gaussian_classes(20, shift=1.0, seed=7)
    scorer = FeatureOODScorer(normalize=normalize).fit(train, labels)
    paths = scorer.save(tmp_path / "router")
    assert [p.name for p in paths] == ["ood.json", "ood.safetensors"]
    assert json.loads(paths[0].read_text())["normalize"] == normalize
    loaded = FeatureOODScorer.load(tmp_path / "router")
    np.testing.assert_array_equal(loaded.score(test), scorer.score(test))
    assert loaded.threshold(0.9) == scorer.threshold(0.9)
    assert loaded.get_params() == scorer.get_params() and loaded.classes_ == scorer.classes_
    again = FeatureOODScorer.from_dict(json.loads(json.dumps(scorer.to_dict())))
    np.testing.assert_array_equal(again.score(test), scorer.score(test))
    with pytest.raises(FileExistsError, match="overwrite"):
        scorer.save(tmp_path / "router")
    scorer.save(tmp_path / "router", overwrite=True)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ood.json"):
        FeatureOODScorer.load(tmp_path)
    train, labels = gaussian_classes(20)
    FeatureOODScorer().fit(train, labels).save(tmp_path)
    config = json.loads((tmp_path / "ood.json").read_text())
    (tmp_path / "ood.json").write_text(json.dumps({**config, "method": "knn"}))
    with pytest.raises(ValueError, match="'knn' OOD scorer"):
        FeatureOODScorer.load(tmp_path)
    (tmp_path / "ood.json").write_text("{not json")
    with pytest.raises(ValueError, match="ood.json"):
        FeatureOODScorer.load(tmp_path)


def test_multi_depth_save_load_round_trip_and_errors_name_the_file(tmp_path):
    (shallow, labels), (deep, _) = gaussian_classes(40), gaussian_classes(40, seed=3)
    scorer = MultiDepthOODScorer(cv=3).fit([shallow[:, :3], deep], labels)
    test = [gaussian_classes(10, shift=1.0, seed=7)[0][:, :3], gaussian_classes(10, seed=8)[0]]
    paths = scorer.save(tmp_path / "depth")
    assert {p.relative_to(tmp_path / "depth").as_posix() for p in paths} == {
        "depth_ood.json", "depth_ood.safetensors", "depth_0/ood.json", "depth_0/ood.safetensors",
        "depth_1/ood.json", "depth_1/ood.safetensors"}
    loaded = MultiDepthOODScorer.load(tmp_path / "depth")
    np.testing.assert_array_equal(loaded.score(test), scorer.score(test))
    assert loaded.threshold(0.9) == scorer.threshold(0.9) and loaded.get_params() == scorer.get_params()
    with pytest.raises(FileExistsError, match="overwrite"):
        scorer.save(tmp_path / "depth")
    arrays = tmp_path / "depth" / "depth_ood.safetensors"
    arrays.write_bytes(arrays.read_bytes()[:30])
    with pytest.raises(ValueError, match="depth_ood.safetensors"):
        MultiDepthOODScorer.load(tmp_path / "depth")
    scorer.save(tmp_path / "depth", overwrite=True)
    (tmp_path / "depth" / "depth_1" / "ood.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="depth_1/ood.safetensors"):
        MultiDepthOODScorer.load(tmp_path / "depth")
    config = tmp_path / "depth" / "depth_ood.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "n_depths": 3}))
    with pytest.raises(ValueError, match="depth_ood.json says 3"):
        MultiDepthOODScorer.load(tmp_path / "depth")
    config.unlink()
    with pytest.raises(FileNotFoundError, match="depth_ood.json"):
        MultiDepthOODScorer.load(tmp_path / "depth")


def test_bad_input_gets_clear_errors():
    train, labels = gaussian_classes(20)
    with pytest.raises(NotFittedError):
        FeatureOODScorer().score(train)
    with pytest.raises(ValueError, match="normalize must be"):
        FeatureOODScorer(normalize="minmax").fit(train, labels)
    with pytest.raises(ValueError, match="3 entries"):
        FeatureOODScorer().fit(train, labels[:3])
    scorer = FeatureOODScorer().fit(train, labels)
    with pytest.raises(ValueError, match="fitted on 16"):
        scorer.score(train[:, :4])
    with pytest.raises(ValueError, match="NaN|infinity"):
        scorer.score(np.full((2, D), np.nan))


def test_energy_score_matches_definition():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(energy_score(logits), -np.log(np.exp(logits).sum(axis=1)))
    np.testing.assert_allclose(energy_score(logits, T=2.0),
                               -2.0 * np.log(np.exp(logits / 2.0).sum(axis=1)))
    # a confident row has lower energy (more typical) than a flat one of smaller logits
    assert energy_score(logits)[0] < energy_score(logits)[1]
    with pytest.raises(ValueError, match="positive"):
        energy_score(logits, T=0)
