"""The flat-vs-hierarchical experiment end to end on tiny synthetic data, and its configuration."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hierarchy.data import augment_preset, index_dataset, make_synthetic_dataset
from hierarchy.experiment import (
    PROFILES,
    ExperimentConfig,
    parse_override,
    resolve_config,
    run_experiment,
)
from hierarchy.experiment.external import load_external
from hierarchy.experiment.stages import StageLog
from hierarchy.experiment.weights_plan import plan_weights
from hierarchy.fileio import sha256_file
from hierarchy.reports.writer import unresolved_links

pytestmark = pytest.mark.slow  # runs the whole experiment on synthetic data

TINY = {"router": {"mode": "frozen", "plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn",
                   "weights": None, "expert_init": "scratch", "feature_views": 1, "val_fraction": 0.25,
                   "preprocess": {"image_size": 48}, "train": {"num_workers": 0}},
        "flat_fallback_backbone": "simple_cnn", "n_bootstrap": 50, "perturbations": ["jpeg_q75", "downscale_224"],
        "throughput_images": 8, "calibration_fraction": 0.2,  # 8 images per stratum: room for 1 in 5
        "synthetic": {"n_per_cell_train": 8, "n_per_cell_test": 4, "image_size": 64}}


KAGGLE_NAMES = {"glioma": "glioma", "meningioma": "meningioma", "pituitary": "pituitary", "no_tumor": "notumor"}


def kaggle_copy(source: Path, target: Path, train_images: list[Path]) -> Path:
    """A Kaggle-layout test set from ``source``'s test images plus copies of two training images."""
    for image in sorted((source / "classification_task" / "test").glob("*/*.jpg")):
        folder = target / "Testing" / KAGGLE_NAMES[image.parent.name]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    for image in train_images:
        shutil.copy(image, target / "Testing" / KAGGLE_NAMES[image.parent.name] / f"copy_{image.name}")
    return target


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("experiment")
    root = make_synthetic_dataset(base / "synthetic", seed=0, **TINY["synthetic"])
    other = make_synthetic_dataset(base / "other", seed=1, **TINY["synthetic"])
    train_images = sorted((root / "classification_task" / "train").glob("*/*.jpg"))[:2]
    external = kaggle_copy(other, base / "kaggle", train_images)
    out = base / "report"
    config = resolve_config("demo", overrides={**TINY, "seeds": [0, 1]})
    return out, config, run_experiment(config, data_root=root, out_dir=out, external=[str(external)],
                                       command="pytest")


def test_summary_has_every_headline_key_as_fractions(finished):
    out, _, summary = finished
    stored = json.loads((out / "summary.json").read_text())
    assert stored["profile"] == "demo" and stored["seeds"] == [0, 1] and stored["dataset"] == "synthetic"
    assert set(stored["routes"]) == {"flat", "hierarchical", "soft", "ensemble", "oracle", "flat_seeds",
                                     "hierarchical_seeds"}
    for values in stored["routes"].values():
        for key in ("accuracy", "macro_auc", "macro_f1", "tumor_fnr", "ece"):
            assert 0.0 <= values[key] <= 1.0
        low, high = values["accuracy_ci"]
        assert low <= values["accuracy"] <= high
    assert 0.0 <= stored["plane_accuracy"] <= 1.0 and 0.0 <= stored["mcnemar_p"] <= 1.0
    assert stored["plane_by_route"]["hierarchical"]["accuracy"] == stored["plane_accuracy"]
    assert set(stored["robustness"]) == {"jpeg_q75", "downscale_224"}
    assert set(stored["robustness"]["jpeg_q75"]) == set(stored["routes"]) - {"flat_seeds", "hierarchical_seeds"}
    assert stored["routes"]["flat"]["images_per_second"] > 0
    assert 0.0 <= stored["shortcut"]["accuracy"] <= 1.0
    assert stored["weights"]["sources"]["flat"] == "random initialisation"
    scaling = stored["temperature_scaling"]
    assert set(scaling) == {"flat", "hierarchical", "soft", "ensemble", "oracle"}  # frozen mode: no flat_refit
    assert all(v["temperature"] > 0 and 0.0 <= v["ece_calibrated"] <= 1.0 for v in scaling.values())
    shortcut = stored["shortcut_tests"]
    assert set(shortcut) == {"paste_in", "removal", "background_swap", "style_swap"}
    assert set(shortcut["removal"]) == {"flat", "hierarchical", "soft", "ensemble"}
    assert all(0.0 <= e["rate"] <= 1.0 and e["ci"][0] <= e["rate"] <= e["ci"][1] and e["n"] > 0
               for by_route in shortcut.values() for e in by_route.values())
    attribution = stored["attribution_vs_mask"]
    assert attribution["n_images"] > 0 and set(attribution["methods"]) == {"gradcam", "integrated_gradients"}
    assert 0.0 <= attribution["baselines"]["random_point_hit"] <= 1.0


