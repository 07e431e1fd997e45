"""Every hierarchy module imports on its own, first, in a fresh interpreter (an import cycle fails whichever
module starts it), and function-level imports of hierarchy modules, which would hide such a cycle, are
limited to the listed ones (issue 23)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hierarchy"
# function-level imports of hierarchy modules that remain, and why
DEFERRED = {
    "__init__.py": "lazy Router: `import hierarchy` stays light",
    "cli/__init__.py": "sub-commands import their libraries only when run",
    "cli/audit.py": "sub-commands import their libraries only when run",
    "cli/evaluate.py": "sub-commands import their libraries only when run",
    "cli/predict.py": "sub-commands import their libraries only when run",
    "cli/report.py": "sub-commands import their libraries only when run",
    "cli/train.py": "sub-commands import their libraries only when run",
    "data/scanner_index.py": "pydicom only when a DICOM folder is indexed",
    "data/counterfactual_augment.py": "the dataset only when counterfactual pasting is on",
    "data/image_io.py": "volume slices (known cycle: image_io <-> volume)",
    "data/volume.py": "DICOM/NIfTI readers (known cycle: volume <-> dicom, nifti)",
    "experiment/shortcut_tests.py": "report tables only when the section is written",
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


def test_every_module_imports_first_in_a_fresh_interpreter():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True)
    count, *failed = done.stdout.strip().split("\n")
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
    assert found <= set(DEFERRED), sorted(found - set(DEFERRED))
    assert not _deferred_imports(PACKAGE / "provenance.py")
