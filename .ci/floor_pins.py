"""Print ``name==floor`` (one a line) for each named dependency of pyproject.toml, for ``make test-floors``.

Usage: python .ci/floor_pins.py numpy pandas ...   (a name pyproject.toml does not floor is an error)
"""

import re
import sys
from pathlib import Path

import tomllib

dependencies = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
floors = {}
for requirement in dependencies:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
    if match:
        floors[match[1].lower()] = f"{match[1]}=={match[2]}"
missing = [name for name in sys.argv[1:] if name.lower() not in floors]
if missing:
    sys.exit(f"pyproject.toml has no '>=' floor for {missing}")
print("\n".join(floors[name.lower()] for name in sys.argv[1:]))
