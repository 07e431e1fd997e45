"""Progress bars that appear only when asked for, or by default when someone watches a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool | None = None, **tqdm_kwargs: Any) -> tqdm:
    """``tqdm(iterable, **tqdm_kwargs)``, drawn only when ``enabled``.

    Parameters
    ----------
    iterable
        What to iterate over (None for a manually updated bar).
    enabled
        True or False to show the bar or not; None (the library's default) shows it only when standard
        error is a terminal, so logs, notebooks run in batch and CI output carry no bar fragments.
    **tqdm_kwargs
        Passed to ``tqdm`` (``desc``, ``total``, ``leave`` ...).
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, **tqdm_kwargs)