def test_report_and_run_record_are_written(finished):
    out, _, _ = finished
    report = (out / "report.md").read_text()
    for section in ("How to reproduce", "Starting weights", "Shortcut check", "Robustness", "Dataset audit",
                    "Temperature scaling", "Test images unseen in training", "Where the models look",
                    "Shortcut tests: does the answer follow the tumour?"):
        assert section in report
    assert "pytest" in report  # the command that produced it
    record = json.loads((out / "run_record.json").read_text())
    assert record["data"]["test"]["n_images"] == 48 and record["versions"]["torch"]
    assert set(record["stage_commits"]) == set(record["stage_seconds"])  # every stage ran at the run's commit
    assert set(record["stage_commits"].values()) == {record["git_commit"]}
    assert (out / "figures" / "roc.png").stat().st_size > 0
    assert (out / "gallery" / "shortcut_examples.png").stat().st_size > 0
    assert (out / "predictions" / "test_seed0.csv").stat().st_size > 0


def test_rerun_resumes_without_retraining(finished):
    out, config, summary = finished
    before = StageLog(out / "work" / "stages.json").seconds()
    again = run_experiment(config, data_root=out.parent / "synthetic", out_dir=out,
                           external=[str(out.parent / "kaggle")], command="pytest")
    assert StageLog(out / "work" / "stages.json").seconds() == before
    assert again["routes"]["hierarchical"]["accuracy"] == summary["routes"]["hierarchical"]["accuracy"]


def test_config_json_holds_the_nested_router_settings(finished):
    out, config, _ = finished
    stored = json.loads((out / "config.json").read_text())["experiment"]
    assert stored["router"]["plane"] == "simple_cnn" and stored["router"]["preprocess"]["image_size"] == 48
    assert stored["router"]["train"]["num_workers"] == 0 and "epochs" not in stored
    assert ExperimentConfig.from_dict(stored) == config


@pytest.mark.parametrize("change", [{"n_bootstrap": 60}, {"router.train.epochs": 2},
                                    {"router.preprocess.augment": "robust"}])
def test_rerun_with_other_settings_is_refused(finished, change):
    out, config, _ = finished
    other = resolve_config("demo", overrides={**TINY, "seeds": [0, 1], **change})
    assert other != config
    with pytest.raises(ValueError, match="records another run"):
        run_experiment(other, data_root=out.parent / "synthetic", out_dir=out)


def test_dotted_overrides_reach_nested_router_settings(tmp_path):
    assert parse_override("router.train.epochs=7") == ("router.train.epochs", 7)
    assert parse_override("router.mode=frozen") == ("router.mode", "frozen")
    overrides = dict(parse_override(text) for text in ("router.train.epochs=7", "router.preprocess.augment=none",
                                                       "router.mode=frozen", "router.train.lr=0.01"))
    config = resolve_config("cpu", overrides=overrides)
    assert (config.router.train.epochs, config.router.train.lr, config.router.mode) == (7, 0.01, "frozen")
    assert config.router.preprocess.augment == augment_preset("none")
    # the rest of the profile's router settings stay
    assert config.router.train.batch_size == 32 and config.router.preprocess.image_size == 224
    assert config.router.feature_views == 2
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"router": {"train": {"epochs": 5}, "plane_epochs": 2}, "seeds": [1, 2],
                                       "router.preprocess.image_size": 128}))
    config = resolve_config("cpu", config_file=config_file, overrides={"router.train.epochs": 6})
    assert (config.router.train.epochs, config.router.plane_epochs, config.seeds) == (6, 2, (1, 2))
    assert config.router.preprocess.image_size == 128 and config.router.train.label_smoothing == 0.1
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_or_misplaced_keys_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['epoch'\]; known keys are .*'epochs'"):
        resolve_config("quick", overrides={"router.train.epoch": 3})
    with pytest.raises(ValueError, match=r"unknown RouterConfig keys \['backbone'\]; known keys are .*'plane'"):
        resolve_config("quick", overrides={"router": {"backbone": "resnet18"}})
    with pytest.raises(ValueError, match=r"'epochs' is now 'router.train.epochs'"):
        resolve_config("quick", overrides={"epochs": 3})
    with pytest.raises(ValueError, match=r"'plane_backbone' is now 'router.plane'"):
        resolve_config("quick", overrides={"plane_backbone": "resnet18"})
    with pytest.raises(ValueError, match=r"unknown ExperimentConfig keys \['routr'\]"):
        resolve_config("quick", overrides={"routr.mode": "frozen"})
    with pytest.raises(ValueError, match="'router.mode' is a single setting"):
        resolve_config("quick", overrides={"router.mode.kind": "frozen"})
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_config("quick", overrides={"router.mode": "fast"})


