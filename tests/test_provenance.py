"""Data fingerprints: the set of rows for records, the rows in order for anything stored in frame order."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from hierarchy.provenance import (
    command_line,
    data_fingerprint,
    data_hashes,
    git_commit,
    ordered_data_fingerprint,
    run_record,
)
from hierarchy.training import resolve_runtime

FRAME = pd.DataFrame({"id": ["a", "b", "c"], "sha256": ["1", "2", "3"], "label": ["glioma", "glioma", "no_tumor"],
                      "path": ["/x/a.png", "/x/b.png", "/x/c.png"]})


def test_record_fingerprint_ignores_order_and_ordered_one_does_not():
    shuffled = FRAME.iloc[[2, 0, 1]]
    assert data_fingerprint(shuffled) == data_fingerprint(FRAME)
    assert ordered_data_fingerprint(shuffled) != ordered_data_fingerprint(FRAME)
    assert ordered_data_fingerprint(FRAME.copy()) == ordered_data_fingerprint(FRAME)
    assert data_hashes({"train": shuffled}) == {"train": {"n_images": 3, "sha256": data_fingerprint(FRAME)}}


def test_fingerprints_change_with_the_content_not_the_machine():
    assert data_fingerprint(FRAME.assign(path="/elsewhere/" + FRAME["id"])) == data_fingerprint(FRAME)
    assert data_fingerprint(FRAME.assign(label="meningioma")) != data_fingerprint(FRAME)
    # without ids or hashes the paths are all that tells the images apart
    paths_only = FRAME[["path", "label"]]
    assert ordered_data_fingerprint(paths_only.iloc[::-1]) != ordered_data_fingerprint(paths_only)


def test_command_line_starts_with_the_environment_that_changes_results(monkeypatch):
    monkeypatch.delenv("HIERARCHY_AMP", raising=False)
    assert command_line(["python", "x.py", "--out", "a"]) == "python x.py --out a"
    monkeypatch.setenv("HIERARCHY_AMP", "off")
    assert command_line(["python", "x.py"]) == "HIERARCHY_AMP=off python x.py"


def test_run_record_names_the_default_runtime(monkeypatch):
    monkeypatch.setenv("HIERARCHY_AMP", "off")
    assert resolve_runtime().describe().startswith(("cpu/float32/", "cuda/float32/"))
    assert run_record({}, runtime="cpu/float32/contiguous")["runtime"] == "cpu/float32/contiguous"


def test_git_commit_is_dirty_for_edited_code_but_not_for_rewritten_results(tmp_path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.md").write_text("old result\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    clean = git_commit(tmp_path)
    assert clean is not None and not clean.endswith("+dirty")
    (tmp_path / "reports" / "report.md").write_text("new result\n")  # a run rewriting its committed report
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"
