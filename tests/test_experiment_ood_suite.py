"""The graded OOD suite on small data: corruptions, pictures, the multi-depth scorer, AURC, and the benchmark
script end to end with a tiny Router on synthetic BRISC-layout data and a small scanner_samples-shaped tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hierarchy.data import PreprocessConfig, index_dataset, train_val_split
from hierarchy.experiment.ood_suite import CORRUPTIONS, corrupt, synthetic_pictures
from hierarchy.metrics.shift import risk_coverage_area
from hierarchy.routing import Router
from hierarchy.routing.ood import MultiDepthOODScorer
from hierarchy.training import TrainConfig

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
        "expert_init": "scratch", "preprocess": PreprocessConfig(image_size=48)}


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


@pytest.mark.slow
def test_the_benchmark_runs_every_tier_with_a_tiny_router(synthetic_root, tmp_path):
    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    Router(mode="joint", **TINY, train=TrainConfig(epochs=1, batch_size=16), val_fraction=0.25).fit(train, val).save(
        tmp_path / "router")
    spec = importlib.util.spec_from_file_location(
        "benchmark_ood_suite", Path(__file__).resolve().parents[1] / "experiments" / "benchmark_ood_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "suite"
    argv = ["--router", str(tmp_path / "router"), "--data", str(synthetic_root), "--scanner",
            str(_fake_scanner(tmp_path / "scanner")), "--out", str(out), "--limit", "12", "--train-sample", "40",
            "--corrupt-sample", "6"]
    assert module.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tiers"]) == {"shifted_valid", "near_ood", "far_ood"}
    assert summary["chosen_scorer"] in ("mahalanobis", "energy", "depth_means", "depth_stats")
    for tier in summary["tiers"].values():
        for scorer in ("mahalanobis", "depth_stats"):
            assert 0 <= tier[scorer]["auroc"] <= 1 and 0 <= tier[scorer]["referred"] <= 1
    assert {r["set"] for r in summary["plane_against_header"]} >= {"t1_mprage", "ixi_t1"}
    assert {r["route"] for r in summary["header_route"]} == {"hierarchical", "header"}
    report = (out / "report.md").read_text()
    assert "Choice of scorer" in report and "risk-coverage" in report and "Healthy brains" in report
    # a re-run resumes from the cached passes and gives the same numbers
    assert module.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["tiers"] == summary["tiers"]