def test_profiles():
    assert set(PROFILES) == {"demo", "quick", "cpu", "full"}
    # light everywhere: the robustness and recipe ablations chose it on validation, frozen and fine-tuned
    for name in ("demo", "quick", "cpu", "full"):
        assert PROFILES[name].router.preprocess.augment == augment_preset("light")
    assert PROFILES["cpu"].router.mode == "joint"
    joint = resolve_config("cpu", overrides={"router": {"plane": "simple_cnn", "experts": "simple_cnn",
                                                        "flat": "simple_cnn", "weights": None}})
    sources = plan_weights(joint)["sources"]
    assert sources["flat"] == "random initialisation, fine-tuned end to end on the tumour label and the plane at once"
    assert sources["plane"].startswith("the plane head trained jointly") and "frozen" in sources["experts"]
    full = PROFILES["full"]
    assert (full.router.train.epochs, full.router.plane_epochs, full.router.preprocess.image_size) == (30, 10, 299)
    routed = full.router_config(2, "tf_efficientnet_lite2")
    assert (routed.seed, routed.train.seed, routed.flat) == (2, 2, "tf_efficientnet_lite2")
    assert routed.train.lr == full.router.train.lr and full.router.seed == 0
    with pytest.raises(ValueError, match="unknown profile"):
        resolve_config("huge")
    with pytest.raises(ValueError, match="unknown perturbations"):
        resolve_config("quick", overrides={"perturbations": ["blur"]})
    with pytest.raises(ValueError, match="key=value"):
        parse_override("epochs")


def test_external_dataset_is_cleaned_of_training_duplicates_and_reported(finished):
    out, _, summary = finished
    external = summary["external"]["kaggle"]
    # the two copied training images go, and so may synthetic look-alikes (near duplicates by phash)
    assert external["n_indexed"] == 48 + 2 and external["n_removed_as_training_duplicates"] >= 2
    train = index_dataset(out.parent / "synthetic")
    cleaned, record = load_external(out.parent / "kaggle", train[train["split"] == "train"])
    copies = {i for i in index_dataset(out.parent / "kaggle")["id"] if "copy_" in i}
    assert len(copies) == 2 and copies <= set(record["removed_ids"])
    assert not cleaned["id"].isin(copies).any()
    assert {"flat", "hierarchical", "soft", "ensemble"} <= set(external) and "oracle" not in external
    assert 0.0 <= external["hierarchical"]["accuracy"] <= 1.0
    assert "### kaggle" in (out / "report.md").read_text()


