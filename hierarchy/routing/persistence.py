"""A saved Router folder: written so that a reader sees the whole of one save or none of it, and read only
after every file it records has been verified.

A saved Router ``D`` is ``D/router.json`` plus whatever parts the Router writes beside it (the component
folders ``plane/``, ``experts/<group>/``, ``flat/``, optional ``ood/`` and ``depth_ood/`` ...); this module knows no fixed list.

Saving (``save_folder``), under an exclusive lock on ``D`` (``hierarchy.fileio.folder_lock``)
    1. The parts and ``router.json`` are written into a new hidden sibling ``.D.saving-<generation>`` (same
       parent, so the renames below stay on one filesystem). ``router.json`` records a new generation id, the
       sha256 of every file written and a checksum of its own content.
    2. The old Router's parts (``router.json`` first) are moved aside and the new ones moved in (``router.json``
       last) by ``hierarchy.fileio.swap_entries``, which journals the moves in ``D/.swap-journal.json``. Entries
       of ``D`` that belong to no Router (the ``training/`` logs of ``hierarchy train``, a user's own files) are
       never moved. A save killed at any point is finished by the next save or load (``finish_swap``), and the
       staged or set-aside folders a killed save left are removed by the next save: nothing stays hidden.
    Loading takes a shared lock on ``D`` for the whole load (``locked_for_reading``), so it never reads half of
    one save and half of another.

Loading (``read_manifest``, ``load_part``)
    ``router.json`` must be a JSON object of this format version with fields of the right types, its own
    checksum must match, every recorded path must stay inside ``D`` (no absolute paths, ``..`` or symlinks
    leading out), every recorded file must exist with its recorded sha256, and the Router's parts may hold no
    file the save did not write. Each refusal is a ``RouterError`` naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from hierarchy.fileio import (
    SWAP_JOURNAL,
    UnfinishedSwapError,
    folder_lock,
    read_json,
    sha256_file,
    staged_swap,
    tidy_folder,
    to_jsonable,
    walk_files,
    write_json,
)
from hierarchy.predictions import ROUTES
from hierarchy.provenance import json_sha256
from hierarchy.routing.ood import DEPTH_KINDS

logger = logging.getLogger(__name__)

ROUTER_FILE = "router.json"
FORMAT_VERSION = 3
_HEX64 = re.compile(r"[0-9a-f]{64}")
_GENERATION = re.compile(r"[0-9a-f]{32}")
T = TypeVar("T")


class RouterError(ValueError):
    """A saved Router that is corrupt, edited after saving, half-written, mixed from two saves or malformed;
    the message names the file."""


# -- saving --------------------------------------------------------------------------------------------------
def content_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, its ``checksum`` field left out."""
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return json_sha256(body, allow_nan=True)


def _recorded_parts(manifest_path: Path) -> set[str]:
    """Top-level names of the parts an existing ``router.json`` records (empty when it cannot be read)."""
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError):
        return set()
    if not isinstance(manifest, dict):
        return set()
    paths = [*(manifest.get("files") or {}), *(manifest.get("components") or {}).values()]
    for key in ("ood", "depth_ood"):
        if isinstance(manifest.get(key), dict):
            paths.append(manifest[key].get("directory"))
    return {p.split("/")[0] for p in paths if isinstance(p, str) and p}


