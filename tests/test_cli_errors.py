"""Every expected failure of the ``hierarchy`` command is one line on stderr naming the file, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hierarchy
from hierarchy.cli import main
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_version_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and hierarchy.__version__ in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "hierarchy", "--version"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert done.returncode == 0 and hierarchy.__version__ in done.stdout


def test_audit_json_pointing_at_a_folder_fails_before_the_audit(synthetic_root, tmp_path, capsys, monkeypatch):
    import hierarchy.cli.audit as cli_audit

    monkeypatch.setattr(cli_audit, "audit", lambda *a, **k: pytest.fail("the audit ran"))
    assert main(["audit", str(synthetic_root), "--json", str(tmp_path)]) == 2
    _one_line_error(capsys, str(tmp_path), "folder")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["audit", str(synthetic_root), "--out", str(blocker / "sub")]) == 2
    _one_line_error(capsys, str(blocker))


def test_report_out_under_a_file_fails_before_the_evaluation(tmp_path, capsys):
    csv = tmp_path / "pred.csv"
    simulate_predictions(20, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",)).to_csv(csv, index=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["report", "--predictions", str(csv), "--out", str(blocker / "r")]) == 2
    _one_line_error(capsys, str(blocker))


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00binary"],
                         ids=["zero-byte", "binary"])
def test_bad_prediction_csv_names_the_file(tmp_path, capsys, content):
    csv = tmp_path / "pred.csv"
    csv.write_bytes(content)
    assert main(["report", "--predictions", str(csv), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, str(csv))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02\xff\xfe binary \x00"], ids=["zero-byte", "binary"])
def test_bad_dataset_csv_names_the_file(tmp_path, capsys, content):
    csv = tmp_path / "images.csv"
    csv.write_bytes(content)
    assert main(["audit", str(csv), "--no-near"]) == 2
    _one_line_error(capsys, str(csv))


def test_probabilities_outside_0_1_are_refused_with_the_row_named(tmp_path, capsys):
    pred = simulate_predictions(20, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",), seed=1)
    columns = [c for c in pred.columns if c.startswith("prob_")]
    pred.loc[3, columns] = [-0.5, 1.5, 0.0, 0.0]
    pred.loc[3, "pred_label"] = columns[1].removeprefix("prob_")
    csv = tmp_path / "pred.csv"
    pred.to_csv(csv, index=False)
    assert main(["report", "--predictions", str(csv), "--out", str(tmp_path / "r"), "--n-bootstrap", "5"]) == 2
    _one_line_error(capsys, str(csv), "[0, 1]", repr(pred.loc[3, "id"]))


def test_debug_shows_the_traceback(tmp_path):
    csv = tmp_path / "pred.csv"
    csv.write_bytes(b"")
    with pytest.raises(ValueError, match="pred.csv"):
        main(["--debug", "report", "--predictions", str(csv), "--out", str(tmp_path / "r")])


def test_a_command_whose_dependency_is_missing_says_so(monkeypatch, capsys):
    import importlib

    real = importlib.import_module

    def without_torch(name, *args):
        if name == "hierarchy.cli.train":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_torch)
    assert main(["train", "--data", "somewhere", "--out", "x"]) == 2
    _one_line_error(capsys, "hierarchy train", "needs torch")
