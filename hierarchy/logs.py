"""The project's log carries its own messages: third-party libraries speak at WARNING and above.

matplotlib's PDF backend subsets fonts with fontTools, which logs a dozen INFO lines per figure; left
alone they made up most of an experiment's log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

THIRD_PARTY_LOGGERS: tuple[str, ...] = ("fontTools", "matplotlib", "PIL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(*, verbose: bool = False, fmt: str = LOG_FORMAT, level: int | None = None) -> None:
    """Log the project's INFO messages (DEBUG when ``verbose``, or ``level`` when given) to standard error,
    third parties' WARNINGs.

    For programs (the CLI, the experiment scripts); a library call never configures logging itself. The one
    place that calls ``logging.basicConfig``.
    """
    if level is None:
        level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=fmt)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def third_party_quiet(level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, third-party loggers whose level nobody has set drop records below ``level``.

    A level set on purpose (say ``logging.getLogger("fontTools").setLevel(logging.DEBUG)``) is kept.
    """
    unset = [logger for logger in map(logging.getLogger, THIRD_PARTY_LOGGERS) if logger.level == logging.NOTSET]
    for logger in unset:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger in unset:
            logger.setLevel(logging.NOTSET)
