"""Every example in examples/ runs as a smoke test (tiny synthetic data, seconds each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the examples as subprocesses

ROOT = Path(__file__).resolve().parents[1]
# example -> (lines its output must hold, files it must write under its output folder)
EXAMPLES = {
    "custom_csv_dataset.py": (["classes: ('cyst', 'edema', 'normal')", "reloaded:"], ["router/router.json"]),
    "mixed_components.py": (["SklearnClassifier", "same predictions: True"], ["router/router.json"]),
    "report_from_predictions.py": (["roc.png", "headline.csv"],
                                   ["report/report.md", "report/manifest.json", "report/figures/roc.pdf"]),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines, files = EXAMPLES[name]
    for expected in lines:
        assert expected in result.stdout
    for path in files:
        assert (tmp_path / "out" / path).is_file(), path
