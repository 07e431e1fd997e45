"""What every run records beside its results: configuration, seed, versions and data hashes."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

_PACKAGES = ("hierarchy", "torch", "torchvision", "timm", "scikit-learn", "numpy", "pandas",
             "pillow", "captum", "scipy", "safetensors")


def software_versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour the results depend on."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# Results, not code: a run that rewrites its own committed report (``--restart``) does not make the code dirty.
OUTPUTS = "reports"


def git_commit(path: str | Path = ".") -> str | None:
    """The commit of the source tree the run used, with ``+dirty`` when it had local edits (edits under the
    repository's ``reports/`` folder, where runs write their results, are not edits of the source)."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", f":(top,exclude){OUTPUTS}"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def source_commit() -> str | None:
    """The commit of the hierarchy source in use (``git_commit`` of the package's folder; None outside git)."""
    return git_commit(Path(__file__).resolve().parent)


def _rows(frame: pd.DataFrame) -> list[list[str]]:
    """The (id, sha256, label, plane, split) rows of a dataset index; its paths when it has no id or sha256."""
    cols = [c for c in ("id", "sha256", "label", "plane", "split") if c in frame.columns]
    if not {"id", "sha256"} & set(cols) and "path" in frame.columns:
        cols.insert(0, "path")
    return frame[cols].astype(str).to_numpy().tolist()


def data_fingerprint(frame: pd.DataFrame) -> str:
    """One sha256 over the *set* of rows of a dataset index: the same rows in any order give the same hash.

    For records of which images a run used. Anything stored in frame order (features, predictions) must
    be keyed with ``ordered_data_fingerprint`` instead.
    """
    return hashlib.sha256(json.dumps(sorted(map(tuple, _rows(frame)))).encode()).hexdigest()


def ordered_data_fingerprint(frame: pd.DataFrame) -> str:
    """One sha256 over the rows of a dataset index in frame order: reordering the rows changes it."""
    return hashlib.sha256(json.dumps(_rows(frame)).encode()).hexdigest()


def data_hashes(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Per named subset (train, val, test ...): image count and fingerprint."""
    return {name: {"n_images": int(len(f)), "sha256": data_fingerprint(f)} for name, f in frames.items()}


def json_sha256(value: Any, *, allow_nan: bool = False) -> str:
    """Hex sha256 of ``value``'s canonical JSON (sorted keys, no spaces): the one hash of settings, cache keys
    and manifests. Values that are not plain JSON raise ``TypeError`` (``ValueError`` for NaN unless allowed)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                     allow_nan=allow_nan).encode()).hexdigest()


# Environment variables that change results; a recorded command line starts with those that are set.
RESULT_ENV = ("HIERARCHY_AMP",)


def command_line(parts: Sequence[str]) -> str:
    """``parts`` as one shell command, preceded by the set variables of ``RESULT_ENV`` (``HIERARCHY_AMP=off
    python ...``), so that the recorded command reproduces the run."""
    env = [f"{name}={shlex.quote(os.environ[name])}" for name in RESULT_ENV if os.environ.get(name)]
    return " ".join([*env, *parts])


def run_record(config: dict[str, Any], *, runtime: str, seed: int | None = None,
               frames: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """A JSON-ready record of a run: when, what code, which software, which data, which settings, and
    ``runtime``, the caller's resolved runtime (``hierarchy.training.resolve_runtime().describe()``, e.g.
    ``cpu/bfloat16/channels_last``; passed in because hierarchy.training imports this module)."""
    commit = source_commit()
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        # a run from a working tree with local edits is reproduced by no commit; reports say so at the top
        "uncommitted_changes": None if commit is None else commit.endswith("+dirty"),
        "versions": software_versions(),
        "runtime": runtime,
        "seed": seed,
        "environment": {name: os.environ[name] for name in RESULT_ENV if os.environ.get(name)},
        "config": config,
        "data": data_hashes(frames or {}),
    }
