"""Atomic file writes, folder swaps that survive a kill, folder locks and JSON I/O: readers never see half a
file, and errors name the file.

A write goes to a uniquely named temporary file beside the target, is flushed to disk, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows). If writing fails (a full disk), the temporary
file is removed, the target keeps its previous content and the error names the target; temporary files of
a killed writer are removed by the next write of the same file. A folder of several files (a saved Router,
a model bundle, a report) is written by :func:`staged_swap` into a hidden sibling folder under the folder's
lock and moved in by :func:`swap_entries`, whose journal lets :func:`finish_swap` complete it after a kill.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
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

logger = logging.getLogger(__name__)


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
    becomes its ``str``. A list holding no lists or dicts stays on one line, so a curve of a thousand points
    is one line, not a thousand. The one format of every JSON file the library writes."""
    return _json_lines(to_jsonable(data), "", sort_keys) + "\n"


def _json_lines(value: Any, indent: str, sort_keys: bool) -> str:
    """``value`` as indented JSON text starting at ``indent`` (the body of ``json_text``)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = sorted(value.items()) if sort_keys else value.items()
        body = ",\n".join(f"{inner}{json.dumps(key)}: {_json_lines(item, inner, sort_keys)}" for key, item in items)
        return "{\n" + body + "\n" + indent + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(item, (dict, list, tuple)) for item in value):
        return "[\n" + ",\n".join(inner + _json_lines(item, inner, sort_keys) for item in value) + "\n" + indent + "]"
    return json.dumps(value, default=str)


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


def walk_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every file under ``root`` (symlinked folders not followed)."""
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def _staged_names(names: Iterable[str], last: str | None) -> list[str]:
    """``names`` sorted, ``last`` moved to the end (the entry whose arrival completes the folder)."""
    return sorted(names, key=lambda name: (name == last, name))


def _check_destinations(directory: Path, names: Iterable[str]) -> None:
    """Refuse (``FileExistsError`` naming it) a nested entry to be moved in whose parent in ``directory`` is a
    file or a symlink, before anything moves."""
    for name in names:
        parent = directory
        for part in Path(name).parts[:-1]:
            parent = parent / part
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise FileExistsError(f"{parent} is not a folder, so {directory / name} cannot be written; move it "
                                      "away or choose another folder")


def swap_entries(staging: Path, directory: Path, replaced: Iterable[str], *, last: str | None = None,
                 entries: Iterable[str] | None = None) -> None:
    """Move every entry of the folder ``staging`` into ``directory``, replacing ``directory``'s entries named in
    ``replaced`` (those only: every other entry of ``directory`` stays where it is).

    ``entries`` are the relative POSIX paths of the files of ``staging`` to move one by one (so that a
    replaced file's folder keeps the files nobody replaces); by default each top-level entry moves as a whole.
    The moves are journaled in ``directory/.swap-journal.json``, so a process killed half-way leaves a folder
    that :func:`finish_swap` completes (the next save or load calls it); nothing is left hidden. ``last`` is
    the entry moved in last (a manifest, so that a reader without a lock never sees it with half the parts)
    and the first one moved out. Hold :func:`folder_lock` on ``directory`` while calling this.
    """
    directory.mkdir(parents=True, exist_ok=True)
    incoming = {entry.name for entry in staging.iterdir()} if entries is None else set(entries)
    _check_destinations(directory, incoming)
    present = {name for name in set(replaced) | incoming
               if (directory / name).exists() or (directory / name).is_symlink()}
    journal = {"staging": staging.name, "aside": f".{directory.name}.old-{uuid.uuid4().hex}",
               "incoming": _staged_names(incoming, last), "replaced": _staged_names(present, last)[::-1]}
    if (directory.parent / journal["aside"]).exists() or staging.parent != directory.parent:
        raise ValueError(f"staging folder {staging} must be a sibling of {directory}")
    atomic_write_text(directory / SWAP_JOURNAL, json.dumps(journal))
    finish_swap(directory)


def _relative(name: object) -> bool:
    """Whether ``name`` is a relative POSIX path that stays inside its folder (no ``..``, no backslash)."""
    return isinstance(name, str) and bool(name) and "\\" not in name and not name.startswith("/") \
        and all(part not in ("", ".", "..") for part in name.split("/"))


def _remove_empty_parents(directory: Path, name: str) -> None:
    """Remove the folders between ``directory/name`` and ``directory`` that are left empty."""
    folder = (directory / name).parent
    while folder != directory and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _move(source: Path, destination: Path, *, nested: bool) -> None:
    """``os.replace`` that first creates the destination's folder for a ``nested`` entry."""
    if nested:
        destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)


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
    if not all(map(_relative, names)) or not all("/" not in n and n.startswith(f".{directory.name}.") for n in names[:2]):
        raise ValueError(f"{path}: not a journal of an interrupted save (malformed names); move it away")
    staging, aside = directory.parent / journal["staging"], directory.parent / journal["aside"]
    aside.mkdir(exist_ok=True)
    for name in journal["replaced"]:  # out first, so the new entry never lands inside the old one
        if (directory / name).exists() or (directory / name).is_symlink():
            if (staging / name).exists() or name not in journal["incoming"]:  # still the old entry
                _move(directory / name, aside / name, nested="/" in name)
    for name in journal["incoming"]:
        if (staging / name).exists() or (staging / name).is_symlink():
            _move(staging / name, directory / name, nested="/" in name)
    for name in journal["replaced"]:
        _remove_empty_parents(directory, name)
    path.unlink()
    for folder in (aside, staging):
        shutil.rmtree(folder, ignore_errors=True)
    return True