def test_summary_has_generalisation_conformal_and_seed_keys(finished):
    out, _, _ = finished
    stored = json.loads((out / "summary.json").read_text())
    external = stored["external"]["kaggle"]
    # every Router carries an OOD scorer fitted on its training rows
    assert 0.0 <= external["ood_auroc"]["value"] <= 1.0
    assert external["ood_auroc"]["n_out"] == external["n_evaluated"]
    assert 0.0 <= external["mcnemar_p"] <= 1.0
    assert external["n_evaluated"] == external["n_indexed"] - external["n_removed_as_training_duplicates"]
    generalisation = stored["generalisation"]
    assert list(generalisation) == ["synthetic test", "kaggle", "test + jpeg_q75", "test + downscale_224"]
    assert [v["kind"] for v in generalisation.values()] == ["test", "external", "perturbation", "perturbation"]
    for dataset in generalisation.values():
        for values in dataset["routes"].values():
            assert values["accuracy_ci"][0] <= values["accuracy"] <= values["accuracy_ci"][1]
            assert 0.0 <= values["tumor_fnr"] <= 1.0
    assert stored["robustness"]["jpeg_q75"]["flat"]["accuracy"] == \
        generalisation["test + jpeg_q75"]["routes"]["flat"]["accuracy"]
    conformal = stored["conformal"]
    assert conformal["alpha"] == 0.1 and set(conformal["datasets"]) == {"synthetic test", "kaggle"}
    kaggle_sets = conformal["datasets"]["kaggle"]
    assert set(kaggle_sets) == {"flat", "hierarchical", "soft", "ensemble"}
    assert all(0.0 <= v["coverage"] <= 1.0 and 0.0 <= v["mean_set_size"] <= 4.0 for v in kaggle_sets.values())
    assert set(stored["train_seconds"]) == {"0", "1"} and all(v > 0 for v in stored["train_seconds"].values())
    assert stored["routes"]["flat"]["accuracy_sd"] is not None
    assert stored["routes"]["flat_seeds"]["accuracy_sd"] is None
    accuracies = stored["seeds_aggregate"]["routes"]["flat"]["accuracy"]["values"]
    assert stored["routes"]["flat"]["accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert set(stored["per_seed"]["hierarchical"]) == {"0", "1"}


def test_report_has_generalisation_sections_and_files(finished):
    out, _, _ = finished
    report = (out / "report.md").read_text()
    for section in ("## Generalisation at a glance", "## Secondary test sets (duplicate-free)",
                    "## Referral of atypical images (OOD score)",
                    "## Conformal prediction sets", "Nothing was trained, selected or tuned on the secondary test sets",
                    "flat_seeds", "accuracy mean ± sd"):
        assert section in report
    for name in ("figures/generalisation.png", "figures/roc_external_kaggle.pdf", "figures/confusion_external.png",
                 "tables/generalisation.csv", "tables/conformal.csv", "tables/external_kaggle_headline.csv",
                 "tables/external_per_class_recall.csv", "tables/external_comparisons.csv",
                 "tables/ood_auroc.csv", "figures/ood_coverage.png"):
        assert (out / name).stat().st_size > 0, name
        assert name in report
    errors = out / "tables" / "external_kaggle_errors.csv"
    if errors.exists():  # a perfect model makes none
        table = pd.read_csv(errors)
        assert {"id", "route", "true_label", "pred_label", "confidence"} <= set(table.columns)
        assert "path" not in table.columns
        assert (out / "gallery" / "errors_kaggle.png").exists()
    for name in ("val_seed0.csv", "test_jpeg_q75.csv", "test_seed_ensemble.csv", "external_kaggle_seed0.csv",
                 "external_kaggle_seed1.csv", "calibration_seed0.csv"):
        saved = pd.read_csv(out / "predictions" / name)
        assert "path" not in saved.columns and len(saved) > 0
    assert set(pd.read_csv(out / "predictions" / "test_seed_ensemble.csv")["route"]) == {"flat_seeds",
                                                                                        "hierarchical_seeds"}


def test_manifest_is_exactly_the_files_under_the_report(finished):
    out, _, _ = finished  # after test_rerun_resumes_without_retraining: a resumed run rewrites the same set
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "work"}
    assert manifest["complete"] and on_disk == {*manifest["files"], "manifest.json"}
    assert {n: sha256_file(out / n) for n in manifest["files"]} == manifest["sha256"]
    for name in ("summary.json", "run_record.json", "config.json", "supplement.tex", "audit/audit.json",
                 "predictions/test_seed0.csv", "tables/explanation_mask_scores.tex"):
        assert name in manifest["files"], name
    assert set(manifest["local"]) >= {n for n in on_disk if n.startswith(("explanations/", "gallery/"))}
    assert unresolved_links(out / "report.md") == []
    record = json.loads((out / "run_record.json").read_text())
    commit = record["git_commit"]
    assert record["uncommitted_changes"] is (None if commit is None else commit.endswith("+dirty"))


