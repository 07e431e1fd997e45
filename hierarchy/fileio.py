"""Atomic file writes, folder swaps that survive a kill, folder locks and JSON I/O: readers never see half a
file, and errors name the file.

A write goes to a uniquely named temporary file beside the target, is flushed to disk, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows). If writing fails (a full disk), the temporary
file is removed, the target keeps its previous content and the error names the target; temporary files of
a killed writer are removed by the next write of the same file. A folder of several files (a saved Router,
a model bundle) is staged in a sibling folder and moved in by :func:`swap_entries`, whose journal lets
:func:`finish_swap` complete it after a kill.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

try:
    import fcntl
except ModuleNotFoundError:  # Windows: folder_lock holds no lock
    fcntl = None


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
    _remove_stale_temporaries(path)
    # a unique name, so concurrent writers never share one; "x" mode keeps the umask's permissions
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:  # a failed write (a full disk) says which file it was writing
            raise type(err)(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one that we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files that writes of ``path`` by processes that no longer run left behind."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


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


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """``data`` as the text of a JSON file: indented, ending in a newline; numpy values become plain numbers
    and NaN becomes ``null`` (see ``to_jsonable``); any other value JSON cannot hold (a ``Path``, a timestamp)
    becomes its ``str``. The one format of every JSON file the library writes."""
    return json.dumps(to_jsonable(data), indent=2, sort_keys=sort_keys, default=str) + "\n"


def write_json(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON (``json_text``) to ``path`` atomically; returns ``path``."""
    return atomic_write_text(path, json_text(data, sort_keys=sort_keys))


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


# -- folders replaced as a whole, safe against a kill at any moment ---------------------------------------------
SWAP_JOURNAL = ".swap-journal.json"


@contextmanager
def folder_lock(directory: str | os.PathLike, *, shared: bool = False, create: bool = False) -> Iterator[None]:
    """Hold a lock on the folder ``directory`` (``flock`` on the folder itself: no lock file is left behind).

    ``shared`` locks may be held by several readers at once and wait for an exclusive (writing) lock to be
    released, and the other way round. With ``create`` a missing folder is created first (the umask applies).
    Where the platform has no ``fcntl`` (Windows) this holds no lock.
    """
    directory = Path(directory)
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None or not directory.is_dir():
        yield
        return
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _staged_names(names: Iterable[str], last: str | None) -> list[str]:
    """``names`` sorted, ``last`` moved to the end (the entry whose arrival completes the folder)."""
    return sorted(names, key=lambda name: (name == last, name))


def swap_entries(staging: Path, directory: Path, replaced: Iterable[str], *, last: str | None = None) -> None:
    """Move every entry of the folder ``staging`` into ``directory``, replacing ``directory``'s entries named in
    ``replaced`` (those only: every other entry of ``directory`` stays where it is).

    The moves are journaled in ``directory/.swap-journal.json``, so a process killed half-way leaves a folder
    that :func:`finish_swap` completes (the next save or load calls it); nothing is left hidden. ``last`` is
    the entry moved in last (a manifest, so that a reader without a lock never sees it with half the parts)
    and the first one moved out. Hold :func:`folder_lock` on ``directory`` while calling this.
    """
    directory.mkdir(parents=True, exist_ok=True)
    present = {entry.name for entry in directory.iterdir()}
    incoming = {entry.name for entry in staging.iterdir()}
    journal = {"staging": staging.name, "aside": f".{directory.name}.old-{uuid.uuid4().hex}",
               "incoming": _staged_names(incoming, last),
               "replaced": _staged_names(set(replaced) & present | incoming & present, last)[::-1]}
    if (directory.parent / journal["aside"]).exists() or staging.parent != directory.parent:
        raise ValueError(f"staging folder {staging} must be a sibling of {directory}")
    atomic_write_text(directory / SWAP_JOURNAL, json.dumps(journal))
    finish_swap(directory)


def finish_swap(directory: str | os.PathLike) -> bool:
    """Complete a :func:`swap_entries` into ``directory`` that a kill or a crash interrupted (each step is
    idempotent, so this may itself be interrupted and run again). Returns whether there was one to finish.
    Hold :func:`folder_lock` on ``directory`` while calling this."""
    directory = Path(directory)
    path = directory / SWAP_JOURNAL
    if not path.is_file():
        return False
    journal = read_json(path, what="interrupted-save journal")
    if not isinstance(journal, dict):
        raise ValueError(f"{path}: not a journal of an interrupted save (not a JSON object); move it away")
    names = [journal.get("staging"), journal.get("aside"), *journal.get("incoming", []), *journal.get("replaced", [])]
    if not all(isinstance(n, str) and n and "/" not in n and "\\" not in n and n not in (".", "..") for n in names) \
            or not all(n.startswith(f".{directory.name}.") for n in names[:2]):
        raise ValueError(f"{path}: not a journal of an interrupted save (malformed names); move it away")
    staging, aside = directory.parent / journal["staging"], directory.parent / journal["aside"]
    aside.mkdir(exist_ok=True)
    for name in journal["replaced"]:  # out first, so the new entry never lands inside the old one
        if (directory / name).exists() or (directory / name).is_symlink():
            if (staging / name).exists() or name not in journal["incoming"]:  # still the old entry
                os.replace(directory / name, aside / name)
    for name in journal["incoming"]:
        if (staging / name).exists() or (staging / name).is_symlink():
            os.replace(staging / name, directory / name)
    path.unlink()
    for folder in (aside, staging):
        shutil.rmtree(folder, ignore_errors=True)
    return True