def leftovers(directory: str | os.PathLike) -> list[Path]:
    """The staged and set-aside folders that killed saves into ``directory`` left beside it."""
    directory = Path(directory)
    name = glob.escape(directory.name)
    return [p for pattern in (f".{name}.saving-*", f".{name}.old-*") for p in directory.parent.glob(pattern)
            if p.is_dir() and not p.is_symlink()]


def clear_leftovers(directory: str | os.PathLike) -> None:
    """Finish a save into ``directory`` that was killed while moving its parts in, and remove the staged and
    set-aside folders that saves killed earlier left beside it. Hold :func:`folder_lock` on ``directory``
    (so that no save is running)."""
    directory = Path(directory)
    if directory.is_dir() and finish_swap(directory):
        logger.warning("finished the save into %s that was interrupted while moving its files in", directory)
    for leftover in leftovers(directory):
        logger.warning("removing %s, left by a save into %s that was killed", leftover, directory)
        shutil.rmtree(leftover, ignore_errors=True)


def tidy_folder(directory: str | os.PathLike) -> None:
    """When a save into ``directory`` was interrupted or left folders beside it, finish it and remove them
    under the folder's lock (:func:`clear_leftovers`); otherwise take no lock and change nothing."""
    directory = Path(directory)
    if (directory / SWAP_JOURNAL).is_file() or leftovers(directory):
        with folder_lock(directory):
            clear_leftovers(directory)


class UnfinishedSwapError(RuntimeError):
    """A swap that failed half-way and could not be finished at once; the next save or load finishes it."""


class Staging:
    """A folder's new entries being written (see :func:`staged_swap`).

    Attributes
    ----------
    target
        The folder whose entries are replaced (absolute, a symlink resolved).
    path
        The hidden sibling folder of ``target`` to write the new entries into.
    replaced
        The entries of the target folder that the new ones replace (set by the caller; entries that the new
        ones bear the name of are replaced anyway). Every other entry stays where it is.
    entries
        The relative paths of the files of ``path`` to move in one by one, or None to move each top-level
        entry as a whole (see :func:`swap_entries`).
    """

    def __init__(self, target: Path):
        self.target = target
        self.path = target.parent / f".{target.name}.saving-{uuid.uuid4().hex}"
        self.replaced: set[str] = set()
        self.entries: list[str] | None = None


@contextmanager
def staged_swap(directory: str | os.PathLike, *, last: str | None = None) -> Iterator[Staging]:
    """Replace entries of the folder ``directory`` with what the ``with`` block writes, so that a process killed
    at any moment leaves either the old entries or the new ones, never a mix and nothing hidden.

    For the whole block an exclusive :func:`folder_lock` is held on ``directory`` (created when missing; a
    symlink stands for the folder it points to); first a swap an earlier process left half-done is finished and
    the folders killed saves left beside it are removed. The block writes into the hidden sibling
    ``Staging.path`` (``.<name>.saving-<id>``, same filesystem) and sets ``Staging.replaced``; when it ends,
    :func:`swap_entries` moves the new entries in (``last`` last), journaled. When the block raises, the staged
    files are removed and ``directory`` is as it was (a folder this call created is removed again).

    Raises
    ------
    UnfinishedSwapError
        Moving the entries in failed half-way twice (the next save or load finishes it; nothing is lost).
    """
    directory = Path(os.path.abspath(directory))  # "." and "run/" have a parent and a name
    if directory.is_symlink():  # a link to a folder elsewhere: stage beside that folder (one filesystem)
        directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a folder")
    created = not directory.exists()
    staging = Staging(directory)
    try:
        with folder_lock(directory, create=True):
            clear_leftovers(directory)
            try:
                staging.path.mkdir()
            except PermissionError as err:
                raise PermissionError(err.errno, f"cannot write into {directory}: the new files are staged beside "
                                      f"it, and its parent folder {directory.parent} is not writable") from err
            yield staging
            try:
                swap_entries(staging.path, directory, staging.replaced, last=last, entries=staging.entries)
            except Exception as err:
                if not (directory / SWAP_JOURNAL).is_file():
                    raise
                _finish_or_explain(directory, err)
    except BaseException:
        if not (directory / SWAP_JOURNAL).is_file():  # the old entries are untouched: drop the staged ones
            shutil.rmtree(staging.path, ignore_errors=True)
            if created and directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise


def _finish_or_explain(directory: Path, err: Exception) -> None:
    """Finish a swap that failed half-way (a transient error); if that fails too, say that the next save or
    load of ``directory`` finishes it."""
    try:
        finish_swap(directory)
    except Exception as again:
        raise UnfinishedSwapError(f"{directory}: the save failed while moving the new files in ({err}; then "
                                  f"{again}); the next save or load of this folder finishes it, and no file is "
                                  "lost") from err
    logger.warning("the save into %s hit %s while moving the new files in, and finished on a second try",
                   directory, err)
