"""Atomic file writes and JSON I/O: readers never see half a file, and errors name the file.

A write goes to a uniquely named temporary file beside the target, is flushed to disk, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows). If writing fails, the temporary file is
removed and the target keeps its previous content.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a temporary binary file, then move it to ``path``.

    Parameters
    ----------
    path
        The file to create or replace; its folder is created when missing.
    write
        Writes the content to the open binary handle it is given (e.g. ``lambda h: np.save(h, a)``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name, so concurrent writers never share one; "x" mode keeps the umask's permissions
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """Nested dicts/lists of numpy and Python scalars as plain JSON types, NaN as None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if np.isnan(obj) else float(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def write_json(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically; returns ``path``.

    numpy values become plain numbers and NaN becomes ``null`` (see ``to_jsonable``); any other
    value JSON cannot hold (a ``Path``, a timestamp) is written as its ``str``.
    """
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=sort_keys, default=str)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike, *, what: str = "JSON file") -> Any:
    """The parsed content of the JSON file ``path``.

    Parameters
    ----------
    path
        The file to read.
    what
        What the file is, for error messages (``"experiment config"``, ``"run record"`` ...).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (the message names it and ``what``).
    ValueError
        ``path`` is not valid UTF-8 JSON (the message names it and says where it is broken).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the file ``path``'s bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
