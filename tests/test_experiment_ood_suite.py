"""The graded OOD suite on small data: corruptions, pictures, the multi-depth scorer, AURC, and the benchmark
script end to end with a tiny Router on synthetic BRISC-layout data and a small scanner_samples-shaped tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sklearn.model_selection import StratifiedKFold

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.data.valid_shift import lower_resolution, rician_noise, valid_shift
from hierarchy.experiment.model_runs import saved_fold_run
from hierarchy.experiment.ood_suite import CORRUPTIONS, choose_scorer, corrupt, synthetic_pictures
from hierarchy.fileio import sha256_file
from hierarchy.metrics.shift import risk_coverage_area
from hierarchy.routing import Router
from hierarchy.routing.knn_ood import KNNOODScorer
from hierarchy.routing.ood import FeatureOODScorer, MultiDepthOODScorer, out_of_fold_splits
from hierarchy.training import TrainConfig

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch", "preprocess": PreprocessConfig(image_size=48)}


def _fold_list(ids, path: Path) -> Path:
    """Two repeats of three folds over ``ids`` (repeat 1 the reverse of repeat 0), written to ``path``."""
    ids = list(ids)
    pd.DataFrame({"id": ids * 2, "repeat": [0] * len(ids) + [1] * len(ids),
                  "fold": [i % 3 for i in range(len(ids))] + [2 - i % 3 for i in range(len(ids))]}).to_csv(
        path, index=False)
    return path


def test_a_saved_fold_gives_the_routers_own_rows_and_bad_fold_lists_are_refused(tmp_path):
    frame = pd.DataFrame({"id": [f"train/a/{i}.jpg" for i in range(12)], "label": ["a", "b"] * 6})
    path = _fold_list(frame["id"][:9], tmp_path / "folds.csv")  # the last 3 rows: in no fold (calibration)
    run = saved_fold_run(frame, path, fold=1)
    assert run.val["id"].tolist() == ["train/a/1.jpg", "train/a/4.jpg", "train/a/7.jpg"]
    assert sorted(run.train["id"]) == sorted({f"train/a/{i}.jpg" for i in range(9)} - set(run.val["id"]))
    assert saved_fold_run(frame, path, fold=1, repeat=1).val["id"].tolist() == run.val["id"].tolist()
    assert saved_fold_run(frame, path, fold=0, repeat=1).val["id"].tolist() == ["train/a/2.jpg", "train/a/5.jpg",
                                                                                "train/a/8.jpg"]
    with pytest.raises(ValueError, match=r"folds\.csv: no fold 3 in repeat 0 \(folds: \[0, 1, 2\]\)"):
        saved_fold_run(frame, path, fold=3)
    with pytest.raises(ValueError, match=r"folds\.csv: no repeat 2"):
        saved_fold_run(frame, path, fold=0, repeat=2)
    other = _fold_list(["test/a/0.jpg", *frame["id"][:5]], tmp_path / "other.csv")
    with pytest.raises(ValueError, match=r"other\.csv: 1 of its 6 ids .* not in the data root's index.*test/a/0"):
        saved_fold_run(frame, other, fold=0)
    pd.DataFrame({"id": frame["id"], "fold": 0}).to_csv(tmp_path / "no_repeat.csv", index=False)
    with pytest.raises(ValueError, match=r"no_repeat\.csv.*repeat"):
        saved_fold_run(frame, tmp_path / "no_repeat.csv", fold=0)
    pd.DataFrame({"id": frame["id"], "repeat": 0, "fold": "x"}).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ValueError, match=r"text\.csv: column 'fold' holds non-integer"):
        saved_fold_run(frame, tmp_path / "text.csv", fold=0)
    twice = _fold_list([*frame["id"][:4], frame["id"][0]], tmp_path / "twice.csv")
    with pytest.raises(ValueError, match=r"twice\.csv: 1 id\(s\) listed twice"):
        saved_fold_run(frame, twice, fold=0)


def test_corruptions_keep_the_size_and_change_the_image():
    rng = np.random.default_rng(0)
    image = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)))
    for kind in CORRUPTIONS:
        out = corrupt(image, kind, rng)
        assert out.size == image.size and out.mode == "L"
        assert not np.array_equal(np.asarray(out), np.asarray(image)), kind
    assert np.array_equal(np.asarray(corrupt(image, "invert", rng)), 255 - np.asarray(image))
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(image, "melt", rng)


def _head(size: int = 96) -> Image.Image:
    """A synthetic head: a bright ellipse with a darker inner disc on black."""
    y, x = np.mgrid[:size, :size] / size - 0.5
    array = np.where(x ** 2 / 0.16 + y ** 2 / 0.2 < 1, 180, 0) - np.where(x ** 2 + y ** 2 < 0.02, 80, 0)
    return Image.fromarray(array.astype(np.uint8))


def test_valid_shifts_are_reproducible_and_keep_the_anatomy():
    image = _head()
    first = [np.asarray(valid_shift(image, np.random.default_rng(7), [_head(64)])) for _ in range(2)]
    assert first[0].shape == (96, 96) and np.array_equal(first[0], first[1])  # the seed decides every draw
    torch_state = torch.random.get_rng_state()
    rng = np.random.default_rng(1)
    draws = [np.asarray(valid_shift(image, rng), dtype=float) for _ in range(8)]
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # torch's global RNG is left alone
    original = np.asarray(image, dtype=float).ravel()
    correlations = [np.corrcoef(original, d.ravel())[0, 1] for d in draws]
    assert min(correlations) > 0.5  # the same head (moved a little), not inverted or scrambled
    assert sum(not np.array_equal(d, draws[0]) for d in draws) == 7
    inverted = 255.0 - original
    assert np.corrcoef(original, inverted)[0, 1] < 0  # what corrupt("invert") does, a valid shift never does


def test_lower_resolution_and_rician_noise():
    checks = Image.fromarray((np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8))  # 1-px checks
    rng = np.random.default_rng(0)
    outs = [np.asarray(lower_resolution(checks, rng), dtype=float) for _ in range(6)]
    assert all(o.shape == (256, 256) for o in outs)
    detail = [np.abs(np.diff(o, axis=0)).mean() + np.abs(np.diff(o, axis=1)).mean() for o in outs]
    assert max(detail) < 400  # the finest detail is lost along at least one axis (510 before)
    noisy = rician_noise(np.zeros((200, 200)), 0.1, rng)
    assert noisy.min() >= 0 and noisy.mean() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh


def test_grouped_folds_keep_an_image_and_its_shift_together():
    labels = np.repeat(["a", "b"], 20)
    groups = np.tile(np.arange(20), 2)
    for fit_rows, held_out in out_of_fold_splits(5, labels, groups):
        assert not set(groups[fit_rows]) & set(groups[held_out])
    with pytest.raises(ValueError, match="groups has 3 entries"):
        out_of_fold_splits(5, labels, [1, 2, 3])
    # without groups the folds are those of before (stratified, shuffled with seed 0)
    before = StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros((40, 1)), labels)
    for (_, held_a), (_, held_b) in zip(out_of_fold_splits(5, labels), before, strict=True):
        assert np.array_equal(held_a, held_b)
    scorer = FeatureOODScorer(cv=5).fit(np.random.default_rng(0).normal(size=(40, 3)), labels, groups)
    assert scorer.train_scores_.shape == (40,)


def test_the_knn_scorer_refers_what_lies_away_from_every_fitted_row():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    train = np.repeat(centres, 50, axis=0) + rng.normal(size=(200, 16)) * 0.3
    shifted = train + rng.normal(size=(200, 16)) * 0.3  # one near-duplicate of each row
    labels = np.repeat(["a", "b", "c", "d"], 50)
    x, groups = np.r_[train, shifted], np.tile(np.arange(200), 2)
    scorer = KNNOODScorer(k=5, cv=5).fit(x, [*labels, *labels], groups)
    leaky = KNNOODScorer(k=1, cv=5).fit(x, [*labels, *labels])  # no groups: a row's own shift is its neighbour
    grouped = KNNOODScorer(k=1, cv=5).fit(x, [*labels, *labels], groups)
    assert np.median(leaky.train_scores_) < np.median(grouped.train_scores_)
    fresh = np.repeat(centres, 5, axis=0) + rng.normal(size=(20, 16)) * 0.3
    far = rng.normal(size=(20, 16)) * 3
    assert scorer.score(far).min() > scorer.score(fresh).max()
    assert (scorer.score(fresh) > scorer.threshold(0.95)).mean() <= 0.2
    with pytest.raises(ValueError, match="fitted on 16"):
        scorer.score(far[:, :4])


def test_the_scorer_choice_rule():
    corruption = {"a": 0.99, "b": 0.95, "c": 0.90}
    assert choose_scorer(corruption, {"a": 0.5, "b": 0.08, "c": 0.02}) == "b"  # best AUROC among those allowed
    assert choose_scorer(corruption, {"a": 0.05, "b": 0.08, "c": 0.02}) == "a"
    assert choose_scorer(corruption, {"a": 0.5, "b": 0.3, "c": 0.4}) == "b"  # none allowed: fewest referred
    # a scorer below the corruption-AUROC floor is passed over however few valid shifts it refers
    weak = {"energy": 0.80, "maha": 0.96, "depth": 0.99}
    assert choose_scorer(weak, {"energy": 0.06, "maha": 0.12, "depth": 0.13}) == "maha"
    assert choose_scorer(weak, {"energy": 0.06, "maha": 0.12, "depth": 0.08}) == "depth"
    assert choose_scorer({"a": 0.6, "b": 0.7}, {"a": 0.05, "b": 0.2}) == "a"  # none reaches it: every scorer


def test_synthetic_pictures_are_blank_noise_and_text():
    pictures = dict(synthetic_pictures())
    assert np.asarray(pictures["blank_0"]).max() == 0 and np.asarray(pictures["blank_255"]).min() == 255
    assert np.asarray(pictures["noise_uniform_0"]).std() > 50
    assert 0 < (np.asarray(pictures["text_0"]) > 0).mean() < 0.2


def test_the_multi_depth_scorer_flags_a_shift_seen_at_one_depth_only():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 150)
    shallow, deep = rng.normal(size=(300, 6)), rng.normal(size=(300, 10)) + (labels == "a")[:, None] * 3
    scorer = MultiDepthOODScorer(cv=3).fit([shallow, deep], labels)
    assert scorer.train_scores_.shape == (300,)
    fresh = [rng.normal(size=(50, 6)), rng.normal(size=(50, 10)) + 3]
    shifted = [rng.normal(size=(50, 6)) * 4 + 5, rng.normal(size=(50, 10)) + 3]  # only the shallow depth moves
    assert scorer.score(shifted).min() > scorer.score(fresh).max()
    assert 0.02 < scorer.is_atypical(fresh, 0.95).mean() < 0.2
    assert scorer.depth_scores(shifted).shape == (50, 2)
    with pytest.raises(ValueError, match="fitted on 2"):
        scorer.score([shifted[0]])


def test_risk_coverage_area():
    correct = np.array([1, 1, 0, 1], dtype=bool)
    # most confident first: risks 0, 0, 1/3, 1/4 -> mean 0.1458
    assert risk_coverage_area(correct, np.array([0.9, 0.8, 0.1, 0.5])) == pytest.approx((0 + 0 + 0 + 0.25) / 4)
    assert risk_coverage_area(correct, np.array([0.1, 0.2, 0.9, 0.3])) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert risk_coverage_area(correct, np.ones(4)) == pytest.approx(0.25)  # one tie: the mean risk throughout


def _fake_scanner(root: Path) -> Path:
    """A scanner_samples-shaped tree made from pydicom's MR_small (three 8-slice series at 4 mm) and a
    synthetic NIfTI head, so that the benchmark runs without the shared files."""
    for folder in ("t1_mprage", "field_map_magnitude", "field_map_phase"):
        (root / "dicom" / folder).mkdir(parents=True)
        uid = generate_uid()
        for k in range(8):
            ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
            ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), k + 1
            ds.PixelSpacing, ds.ImagePositionPatient = [4, 4], [-128, -128, 4.0 * k]
            ds.save_as(root / "dicom" / folder / f"{k:05d}.dcm")
    (root / "nifti").mkdir()
    shape = (24, 28, 20)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    data = np.where((grid ** 2).sum(axis=0) < 0.8, 100.0, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([8.0, 8.0, 8.0, 1.0])), root / "nifti" / "head_T1.nii.gz")
    return root


@pytest.fixture(scope="module")
def benchmark(synthetic_root, tmp_path_factory):
    """The benchmark script as a module, a tiny saved joint Router and the arguments of a small run."""
    tmp = tmp_path_factory.mktemp("ood_benchmark")
    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    Router(mode="joint", **TINY, train=TrainConfig(epochs=1, batch_size=16), val_fraction=0.25).fit(train, val).save(
        tmp / "router")
    spec = importlib.util.spec_from_file_location(
        "benchmark_ood_suite", Path(__file__).resolve().parents[1] / "experiments" / "benchmark_ood_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--router", str(tmp / "router"), "--data", str(synthetic_root), "--scanner",
            str(_fake_scanner(tmp / "scanner")), "--limit", "8", "--train-sample", "24", "--shift-sample", "16",
            "--corrupt-sample", "4"]
    return module, argv, tmp


def test_the_benchmark_runs_every_tier_with_a_tiny_router(benchmark):
    module, argv, tmp = benchmark
    out = tmp / "suite"
    argv = [*argv, "--out", str(out)]
    assert module.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tiers"]) == {"shifted_valid", "near_ood", "far_ood"}
    assert summary["chosen_scorer"] in summary["valid_shift_referred"]
    assert set(summary["valid_shift_referred"]) == {"mahalanobis", "energy", "depth_means", "depth_stats",
                                                    "mahalanobis_shift", "depth_means_shift", "knn_shift"}
    for tier in summary["tiers"].values():
        for scorer in ("mahalanobis", "depth_stats", "knn_shift"):
            assert 0 <= tier[scorer]["auroc"] <= 1 and 0 <= tier[scorer]["referred"] <= 1
    assert {r["set"] for r in summary["plane_against_header"]} >= {"t1_mprage", "ixi_t1"}
    assert {r["route"] for r in summary["header_route"]} == {"hierarchical", "header"}
    report = (out / "report.md").read_text()
    assert "Choice of scorer" in report and "risk-coverage" in report and "Healthy brains" in report
    assert report.index("Rule: among the scorers") < report.index("## Targets")  # declared before the results
    assert summary["router_identity"]["checksum"] and "checksum" in report
    assert summary["folds"] is None and "val_fraction 0.25" in report
    # passes are cached per Router and seed: another Router's (same image ids) never reuses them
    cache = out / "work" / f"router-{summary['router_identity']['checksum'][:12]}-seed0"
    cached = {p.parent for p in (out / "work").rglob("*.npz")}
    assert cached == {cache}


@pytest.mark.slow
def test_the_benchmark_resumes_and_takes_a_saved_fold_list(benchmark, synthetic_root):
    module, argv, tmp = benchmark
    out = tmp / "suite_resume"
    argv = [*argv, "--out", str(out)]
    assert module.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    # a re-run resumes from the cached passes and gives the same numbers
    assert module.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["tiers"] == summary["tiers"]
    # with the fold list of the experiment: validation rows = one fold, fit rows = the others
    frame = index_dataset(synthetic_root)
    train_all = frame[frame["split"] == "train"]
    folds = _fold_list(train_all["id"], tmp / "folds.csv")
    assert module.main([*argv, "--folds", str(folds), "--fold", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    held = len(train_all) // 3  # ids 2, 5, 8, ...: fold 2 of repeat 0
    assert summary["folds"] == {"file": str(folds), "sha256": sha256_file(folds), "repeat": 0, "fold": 2,
                                "fit_rows": len(train_all) - held, "validation_rows": held}
    assert f"fold 2 of repeat 0 of `{folds}` (sha256 `{summary['folds']['sha256']}`)" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="folds.csv: no fold 5"):
        module.main([*argv, "--folds", str(folds), "--fold", "5"])
    with pytest.raises(SystemExit):
        module.main([*argv, "--fold", "1"])  # --fold without --folds