def compare_main(argv: list[str]) -> int:
    """``main`` of experiments/compare_flat_vs_hierarchical.py (a script, not a package module)."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "compare_flat_vs_hierarchical.py"
    spec = importlib.util.spec_from_file_location("compare_flat_vs_hierarchical", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def cli_args(*data: Path, out: Path, **settings) -> list[str]:
    """Command-line arguments of the comparison script with the tiny settings."""
    tiny = {**TINY, "perturbations": [], "n_bootstrap": 20, "explain_images": 2, **settings}
    args = [arg for root in data for arg in ("--data", str(root))] + ["--out", str(out)]
    return args + [arg for k, v in dotted(tiny) if k != "synthetic" for arg in ("--set", f"{k}={json.dumps(v)}")]


def dotted(settings: dict, prefix: str = ""):
    """``(dotted key, value)`` of every leaf of nested settings (the ``synthetic`` dict stays whole)."""
    for key, value in settings.items():
        if isinstance(value, dict) and key != "synthetic":
            yield from dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    small = {"n_per_cell_train": 5, "n_per_cell_test": 2, "image_size": 64}  # 1 in 5 held out for calibration
    return (make_synthetic_dataset(base / "alpha", seed=0, **small),
            make_synthetic_dataset(base / "beta", seed=1, **small), base)


def test_several_roots_give_metrics_per_source(two_sources):
    alpha, beta, base = two_sources
    assert compare_main(cli_args(alpha, beta, out=base / "both")) == 0
    stored = json.loads((base / "both" / "summary.json").read_text())
    assert stored["dataset"] == "alpha+beta" and stored["holdout_source"] is None
    assert set(stored["per_source"]) == {"alpha", "beta"}
    assert stored["per_source"]["alpha"]["flat"]["n"] + stored["per_source"]["beta"]["flat"]["n"] == stored["n_test"]
    assert [v["kind"] for v in stored["generalisation"].values()] == ["test", "source", "source"]
    assert "test: beta" in (base / "both" / "report.md").read_text()


def test_holdout_source_trains_on_the_others_and_tests_on_it(two_sources):
    alpha, beta, base = two_sources
    assert compare_main([*cli_args(alpha, beta, out=base / "holdout"), "--holdout-source", "beta"]) == 0
    stored = json.loads((base / "holdout" / "summary.json").read_text())
    assert stored["holdout_source"] == "beta" and list(stored["generalisation"]) == ["beta (held out)"]
    test_ids = pd.read_csv(base / "holdout" / "predictions" / "test_seed0.csv")["id"]
    assert test_ids.str.startswith("beta/").all() and stored["n_test"] == test_ids.nunique()
    trained = pd.read_csv(base / "holdout" / "work" / "split.csv")["id"]
    assert trained.str.startswith("alpha/").all()
    assert compare_main([*cli_args(alpha, out=base / "refused"), "--holdout-source", "beta"]) == 2


def test_script_refuses_an_unknown_setting_with_the_known_ones(tmp_path, capsys):
    assert compare_main(["--out", str(tmp_path / "out"), "--set", "router.train.epoch=3"]) == 2
    error = capsys.readouterr().err
    assert "unknown TrainConfig keys ['epoch']" in error and "'epochs'" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_report_reads_clinically_describes_the_data_and_carries_its_checklist(finished):
    out, _, _ = finished
    report = (out / "report.md").read_text()
    for section in ("## Tumour versus normal", "## Confusion matrices by true and by predicted class",
                    "## Label quality and data description", "## Reporting checklist",
                    "kaggle is a duplicate-free secondary test set"):
        assert section in report
    for name in ("checklist.md", "tables/checklist.csv", "tables/tumour_vs_normal.csv", "figures/decision_curve.pdf",
                 "figures/confusion_hierarchical_both.png", "tables/confusion_all.csv", "tables/label_conflicts.csv",
                 "tables/test_set_composition.csv", "tables/conformal_mondrian.csv", "tables/conformal_per_class.csv"):
        assert (out / name).stat().st_size > 0, name
    checklist = (out / "checklist.md").read_text()
    assert "is not in this report" not in checklist  # every item points at a section the report has
    stored = json.loads((out / "summary.json").read_text())
    assert set(stored["tumour_vs_normal"]) == set(stored["confusion"]) == {"synthetic test", "kaggle"}
    point = stored["tumour_vs_normal"]["kaggle"]["hierarchical"]["sensitivity_at_specificity"]["0.95"]
    assert point["ci"][0] <= point["value"] <= point["ci"][1]
    assert stored["conformal"]["allow_empty"] is True and stored["conformal"]["mondrian"] is not None
    assert set(stored["label_quality"]["accuracy"]) >= {"all test images", "without either"}
    assert sum(stored["checklist"]["CLAIM"].values()) == 42
