"""Resumable stages: each finished stage is recorded with its wall time, so a re-run skips it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hierarchy.fileio import read_json, write_json

logger = logging.getLogger(__name__)


class StageLog:
    """A JSON file ``stages.json`` mapping stage name to ``{"seconds": ...}`` once it has finished."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = (
            read_json(self.path, what="stage log") if self.path.exists() else {}
        )

    def is_done(self, name: str) -> bool:
        return name in self.done

    def seconds(self) -> dict[str, float]:
        """Wall time of every finished stage, in seconds."""
        return {name: float(entry["seconds"]) for name, entry in self.done.items()}

    def _save(self) -> None:
        write_json(self.path, self.done)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body and mark ``name`` finished when it returns without an exception."""
        logger.info("stage %s: started", name)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.done[name] = {"seconds": round(seconds, 2)}
        self._save()
        logger.info("stage %s: finished in %.1f s", name, seconds)

    def run(self, name: str, compute: Callable[[], Any], load: Callable[[], Any]) -> Any:
        """``load()`` the stored result of a finished stage, else ``compute()`` it as a new stage."""
        if self.is_done(name):
            logger.info("stage %s: already finished, reusing its outputs", name)
            return load()
        with self.stage(name):
            return compute()
