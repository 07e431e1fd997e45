"""Ablation arms: overrides applied to a base config, cached results reused for the same settings only,
and the recipe ablation script end to end on tiny synthetic data."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from unittest.mock import ANY

import pytest

from hierarchy.data import make_synthetic_dataset
from hierarchy.experiment import ablation
from hierarchy.experiment.ablation import Arm, arm_config, choose_arm, selection_score
from hierarchy.routing import RouterConfig

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arm_config_applies_dotted_overrides_and_refuses_unknown_keys():
    base = RouterConfig(mode="frozen", feature_views=2)
    changed = arm_config(base, Arm("x", "", {"train.epochs": 7, "preprocess.image_size": 96, "feature_views": 4}))
    assert (changed.train.epochs, changed.preprocess.image_size, changed.feature_views) == (7, 96, 4)
    assert changed.mode == "frozen" and arm_config(base, Arm("base", "")) == base
    with pytest.raises(ValueError, match="epoch"):
        arm_config(base, Arm("typo", "", {"train.epoch": 3}))


def test_selection_score_uses_validation_only():
    result = {"val": {"ensemble": 0.9}, "val_perturbed": {"a": {"ensemble": 0.8}, "b": {"ensemble": 0.7}},
              "test": {"ensemble": 0.1}}
    assert selection_score(result) == pytest.approx(0.8)


def test_an_arm_replaces_the_base_only_by_a_clear_margin():
    def scored(*pairs):
        return [{"arm": arm, "selection_score": score} for arm, score in pairs]
    assert choose_arm(scored(("base", 0.989), ("ema", 0.990)))[0] == "base"
    chosen, why = choose_arm(scored(("base", 0.973), ("light", 0.989), ("tta", 0.980)))
    assert chosen == "light" and "1.6 points above" in why
    assert choose_arm(scored(("a", 0.90), ("b", 0.91)))[0] == "b"  # no base arm: the best
    assert "within the noise" in choose_arm(scored(("base", 0.95), ("x", 0.951)))[1]


@pytest.mark.slow
def test_recipe_ablation_and_its_refit_control_end_to_end(tmp_path, monkeypatch):
    data = make_synthetic_dataset(tmp_path / "data", n_per_cell_train=10, n_per_cell_test=2, image_size=48, seed=0)
    script = load_script("ablation_recipe")
    out = tmp_path / "ablation"
    tiny = [f"router.{key}={value}" for key, value in (
        ("plane", "simple_cnn"), ("experts", "simple_cnn"), ("flat", "simple_cnn"), ("weights", "null"),
        ("preprocess.image_size", 32), ("train.epochs", 1), ("train.num_workers", 0), ("train.batch_size", 16))]
    argv = ["--data", str(data), "--out", str(out), "--arms", "base", "no_label_smoothing",
            *(arg for text in tiny for arg in ("--set", text))]
    assert script.main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert [arm["arm"] for arm in report["arms"]] == ["base", "no_label_smoothing"]
    assert report["chosen"] in {"base", "no_label_smoothing"}
    smoothing = [arm["router"]["train"]["label_smoothing"] for arm in report["arms"]]
    assert smoothing == [0.1, 0.0]  # the cpu profile's value, then the arm's
    for arm in report["arms"]:
        assert set(arm["val_perturbed"]) == set(arm["test_perturbed"]) and 0 <= arm["test"]["ensemble"] <= 1
    text = (out / "ablation.md").read_text()
    assert "Chosen on data validation rows only" in text and "experiments/ablation_recipe.py" in text
    (out / "work" / "no_label_smoothing.json").unlink()  # as in a fresh clone: work/ is not committed
    (out / "work" / "no_label_smoothing").rename(out / "no_label_smoothing_checkpoints")
    assert script.main(argv) == 0  # restored from ablation.json, not fitted again
    assert not (out / "work" / "no_label_smoothing").exists()
    assert json.loads((out / "ablation.json").read_text()) == report | {"record": ANY}
    cached = (out / "work" / "base.json").stat().st_mtime_ns
    assert script.main(argv) == 0  # finished arms are reused, not refitted
    assert (out / "work" / "base.json").stat().st_mtime_ns == cached
    changed = [*argv[:argv.index("--arms")], "--arms", "base", *argv[argv.index("--set"):], "--set",
               "router.train.label_smoothing=0.2"]
    with pytest.raises(ValueError, match=r"arm 'base': .*base.json was fitted with other settings"):
        script.main(changed)  # nothing of the finished arm is overwritten unasked
    assert (out / "work" / "base.json").stat().st_mtime_ns == cached
    with monkeypatch.context() as patch:  # images decoded otherwise since: the arm is not the same arm
        patch.setattr(ablation, "PIPELINE_VERSION", ablation.PIPELINE_VERSION + 1)
        with pytest.raises(ValueError, match=r"arm 'base': .*earlier image pipeline"):
            script.main(argv)
    assert (out / "work" / "base.json").stat().st_mtime_ns == cached
    # the refit control resumes the arm the ablation fitted: no second training run
    log = out / "work" / "base" / "training" / "flat" / "log.csv"
    trained = log.read_text()
    control_out = tmp_path / "control"
    assert load_script("control_flat_refit").main(
        ["--data", str(data), "--study", str(out), "--out", str(control_out), "--arms", "base",
         *(arg for text in tiny for arg in ("--set", text))]) == 0
    assert log.read_text() == trained
    control = json.loads((control_out / "refit_control.json").read_text())
    routes = control["results"]["base"]["data test"]["routes"]
    assert set(routes) == {"flat", "flat_refit", "hierarchical"}
    assert routes["hierarchical"]["accuracy"]["value"] == pytest.approx(report["arms"][0]["test"]["hierarchical"])
    assert "| base |" in (control_out / "refit_control.md").read_text()


def test_disease_ablation_end_to_end_adds_shortcut_tests_and_chooses_by_its_declared_rule(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", n_per_cell_train=8, n_per_cell_test=2, image_size=48, seed=0)
    script = load_script("ablation_disease")
    out = tmp_path / "disease"
    tiny = [f"router.{key}={value}" for key, value in (
        ("plane", "simple_cnn"), ("experts", "simple_cnn"), ("flat", "simple_cnn"), ("weights", "null"),
        ("preprocess.image_size", 32), ("train.epochs", 1), ("train.num_workers", 0), ("train.batch_size", 16))]
    argv = ["--data", str(data), "--out", str(out), "--arms", "base", "all_three",
            *(arg for text in tiny for arg in ("--set", text))]
    assert script.main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    base, both = report["arms"]
    assert both["router"]["train"]["mask_weight"] == 1.0 and both["router"]["train"]["paste_p"] == 0.25
    for arm in report["arms"]:
        tests = arm["val_shortcut_tests"]["tests"]
        assert set(tests) == {"paste_in", "removal", "background_swap", "style_swap"}
        expected = (arm["val"]["ensemble"] + min(v["ensemble"] for v in arm["val_perturbed"].values())) / 2
        shortcut = sum(t["ensemble"]["rate"] for t in tests.values()) / 4
        assert arm["selection_score"] == pytest.approx((expected + shortcut) / 2)
        assert arm["test_unseen"]["n"] + arm["test_unseen"]["n_removed"] == 24
        assert arm["test_attribution"]["n_images"] > 0
    assert "shortcut-test rates" in report["selection"]
    text = (out / "ablation.md").read_text()
    assert "## Shortcut tests, attribution and unseen test images" in text and "Chance baselines" in text

    # the removal-fill diagnostic reuses the arms' trained checkpoints: nothing is trained again
    diagnose = load_script("diagnose_removal_fill")
    settings = [arg for text in tiny for arg in ("--set", text)]
    with pytest.raises(SystemExit):  # an arm that was not run is refused
        diagnose.main(["--data", str(data), "--work", str(out / "work"), "--arm", "all_three_paste_half", *settings])
    fills = tmp_path / "removal_fill.json"
    assert diagnose.main(["--data", str(data), "--work", str(out / "work"), "--arm", "all_three", *settings,
                          "--n", "8", "--out", str(fills)]) == 0
    result = json.loads(fills.read_text())
    rates = result["called_no_tumour"]["all_three"]
    assert set(rates) == {"biharmonic", "diffusion", "smooth", "training"} and result["n"] == 8
    assert all(0.0 <= rate <= 1.0 for fill in rates.values() for rate in fill.values())
    assert set(rates["training"]) == {"flat", "hierarchical", "ensemble"}
    assert result["record"]["config"]["arms"]["all_three"]["train"]["removal_p"] == 0.25
    assert result["record"]["data"]["tumours"]["n_images"] == 8

    # so does the paste-in diagnostic; its breakdowns partition the cases and agree with the overall rate
    pasted = tmp_path / "paste_in.json"
    assert load_script("diagnose_paste_in").main(["--data", str(data), "--work", str(out / "work"), "--arm",
                                                  "all_three", *settings, "--n", "6", "--out", str(pasted)]) == 0
    breakdown = json.loads(pasted.read_text())["arms"]["all_three"]
    assert set(breakdown) == {"validation", "training"}
    for split, test, route in itertools.product(breakdown, ("paste_in", "background_swap"),
                                                ("flat", "hierarchical", "ensemble")):
        entry = breakdown[split][test][route]
        overall = entry["all"]
        assert overall["n"] == 6
        for group in ("by_class", "by_plane", "by_size", "by_donor_right"):
            assert sum(v["n"] for v in entry[group].values()) == 6
            assert sum(v["successes"] for v in entry[group].values()) == overall["successes"]
        assert sum(entry["misses_called"].values()) == 6 - overall["successes"]
        assert set(entry["by_class"]) <= {"glioma", "meningioma", "pituitary"}


@pytest.mark.parametrize("folder", ["disease_ablation", "disease_ablation_quick"])
def test_each_profile_trains_the_recipe_its_committed_disease_ablation_chose(folder):
    from hierarchy.experiment.disease_study import ARMS
    from hierarchy.experiment.recipe_arms import profile_router

    report = json.loads((ROOT / "reports" / "benchmarks" / folder / "ablation.json").read_text())
    study = report["record"]["config"]
    chosen = arm_config(RouterConfig.from_dict(study["base"]), ARMS[report["chosen"]])
    assert chosen == profile_router(study["profile"]), f"the {study['profile']} profile is not {report['chosen']}"
