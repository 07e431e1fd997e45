"""pyproject.toml declares what the code needs, at floors that provide it; the licence file matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floors(requirements: list[str]) -> dict[str, tuple[int, ...]]:
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)\s*", requirement)
        assert match, f"{requirement!r} should be 'name>=floor'"
        floors[match[1].lower()] = tuple(int(part) for part in match[2].split("."))
    return floors


# What the code calls, and the first release that has it (checked against each project's changelog).
@pytest.mark.parametrize(("package", "needed", "why"), [
    ("numpy", (2, 0), "np.bitwise_count"),
    ("scikit-learn", (1, 7), "brier_score_loss(labels=...) on multiclass probabilities"),
    ("torch", (2, 3), "torch.amp.GradScaler(device)"),
    ("scipy", (1, 13), "wheels built for NumPy 2"),
    ("pandas", (2, 2, 2), "wheels built for NumPy 2"),
    ("jinja2", (3, 1, 2), "DataFrame.to_latex"),
])
def test_dependency_floors_provide_what_the_code_calls(package, needed, why):
    floors = _floors(PROJECT["dependencies"])
    assert package in floors, f"{package} is not declared ({why})"
    assert floors[package] >= needed, f"{package} floor {floors[package]} is older than {needed} ({why})"


def test_test_tools_are_declared():
    assert {"pytest", "hypothesis"} <= set(_floors(PROJECT["optional-dependencies"]["dev"]))


def test_licence_file_matches_pyproject():
    assert PROJECT["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
