"""Resumable stages: each finished stage is recorded with its wall time and the commit of the code that ran it,
so a re-run skips it and a report resumed at a later commit can say which stages an earlier commit computed."""

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
    """A JSON file ``stages.json`` mapping stage name to ``{"seconds": ..., "git_commit": ...}`` once it has
    finished; ``commit`` is the source's commit (``hierarchy.provenance.source_commit``), None when unknown."""

    def __init__(self, path: str | Path, commit: str | None = None) -> None:
        self.path = Path(path)
        self.commit = commit
        self.done: dict[str, dict[str, Any]] = (
            read_json(self.path, what="stage log") if self.path.exists() else {}
        )

    def is_done(self, name: str) -> bool:
        return name in self.done

    def seconds(self) -> dict[str, float]:
        """Wall time of every finished stage, in seconds."""
        return {name: float(entry["seconds"]) for name, entry in self.done.items()}

    def commits(self) -> dict[str, str | None]:
        """The commit each finished stage ran at (None where it was not recorded: stages of older runs)."""
        return {name: entry.get("git_commit") for name, entry in self.done.items()}

    def _save(self) -> None:
        write_json(self.path, self.done)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body and mark ``name`` finished when it returns without an exception."""
        logger.info("stage %s: started", name)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.done[name] = {"seconds": round(seconds, 2), "git_commit": self.commit}
        self._save()
        logger.info("stage %s: finished in %.1f s", name, seconds)

    def run(self, name: str, compute: Callable[[], Any], load: Callable[[], Any]) -> Any:
        """``load()`` the stored result of a finished stage, else ``compute()`` it as a new stage."""
        if self.is_done(name):
            logger.info("stage %s: already finished, reusing its outputs", name)
            return load()
        with self.stage(name):
            return compute()
