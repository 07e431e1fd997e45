"""Checks on output paths, run before a command starts its long work."""

from __future__ import annotations

import os
from pathlib import Path


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {ancestor} is a file, so {path} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: folder {ancestor} is not writable")


def check_output_file(path: Path, flag: str, *, overwrite: bool = False) -> None:
    """Raise naming ``path`` unless a file can be written there (replaced only with ``overwrite``)."""
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file name")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{flag} {path} already exists; pass --overwrite to replace it")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{flag} {path} is not writable")
        return
    _check_creatable(path, flag)


def check_output_dir(path: Path, flag: str) -> None:
    """Raise naming ``path`` unless it is, or can be created as, a writable folder."""
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{flag} {path} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{flag} {path}: folder is not writable")
        return
    _check_creatable(path / "_", flag)
