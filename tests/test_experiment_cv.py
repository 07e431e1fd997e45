"""The experiment's study design end to end on tiny synthetic data in joint mode: the declared primary endpoint,
the adjusted family of tests, the flat_refit control on every model, cross-validation folds and the calibration
split of the conformal sets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_experiment import compare_main

from hierarchy.data import duplicate_groups, index_dataset, make_synthetic_dataset, with_phash
from hierarchy.experiment import resolve_config, run_experiment
from hierarchy.experiment.endpoint_report import FAMILY_TITLE, MODELS_TITLE, PRIMARY_TITLE
from hierarchy.experiment.refit_control import CONTROL

pytestmark = pytest.mark.slow  # runs the whole experiment on synthetic data

JOINT = {"router": {"mode": "joint", "plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn",
                    "weights": None, "feature_views": 1, "val_fraction": 0.25, "ood": False,
                    "preprocess": {"image_size": 32}, "train": {"num_workers": 0, "epochs": 1, "batch_size": 16,
                                                                "warmup_epochs": 0}},
         "flat_fallback_backbone": "simple_cnn", "n_bootstrap": 40, "perturbations": [], "throughput_images": 4,
         "explain_images": 2, "shortcut_images": 4, "calibration_fraction": 0.2,
         "synthetic": {"n_per_cell_train": 8, "n_per_cell_test": 4, "image_size": 48}}


def _run(base, name: str, **overrides):
    root = base / "synthetic"
    if not root.exists():
        make_synthetic_dataset(root, seed=0, **JOINT["synthetic"])
    config = resolve_config("demo", overrides={**JOINT, **overrides})
    out = base / name
    return out, config, run_experiment(config, data_root=root, out_dir=out, external=[str(base / "other")],
                                       command="pytest")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    make_synthetic_dataset(base / "other", seed=1, **JOINT["synthetic"])
    return base


@pytest.fixture(scope="module")
def folds(base):
    return _run(base, "cv", cv_folds=2)


@pytest.fixture(scope="module")
def seeds(base):
    return _run(base, "seeds", seeds=[0, 1])


def _sections(out) -> list[str]:
    return [line[3:] for line in (out / "report.md").read_text().splitlines() if line.startswith("## ")]


@pytest.mark.parametrize("run", ["folds", "seeds"])
def test_primary_endpoint_leads_the_report_and_summary(run, request):
    out, _, summary = request.getfixturevalue(run)
    assert _sections(out)[:3] == [PRIMARY_TITLE, FAMILY_TITLE, MODELS_TITLE]
    stored = json.loads((out / "summary.json").read_text())
    assert list(stored)[0] == "primary_endpoint" and stored["primary_endpoint"] == summary["primary_endpoint"]
    primary = stored["primary_endpoint"]
    leaked = set(json.loads((out / "work" / "test_ids_duplicating_train.json").read_text()))
    assert primary["subset"] == "unseen" and primary["models"] == 2
    assert primary["n"] == stored["n_test"] - len(leaked)
    assert {"flat", CONTROL, "hierarchical"} <= set(primary["routes"])
    for values in primary["routes"].values():
        assert values["ci"][0] <= values["accuracy"] <= values["ci"][1]
    assert set(primary["differences"]) == {"hierarchical_vs_flat", f"hierarchical_vs_{CONTROL}"}
    # Holm over the declared family: primary subset, whole test split and the external set, two pairs each
    family = stored["comparison_family"]
    assert family["method"] == "holm" and family["m"] == 6 == len(family["tests"])
    for test in family["tests"]:
        assert test["p_adjusted"] >= test["p_raw"] and test["m"] == 6
    report = (out / "report.md").read_text()
    assert "p (holm-adjusted)" in report and "Holm step-down" in report


@pytest.mark.parametrize("run", ["folds", "seeds"])
def test_flat_refit_is_predicted_and_calibrated_for_every_model(run, request):
    out, _, summary = request.getfixturevalue(run)
    models = summary["cross_model"]["models"]
    assert models == (["r0f0", "r0f1"] if run == "folds" else ["0", "1"])
    for model, key in zip(models, ("r0f0", "r0f1") if run == "folds" else ("seed0", "seed1"), strict=True):
        for table in (f"test_{key}.csv", f"external_other_{key}.csv"):
            routes = set(pd.read_csv(out / "predictions" / table)["route"])
            assert {"flat", CONTROL, "hierarchical"} <= routes
        for dataset in summary["cross_model"]["datasets"].values():
            assert CONTROL in dataset["per_model"][model]["routes"]
    scaling = summary["temperature_scaling"]
    assert {"flat", CONTROL, "hierarchical"} <= set(scaling)
    assert all(0 <= v["ece_calibrated"] <= 1 and v["brier_calibrated"] >= 0 for v in scaling.values())


def test_cv_folds_keep_duplicate_groups_together_and_combine_variances(folds):
    out, _, summary = folds
    cross = summary["cross_model"]
    assert cross["kind"] == "folds" and cross["cv"] == {"folds": 2, "repeats": 1}
    assert set(cross["datasets"]) == {"synthetic test, unseen", "synthetic test, all", "other"}
    for dataset in cross["datasets"].values():
        for route, combined in dataset["combined"]["routes"].items():
            values = [m["routes"][route]["accuracy"] for m in dataset["per_model"].values()]
            assert combined["mean"] == pytest.approx(sum(values) / 2)
            assert combined["total_variance"] == pytest.approx(combined["between_variance"]
                                                               + combined["within_variance"])
    split = pd.read_csv(out / "work" / "split.csv", dtype=str)
    fold_of = pd.read_csv(out / "work" / "folds.csv", dtype={"id": str})
    pool = set(split.loc[split["subset"] != "calibration", "id"])
    assert sorted(fold_of["id"]) == sorted(pool)  # every pool row held out once
    assert "Seeds" not in _sections(out)  # fold models stand in for seeds


@pytest.mark.parametrize("run", ["folds", "seeds"])
def test_calibration_split_is_disjoint_from_training_and_validation(run, request):
    out, config, summary = request.getfixturevalue(run)
    split = pd.read_csv(out / "work" / "split.csv", dtype=str)
    calibration = set(split.loc[split["subset"] == "calibration", "id"])
    others = set(split.loc[split["subset"] != "calibration", "id"])
    assert calibration and not calibration & others
    frame = with_phash(index_dataset(out.parent / "synthetic"), progress=False)
    groups = duplicate_groups(frame).set_axis(frame["id"])
    assert not set(groups[list(calibration)]) & set(groups[list(others)])  # no duplicate straddles the cut
    assert summary["calibration_split"] == {"fraction": 0.2, "n": len(calibration),
                                            "conformal_calibrated_on": "calibration split"}
    assert summary["conformal"]["calibrated_on"] == "calibration split"
    calibrated = pd.read_csv(out / "predictions" / f"calibration_{'r0f0' if run == 'folds' else 'seed0'}.csv")
    assert set(calibrated["id"]) == calibration


def test_resume_identity_includes_the_cv_settings(folds, base):
    out, _, _ = folds
    with pytest.raises(ValueError, match="cv_repeats"):
        run_experiment(resolve_config("demo", overrides={**JOINT, "cv_folds": 2, "cv_repeats": 2}),
                       data_root=base / "synthetic", out_dir=out)


@pytest.mark.parametrize(("argv", "message"), [(["--cv", "1"], "'cv_folds' must be 0 (no cross-validation) or an "
                                                               "integer >= 2"),
                                               (["--cv-repeats", "2"], "--cv-repeats needs --cv K"),
                                               (["--cv", "2", "--seeds", "0", "1"], "one seed with cv_folds")])
def test_script_refuses_bad_cv_flags_before_training(tmp_path, capsys, argv, message):
    assert compare_main(["--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
