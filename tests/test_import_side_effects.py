"""Importing the library changes nothing global: matplotlib keeps the backend the user chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_reports_keeps_the_users_matplotlib_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import sys; "
            "import hierarchy.reports, hierarchy.reports.build, hierarchy.reports.figures, hierarchy.reports.style; "
            "print(matplotlib.get_backend()); print('matplotlib.pyplot' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MPLBACKEND", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True)
    assert done.stdout.split() == ["svg", "False"]


def test_routing_does_not_import_metrics():
    code = "import sys, hierarchy.routing; print(sorted(m for m in sys.modules if m.startswith('hierarchy.metrics')))"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True)
    assert done.stdout.strip() == "[]"
