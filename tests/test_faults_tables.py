"""Tables are safe to open: formula cells neutralised in every CSV the library writes, Markdown cells escaped,
and CSV files read back as written; CSV problems named precisely (issue 24)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from hierarchy.cli import main
from hierarchy.csv_io import neutralise_cell, read_csv, write_csv
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions
from hierarchy.reports.tables import markdown_table, write_table

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "'=already"]


def test_neutralise_cell_follows_the_owasp_rule():
    for text in FORMULAS:
        assert neutralise_cell(text) == "'" + text
    for text in ("plain.jpg", "a=b", "", "'quoted"):
        assert neutralise_cell(text) == text
    assert neutralise_cell(-0.5) == -0.5


def test_write_csv_leaves_no_formula_and_reads_back_unchanged(tmp_path):
    frame = pd.DataFrame({"id": [*FORMULAS, "ok.png"], "value": np.linspace(-1, 1, len(FORMULAS) + 1),
                          "=header": ["x"] * (len(FORMULAS) + 1)})
    path = write_csv(frame, tmp_path / "t.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    numbers = {f"{v}" for v in frame["value"]}
    formulas = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and c not in numbers]
    assert formulas == []
    back = read_csv(path, "table")
    pd.testing.assert_frame_equal(back, frame)


def test_report_tables_are_neutralised_and_markdown_escaped(tmp_path):
    frame = pd.DataFrame({"route": ["=HYPERLINK(\"http://evil\")", "<script>alert(1)</script>", "[x](http://evil)"],
                          "accuracy": [0.9, 0.8, 0.7]})
    csv_path, _, md_path = write_table(frame, tmp_path, "t")
    text = csv_path.read_text()
    assert "\n=HYPERLINK" not in text and "'=HYPERLINK" in text
    md = md_path.read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "[x](http" not in md and "\\[x\\](http" in md
    assert "a \\| b" in markdown_table(["h"], [["a | b"]])


def test_experiment_predictions_round_trip_through_the_safe_writer(tmp_path):
    from hierarchy.experiment.runner import _load_predictions, _save_predictions

    table = simulate_predictions(6, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",))
    table["id"] = ["=cmd|' /C calc'!A0", "-x.png", "+y.png", "@z.png", "a.png", "b.png"]
    table["path"] = [f"/data/{i}" for i in table["id"]]
    _save_predictions(table, tmp_path / "p.csv")
    assert "\n=cmd" not in (tmp_path / "p.csv").read_text()
    frame = table[["id", "path"]]
    back = _load_predictions(tmp_path / "p.csv", frame)
    assert back["id"].tolist() == table["id"].tolist() and back["path"].tolist() == table["path"].tolist()


def test_utf16_csv_names_the_encoding(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path,label\na.png,glioma\n", encoding="utf-16")
    with pytest.raises(ValueError, match="UTF-16"):
        read_csv(path, "dataset CSV")
    path.write_bytes("path,label\na.png,glioma\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match="UTF-16LE"):
        read_csv(path, "dataset CSV")


def test_semicolon_csv_gets_the_separator_that_works(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path;label\na.png;glioma\n")
    with pytest.raises(ValueError, match="separated by ';'"):
        read_csv(path, "dataset CSV", required={"path", "label"})
    from hierarchy.data import index_dataset

    with pytest.raises(ValueError, match="separated by ';'"):
        index_dataset(path)


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_report_predictions_folder_and_list_run_record(tmp_path, capsys):
    assert main(["report", "--predictions", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    _one_line(capsys, str(tmp_path), "is a folder")
    pred = tmp_path / "pred.csv"
    simulate_predictions(20, classes=TUMOR_CLASSES, planes=PLANES, routes=("flat",)).to_csv(pred, index=False)
    record = tmp_path / "run.json"
    record.write_text(json.dumps([1, 2]))
    assert main(["report", "--predictions", str(pred), "--out", str(tmp_path / "r"),
                 "--run-record", str(record)]) == 2
    _one_line(capsys, str(record), "JSON object", "list")
