"""``hierarchy train``, ``predict`` and ``evaluate`` end to end on the synthetic data (frozen simple_cnn)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hierarchy.cli import main
from hierarchy.predictions import ROUTES

CONFIG = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "weights": None,
          "expert_init": "scratch", "mode": "finetune", "val_fraction": 0.25, "preprocess": {"image_size": 32},
          "train": {"epochs": 1, "batch_size": 16}}


@pytest.fixture(scope="module")
def run_dir(synthetic_root: Path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "config.json"
    config.write_text(json.dumps(CONFIG))
    run = tmp / "run"
    # flags and --set override the file: frozen mode, one epoch without warm-up
    assert main(["train", "--data", str(synthetic_root), "--out", str(run), "--config", str(config),
                 "--mode", "frozen", "--set", "train.warmup_epochs=0"]) == 0
    return run


def test_train_writes_a_loadable_router(run_dir, synthetic_root, capsys):
    manifest = json.loads((run_dir / "router.json").read_text())
    assert manifest["config"]["flat"] == "simple_cnn" and manifest["config"]["mode"] == "frozen"
    assert manifest["config"]["train"]["warmup_epochs"] == 0
    assert not any("test" == split for split in manifest["record"]["data"])
    assert main(["train", "--data", str(synthetic_root), "--out", str(run_dir)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_predict_prints_a_table_and_json_lines(run_dir, synthetic_root, capsys):
    folder = synthetic_root / "classification_task" / "test" / "pituitary"
    assert main(["predict", "--model", str(run_dir), str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["id", "pred_label"]
    assert len(lines) == 1 + len(list(folder.glob("*.jpg")))
    image = next(folder.glob("*.jpg"))
    assert main(["predict", "--model", str(run_dir), str(image), "--route", "soft", "--reject-below", "1.0",
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["route"] == "soft" and rows[0]["referred"] is True


def test_predict_names_an_unreadable_file(run_dir, tmp_path, capsys):
    bad = tmp_path / "corrupt_slice.png"
    bad.write_bytes(b"\x89PNG garbage")
    assert main(["predict", "--model", str(run_dir), str(bad)]) == 2
    assert "corrupt_slice.png" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), str(bad)]) == 2
    assert "router.json" in capsys.readouterr().err


def test_evaluate_writes_every_route_for_the_test_split(run_dir, synthetic_root, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["evaluate", "--model", str(run_dir), "--data", str(synthetic_root), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["route"].unique()) == list(ROUTES)
    assert table["path"].str.contains("/test/").all()
    assert main(["evaluate", "--model", str(run_dir), "--data", str(synthetic_root), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_train_flags_are_generated_from_router_config(capsys):
    from hierarchy.cli.train import SETTINGS
    from hierarchy.routing import RouterConfig

    flags = {flag for flag, *_ in SETTINGS}
    assert {"--plane", "--experts", "--flat", "--mode", "--parent", "--seed"} <= flags
    assert len(flags) == len([f for f in RouterConfig.__dataclass_fields__ if f not in ("train", "preprocess")])
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "shared" in capsys.readouterr().out
