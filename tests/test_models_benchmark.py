"""The speed benchmark runs end to end on tiny inputs and writes its tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmark_speed.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writes_csv_and_markdown_with_both_data_settings(benchmark, synthetic_root, tmp_path):
    argv = ["--models", "simple_cnn", "--data", str(synthetic_root / "classification_task" / "train"),
            "--image-size", "32", "--batch-size", "4", "--batches", "1", "--repeats", "2", "--workers", "0",
            "--device", "cpu", "--out", str(tmp_path)]
    assert benchmark.main(argv) == 0
    table = pd.read_csv(tmp_path / "speed_cpu.csv")
    assert set(zip(table["mode"], table["data"], strict=True)) == {("inference", "excluded"), ("inference", "included"),
                                                      ("training", "excluded"), ("training", "included")}
    assert (table["images_per_s"] > 0).all()
    assert (table["runs"].str.count(";") == 1).all()
    assert "| simple_cnn |" in (tmp_path / "speed_cpu.md").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        benchmark.main(argv)


def test_empty_data_folder_is_an_error(benchmark, tmp_path):
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        benchmark.image_paths(tmp_path, 4)
