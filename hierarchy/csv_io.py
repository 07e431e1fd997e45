"""Reading a CSV file given by a user (a dataset list, a prediction table) with errors that name the file, and
writing the library's CSV files so that no cell runs as a spreadsheet formula.

Cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are formulas to Excel, LibreOffice
and Google Sheets (OWASP "CSV injection"). :func:`write_csv` prefixes such text cells (and those that already
begin with quotes followed by one of them) with one ``'``; :func:`read_csv` removes that one quote again, so a
table written and read back by the library is unchanged. Numbers are never touched (``-0.5`` stays a number).
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.fileio import atomic_write

_SNIFF_BYTES = 8192
_FORMULA = re.compile(r"'*[=+\-@\t\r]")  # what write_csv neutralises: optional quotes, then a formula trigger
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def neutralise_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'``; anything else unchanged."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def _restore_cell(value: Any) -> Any:
    if isinstance(value, str) and _NEUTRALISED.match(value):
        return value[1:]
    return value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    return [c for c, dtype in frame.dtypes.items()
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype))]


def csv_text(frame: pd.DataFrame, *, index: bool = False) -> str:
    """``frame`` as CSV text with formula cells and headers neutralised (see :func:`neutralise_cell`)."""
    safe = frame.copy()
    safe.columns = [neutralise_cell(c) for c in safe.columns]
    for column in _text_columns(safe):
        safe[column] = safe[column].map(neutralise_cell)
    # pandas leaves a cell holding a carriage return unquoted, which breaks its row: quote text cells then
    carriage_return = any(safe[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in _text_columns(safe))
    return safe.to_csv(index=index, quoting=csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, *, index: bool = False) -> Path:
    """Write ``frame`` to ``path`` atomically (a temporary sibling, then a rename) with formula cells and
    headers neutralised (see :func:`neutralise_cell`); returns ``path``. A failed write (a full disk) leaves
    the previous file as it was and raises ``OSError`` naming ``path``."""
    text = csv_text(frame, index=index)
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _encoding_problem(head: bytes) -> str | None:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name}-encoded text (byte-order mark found); save it as UTF-8"
    if b"\x00" in head:
        # UTF-16 without a byte-order mark: every other byte of ASCII text is zero
        zeros_odd, zeros_even = head[1::2].count(0), head[0::2].count(0)
        if max(zeros_odd, zeros_even) > len(head) // 4:
            return f"UTF-16{'LE' if zeros_odd > zeros_even else 'BE'}-encoded text (no byte-order mark); save it as UTF-8"
        return "binary content, not text"
    return None


def _separator_hint(head: bytes) -> str:
    """``; it looks separated by ';' (...)`` when another separator splits the header into several columns."""
    try:
        first = head.decode("utf-8", errors="replace").splitlines()[0]
        dialect = csv.Sniffer().sniff(first, delimiters=";\t|:")
    except (csv.Error, IndexError):
        return ""
    name = {"\t": "tab", ";": "';'", "|": "'|'", ":": "':'"}[dialect.delimiter]
    return (f"; its header looks separated by {name}, not commas: save it comma-separated "
            f"(in pandas: pd.read_csv(path, sep={dialect.delimiter!r}).to_csv(path, index=False))")


def read_csv(path: str | os.PathLike, what: str = "CSV file", *, required: set[str] | None = None,
             **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)`` with the cells :func:`write_csv` neutralised restored.

    A missing path, a folder, an empty, binary, UTF-16 or unparsable file raises ``FileNotFoundError``,
    ``IsADirectoryError`` or ``ValueError`` naming ``path`` and saying it should be a ``what`` (with the
    encoding found, or the separator that would work). ``required``: columns the table must have; a table
    that lacks them, read as one column, gets the separator hint too.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a file (expected a {what})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a {what})")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise ValueError(f"{path}: the file is empty (expected a {what} with a header row)")
    problem = _encoding_problem(head)
    if problem:
        raise ValueError(f"{path}: {problem} (expected a {what})")
    try:
        table = pd.read_csv(path, **kwargs)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{path}: not a readable {what} ({reason}){_separator_hint(head)}") from err
    table.columns = [_restore_cell(c) for c in table.columns]
    for column in _text_columns(table):
        table[column] = table[column].map(_restore_cell)
    if required is not None and not required <= set(table.columns):
        missing = sorted(required - set(table.columns))
        raise ValueError(f"{path}: missing column(s) {missing} (expected a {what}){_separator_hint(head)}")
    return table
