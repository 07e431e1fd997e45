"""Atomic checkpoint files that load with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from hierarchy.fileio import atomic_write


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and ``os.replace``: readers never see half a file."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU, refusing anything but tensors and plain Python types."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from err
