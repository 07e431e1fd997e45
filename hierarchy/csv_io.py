"""Reading a CSV file given by a user (a dataset list, a prediction table) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

_SNIFF_BYTES = 8192


def read_csv(path: str | os.PathLike, what: str = "CSV file", **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)``; a missing, empty, binary or unparsable file raises
    ``FileNotFoundError`` or ``ValueError`` naming ``path`` and saying it should be a ``what``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a {what})")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise ValueError(f"{path}: the file is empty (expected a {what} with a header row)")
    if b"\x00" in head:
        raise ValueError(f"{path}: binary content, not a text {what}")
    try:
        return pd.read_csv(path, **kwargs)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{path}: not a readable {what} ({reason})") from err
