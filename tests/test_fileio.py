"""Atomic writes leave the old file or the new one, never half of one; JSON errors name the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hierarchy.fileio import atomic_write, atomic_write_text, read_json, write_json


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write_text(path, "old")

    def broken(handle):
        handle.write(b"half of a new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_write_json_makes_numpy_and_nan_plain(tmp_path):
    path = write_json(tmp_path / "r.json", {"n": np.int64(3), "x": np.float32(0.5), "gap": float("nan"),
                                            "where": tmp_path, "a": np.arange(2)})
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "gap": None, "where": str(tmp_path), "a": [0, 1]}
    assert read_json(path) == json.loads(path.read_text())


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run record .*missing\.json does not exist"):
        read_json(tmp_path / "missing.json", what="run record")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    with pytest.raises(ValueError, match=r"stage log .*broken\.json is not valid JSON"):
        read_json(broken, what="stage log")