def save_folder(directory: str | Path, write: Callable[[Path], dict[str, Any]], *, overwrite: bool = False) -> Path:
    """Save a Router to ``directory``: stage it in a sibling folder, then move its parts in under the folder's
    lock, journaled, so that a save killed at any point is finished by the next save or load
    (``hierarchy.fileio.staged_swap``).

    Parameters
    ----------
    directory : path
        The Router folder; other entries in it (e.g. training logs, a user's files) stay where they are.
    write : callable
        ``write(staging)`` writes every part of the Router under the folder ``staging`` and returns the
        manifest's content; ``generation``, ``files`` (sha256 of every file written) and ``checksum`` are added.
    overwrite : bool
        Replace the Router saved in ``directory``; without it an existing ``router.json`` is refused.

    Returns
    -------
    Path
        ``directory``.
    """
    if (Path(directory) / ROUTER_FILE).exists() and not overwrite:
        raise FileExistsError(f"{Path(directory) / ROUTER_FILE} exists; pass overwrite=True to replace it")
    try:
        with staged_swap(directory, last=ROUTER_FILE) as staging:
            try:
                manifest = dict(write(staging.path))
            except OSError as err:
                if err.filename is not None:
                    raise
                raise type(err)(err.errno, f"cannot save the Router to {staging.target}: {err.strerror or err}") from err
            written = sorted(p.relative_to(staging.path).as_posix() for p in walk_files(staging.path))
            if ROUTER_FILE in written:
                raise ValueError(f"a Router part may not be named {ROUTER_FILE}")
            manifest.update(generation=uuid.uuid4().hex,
                            files={rel: sha256_file(staging.path / rel) for rel in written})
            manifest = json.loads(json.dumps(to_jsonable(manifest), default=str))  # exactly what load will read
            manifest["checksum"] = content_checksum(manifest)
            parts = {rel.split("/")[0] for rel in written} | {ROUTER_FILE}
            if not overwrite:
                clash = sorted(e.name for e in staging.target.iterdir() if e.name in parts)
                if clash:
                    raise FileExistsError(f"{staging.target} already holds {clash}, which the Router would replace; "
                                          "pass overwrite=True or choose another folder")
            write_json(staging.path / ROUTER_FILE, manifest)
            staging.replaced = parts | _recorded_parts(staging.target / ROUTER_FILE)
    except UnfinishedSwapError as err:
        raise RouterError(str(err)) from err
    return Path(directory)


def locked_for_reading(directory: str | Path) -> AbstractContextManager[None]:
    """A shared lock on the Router folder ``directory`` for the whole of a load, so that no save swaps parts
    in meanwhile (a load waits for a running save, and a save for running loads); a save that was killed
    half-way is finished first (which needs write access to the folder)."""
    directory = Path(directory)
    interrupted = (directory / SWAP_JOURNAL).is_file()
    try:
        tidy_folder(directory)
    except OSError as err:
        if interrupted:
            raise RouterError(f"{directory}: a save into it was interrupted and cannot be finished ({err}); "
                              "load it once with write access to the folder") from err
    return folder_lock(directory, shared=True)


# -- loading -------------------------------------------------------------------------------------------------
def _fail(path: Path, message: str) -> RouterError:
    return RouterError(f"{path}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _labels(manifest: dict[str, Any], key: str, path: Path) -> list[str]:
    value = manifest.get(key)
    if not (isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value)):
        raise _fail(path, f"{key!r} must be a list of at least two distinct names, got {value!r}")
    return value


