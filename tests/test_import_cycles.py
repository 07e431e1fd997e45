"""Every hierarchy module imports on its own, first, in a fresh interpreter (an import cycle fails whichever
module starts it), and function-level imports of hierarchy modules, which would hide such a cycle, are
limited to the listed ones (issue 23); reading images (`hierarchy.data`, `hierarchy.data.image_io`) imports
neither pydicom nor nibabel until a scanner file is read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hierarchy"
# function-level imports of hierarchy modules that remain, and why: none hides a cycle, each keeps an entry
# point light (third-party imports inside functions, such as pydicom's and nibabel's, are not counted)
DEFERRED = {
    "__init__.py": "lazy Router: `import hierarchy` stays light",
    "cli/evaluate.py": "sub-commands import their libraries only when run",
    "cli/predict.py": "sub-commands import their libraries only when run",
    "cli/report.py": "sub-commands import their libraries only when run",
    "cli/train.py": "sub-commands import their libraries only when run",
}

_SCRIPT = """
import importlib, pkgutil, sys
import hierarchy
names = sorted(m.name for m in pkgutil.walk_packages(hierarchy.__path__, "hierarchy.")
               if m.name != "hierarchy.__main__")  # it runs the command
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "hierarchy" or m.startswith("hierarchy.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as err:  # report every module that cannot be imported first
        failed.append(f"{name}: {type(err).__name__}: {err}")
print(len(names))
print("\\n".join(failed))
"""


def _fresh(script: str) -> str:
    """What ``script`` prints, run in a fresh interpreter that imports this checkout's hierarchy."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter():
    count, *failed = _fresh(_SCRIPT).split("\n")
    assert int(count) == sum(1 for _ in PACKAGE.rglob("*.py")) - 2  # all but hierarchy and __main__
    assert [f for f in failed if f] == []


def _deferred_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hierarchy") \
                        or isinstance(node, ast.Import) and any(a.name.startswith("hierarchy") for a in node.names):
                    lines.append(node.lineno)
    return lines


def test_no_new_deferred_imports_of_hierarchy_modules():
    found = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if _deferred_imports(p)}
    assert found == set(DEFERRED), {"new": sorted(found - set(DEFERRED)), "stale": sorted(set(DEFERRED) - found)}
    assert not _deferred_imports(PACKAGE / "provenance.py")


def test_image_reading_imports_no_scanner_libraries():
    script = ("import sys, hierarchy.data, hierarchy.data.image_io, hierarchy.data.scanner_index\n"
              "print(sorted(m for m in ('pydicom', 'nibabel') if m in sys.modules))")
    assert _fresh(script) == "[]"
