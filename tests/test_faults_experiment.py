"""The experiment never replaces a user's file, resumes only the same run (by content, not by name), and stops
on a bad setting, output folder or input with one line before any training (issue 24)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hierarchy.experiment import resolve_config
from hierarchy.experiment.runner import Experiment

REPO = Path(__file__).resolve().parents[1]
SMALL = {"router": {"mode": "frozen", "plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn",
                    "weights": None, "expert_init": "scratch", "preprocess": {"image_size": 32},
                    "train": {"num_workers": 0}}, "flat_fallback_backbone": "simple_cnn"}


def _script():
    spec = importlib.util.spec_from_file_location("compare_script", REPO / "experiments" / "compare_flat_vs_hierarchical.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data(synthetic_root, tmp_path) -> Path:
    """A private copy of the synthetic dataset (tests change its files) under the same folder name."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data" / synthetic_root.name))


@pytest.fixture
def config():
    return resolve_config("demo", overrides=SMALL)


@pytest.mark.parametrize("name", ["summary.json", "run_record.json", "audit", "manifest.json"])
def test_a_users_files_in_out_are_refused_before_anything_is_written(data, config, tmp_path, name):
    out = tmp_path / "out"
    (out / "audit").mkdir(parents=True) if name == "audit" else out.mkdir()
    mine = out / "audit" / "audit.json" if name == "audit" else out / name
    mine.write_text('{"mine": true}')
    with pytest.raises(FileExistsError, match=name):
        Experiment(config, data, out)
    assert mine.read_text() == '{"mine": true}'
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written


def test_changed_data_under_the_same_name_is_refused_then_restarted(data, config, tmp_path):
    out = tmp_path / "out"
    Experiment(config, data, out)
    (out / "work" / "stages.json").write_text(json.dumps({"audit": {"seconds": 1.0}}))
    image = sorted((data / "classification_task" / "train").rglob("*.jpg"))[0]
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(image)  # same name, other content
    with pytest.raises(ValueError, match=r"data\.\S+\.sha256: .* -> .*--restart"):
        Experiment(config, data, out)
    assert (out / "work" / "stages.json").exists()  # nothing discarded without --restart
    Experiment(config, data, out, restart=True)
    assert not (out / "work" / "stages.json").exists()
    Experiment(config, data, out)  # the new data is now this run's: it resumes


def test_a_changed_or_added_external_set_is_refused(data, config, synthetic_root, tmp_path):
    out = tmp_path / "out"
    external = Path(shutil.copytree(synthetic_root, tmp_path / "ext" / "external_set"))
    Experiment(config, data, out, external=[external])
    with pytest.raises(ValueError, match="external.* removed"):
        Experiment(config, data, out)
    image = sorted(external.rglob("*.jpg"))[0]
    Image.fromarray(np.full((64, 64), 30, np.uint8)).save(image)
    with pytest.raises(ValueError, match=r"external\.external_set\..*sha256"):
        Experiment(config, data, out, external=[external])


def test_code_version_is_part_of_the_identity(data, config, tmp_path, monkeypatch):
    import hierarchy

    out = tmp_path / "out"
    Experiment(config, data, out)
    monkeypatch.setattr(hierarchy, "__version__", "999.0")
    with pytest.raises(ValueError, match="code_version"):
        Experiment(config, data, out)


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("setting, needle", [
    ("router.train.epochs=three", "epochs"), ("router.train.epochs=3.5", "epochs"), ("seeds=0", "seeds"),
    ("n_bootstrap=-5", "n_bootstrap"), ("seeds=[]", "seeds"), ("conformal_alpha=2", "conformal_alpha"),
])
def test_script_refuses_bad_settings_in_one_line_before_training(tmp_path, capsys, monkeypatch, setting, needle):
    script = _script()
    monkeypatch.setattr(script, "run_experiment", lambda *a, **k: pytest.fail("training started"))
    assert script.main(["--out", str(tmp_path / "out"), "--set", setting]) == 2
    _one_line(capsys, needle)


def test_script_refuses_an_unwritable_out_and_a_missing_input(tmp_path, capsys, monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "run_experiment", lambda *a, **k: pytest.fail("training started"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert script.main(["--out", str(blocker / "out")]) == 2
    _one_line(capsys, str(blocker))
    assert script.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "missing"), "--profile", "quick"]) == 2
    _one_line(capsys, "missing", "does not exist")


def test_script_refuses_a_config_mismatch_in_one_line(data, tmp_path, capsys):
    script = _script()
    out = tmp_path / "out"
    small = ["--set", f"router={json.dumps(SMALL['router'])}", "--set", "flat_fallback_backbone=simple_cnn"]
    Experiment(resolve_config("demo", overrides=SMALL), data, out)
    assert script.main(["--out", str(out), "--data", str(data), *small, "--set", "n_bootstrap=7"]) == 2
    _one_line(capsys, "config.json", "n_bootstrap", "--restart")