def _relative(rel: Any, path: Path, what: str) -> str:
    """``rel`` checked to be a plain relative path inside the folder (no absolute path, no '..')."""
    if not isinstance(rel, str) or not rel or "\\" in rel or ":" in rel:
        raise _fail(path, f"{what} {rel!r} is not a relative path inside the model folder")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise _fail(path, f"{what} {rel!r} leaves the model folder")
    return rel


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """``manifest`` (the parsed ``router.json`` at ``path``) checked field by field; returns it."""
    if not isinstance(manifest, dict):
        raise _fail(path, f"expected a JSON object, found a JSON {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(path, f"router format version {version!r}, this version of hierarchy reads version "
                          f"{FORMAT_VERSION} (retrain, or load it with the hierarchy release that saved it)")
    for key, kind in (("generation", str), ("checksum", str), ("files", dict), ("config", dict),
                      ("components", dict), ("temperatures", dict), ("record", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _fail(path, f"{key!r} must be a JSON {'object' if kind is dict else 'string'}, "
                              f"got {manifest.get(key)!r}")
    if not _GENERATION.fullmatch(manifest["generation"]) or not _HEX64.fullmatch(manifest["checksum"]):
        raise _fail(path, "'generation' or 'checksum' is malformed")
    files = manifest["files"]
    for rel, digest in files.items():
        _relative(rel, path, "file")
        if rel == ROUTER_FILE or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _fail(path, f"the recorded sha256 of {rel!r} is malformed: {digest!r}")
    _labels(manifest, "classes", path)
    planes = _labels(manifest, "planes", path)
    components = manifest["components"]
    allowed = {"plane", "flat", *planes}
    unknown = sorted(set(components) - allowed)
    missing = sorted({"plane", *planes} - set(components))
    if unknown or missing:
        raise _fail(path, f"component entries {sorted(components)}: unknown {unknown}, missing {missing}; "
                          f"expected 'plane', one per group {planes} and optionally 'flat'")
    folders = {"component": list(components.values())}
    ood = manifest.get("ood")
    if ood is not None:
        if not isinstance(ood, dict) or not isinstance(ood.get("trunk"), (str, type(None))):
            raise _fail(path, f"'ood' must be null or an object with 'directory' and 'trunk', got {ood!r}")
        folders["OOD scorer"] = [ood.get("directory")]
    depth_ood = manifest.get("depth_ood")
    if depth_ood is not None:
        if not isinstance(depth_ood, dict) or depth_ood.get("kind") not in DEPTH_KINDS:
            raise _fail(path, f"'depth_ood' must be null or an object with 'directory' and 'kind' (one of "
                              f"{list(DEPTH_KINDS)}), got {depth_ood!r}")
        folders["multi-depth OOD scorer"] = [depth_ood.get("directory")]
    for what, subs in folders.items():
        for sub in subs:
            _relative(sub, path, f"{what} folder")
            if not any(rel.startswith(f"{sub}/") for rel in files):
                raise _fail(path, f"{what} folder {sub!r} holds no recorded file")
    weight = manifest.get("ensemble_weight")
    if weight is not None and not (_is_number(weight) and 0.0 <= weight <= 1.0):
        raise _fail(path, f"'ensemble_weight' must be null or a number in [0, 1], got {weight!r}")
    for route, temperature in manifest["temperatures"].items():
        if route not in ROUTES or not (_is_number(temperature) and temperature > 0):
            raise _fail(path, f"temperature {route!r}: {temperature!r} is not a positive number for a route "
                              f"in {list(ROUTES)}")
    return manifest


def _inside(directory: Path, rel: str) -> Path:
    """``directory / rel``, refused when a symlink leads it out of ``directory``."""
    target = directory / rel
    if not target.resolve().is_relative_to(directory.resolve()):
        raise _fail(target, f"leads out of the model folder {directory} (symlink); refused")
    return target


def verify_files(directory: Path, manifest: dict[str, Any], path: Path) -> None:
    """Every file ``manifest`` records exists inside ``directory`` with its sha256, and the Router's parts
    hold no other (non-hidden) file."""
    generation, files = manifest["generation"], manifest["files"]
    for rel, digest in sorted(files.items()):
        target = _inside(directory, rel)
        if not target.is_file():
            raise _fail(target, f"missing; {path} (save {generation}) records it: the Router is incomplete")
        if sha256_file(target) != digest:
            raise _fail(target, f"does not match the sha256 recorded in {path} (save {generation}): corrupt, "
                                "edited after saving, or left from another save")
    for part in sorted({rel.split("/")[0] for rel in files}):
        for found in walk_files(_inside(directory, part)):
            rel = found.relative_to(directory).as_posix()
            if rel not in files and not found.name.startswith("."):
                raise _fail(found, f"not written by the save recorded in {path} (save {generation}): a file "
                                   "from another save or added by hand; remove it")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The verified content of ``directory/router.json``.

    Raises
    ------
    FileNotFoundError
        ``directory`` holds no ``router.json``.
    RouterError
        Anything ``check_manifest`` or ``verify_files`` refuses, or ``router.json`` edited after saving.
    """
    directory = Path(directory)
    path = directory / ROUTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {directory} a saved Router (hierarchy train --out)?")
    try:
        manifest = read_json(path, what="router manifest")
    except (OSError, ValueError) as err:
        raise RouterError(str(err)) from err
    check_manifest(manifest, path)
    if content_checksum(manifest) != manifest["checksum"]:
        raise _fail(path, "its content does not match the checksum recorded in it: edited or corrupted after "
                          "saving")
    verify_files(directory, manifest, path)
    return manifest


def load_part(path: Path, read: Callable[[Path], T], what: str) -> T:
    """``read(path)``, its failures turned into a ``RouterError`` naming ``path`` and ``what`` it holds."""
    try:
        return read(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RouterError(f"{path}: cannot load the {what}: {err}") from err
