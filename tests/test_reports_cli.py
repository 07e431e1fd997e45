import json

import pytest

from hierarchy.cli import main
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions


@pytest.mark.slow
def test_report_command_end_to_end(tmp_path, capsys):
    csv = tmp_path / "pred.csv"
    simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                         routes=("flat", "hierarchical"), refer_below=0.5, seed=5).to_csv(csv, index=False)
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"git_commit": "deadbeef", "seed": 1, "config": {"a": 1}}))
    out = tmp_path / "report"
    args = ["report", "--predictions", str(csv), "--out", str(out), "--n-bootstrap", "10",
            "--seed", "3", "--run-record", str(record)]
    assert main(args) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_bootstrap"] == 10 and metrics["seed"] == 3
    assert metrics["routes"]["flat"]["coverage"]["n_referred"] > 0
    assert "deadbeef" in (out / "report.md").read_text()

    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_report_command_errors(tmp_path, capsys):
    assert main(["report", "--predictions", str(tmp_path / "nope.csv"), "--out",
                 str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    csv = tmp_path / "pred.csv"
    simulate_predictions(20, classes=TUMOR_CLASSES, planes=PLANES,
                         routes=("flat",)).drop(columns="true_label").to_csv(csv, index=False)
    assert main(["report", "--predictions", str(csv), "--out", str(tmp_path / "r"),
                 "--n-bootstrap", "5"]) == 2
    assert "true_label" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written when the table is unusable
