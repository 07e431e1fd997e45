"""``ReportWriter``: the one way files enter a report folder, and ``manifest.json``, the list of them.

A report is written by :func:`report_writer` into a hidden sibling of its folder and moved in, under the
folder's lock and journaled, when it is complete (``hierarchy.fileio.staged_swap``, as a saved Router is),
``manifest.json`` last: a report killed at any moment leaves the earlier report (or none) or the new one,
never a mix, and the next run finishes or discards it, leaving nothing hidden. What the new report replaces
is only what the earlier report's manifest lists: the files it does not write again are removed (no stale
figure survives a changed run), and a file that no manifest lists is never written over (the run is
refused, naming it), nor moved.

Manifest format::

    {"format": "hierarchy-report-manifest", "complete": true,
     "files": [relative path, ...],              # manifest.json itself excluded
     "sha256": {relative path: hex digest},
     "local": [relative path, ...]}              # image-derived files, kept out of published copies
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from hierarchy.fileio import (
    Staging,
    atomic_write_bytes,
    json_text,
    sha256_file,
    staged_swap,
    walk_files,
)
from hierarchy.reports.latex import Item
from hierarchy.reports.style import figure_bytes
from hierarchy.reports.tables import table_texts, to_markdown

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "hierarchy-report-manifest"


def read_manifest(out_dir: str | Path) -> dict | None:
    """The manifest of the report in ``out_dir`` (None when there is none); a file that is not one raises
    ``FileExistsError`` naming it, so that nothing is removed on the word of a stranger's file."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileExistsError(f"{path} is not valid JSON ({err}); move it away or choose another folder") from err
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT \
            or not isinstance(record.get("files"), list):
        raise FileExistsError(f"{path} is not a {MANIFEST_FORMAT}; move it away or choose another folder")
    return record


def _inside(out_dir: Path, name: object) -> str | None:
    """``name`` as a clean relative path when it names a file inside ``out_dir`` (no symlink, no ``..``)."""
    root = out_dir.resolve()
    path = out_dir / str(name)
    if path.is_symlink() or not path.resolve().parent.is_relative_to(root) or Path(str(name)).is_absolute():
        logger.warning("%s lists %r, which is not a file inside %s; leaving it alone",
                       out_dir / MANIFEST, name, out_dir)
        return None
    return path.resolve().relative_to(root).as_posix()


class ReportWriter:
    """Writes a report's files (atomically) into its staging folder and keeps the list of them for
    ``manifest.json``; made by :func:`report_writer`.

    Parameters
    ----------
    staging
        Where the files go (``staging.path``) and the report folder they are moved into (``staging.target``).
    """

    def __init__(self, staging: Staging):
        self.staging = staging
        self.out_dir = staging.target
        previous = read_manifest(self.out_dir)
        names = [] if previous is None else previous["files"]
        self.previous = [n for n in (_inside(self.out_dir, name) for name in names) if n and n != MANIFEST]
        self.written: list[str] = []
        self.adopted: list[str] = []
        self.local: set[str] = set()
        self.captions: dict[str, Item] = {}  # a figure's PNG or a table's .tex -> its supplement item

    def _claim(self, name: str, *, local: bool = False) -> None:
        """Check that ``name`` is ours to write, and list it."""
        path = self.out_dir / name
        if name in self.written or name in self.adopted:
            raise ValueError(f"{path} is written twice by one report")
        if (path.exists() or path.is_symlink()) and name not in self.previous:
            raise FileExistsError(f"{path} already exists and no earlier report's {MANIFEST} lists it; move "
                                  "it away or choose another folder")
        self.written.append(name)
        if local:
            self.local.add(name)

    def write_bytes(self, name: str, data: bytes, *, local: bool = False) -> Path:
        """Write ``data`` as ``name`` (a relative POSIX path) of the report; returns the staged file."""
        self._claim(name, local=local)
        return self._store(name, data)

    def _store(self, name: str, data: bytes) -> Path:
        """Write ``data`` to the staged ``name``; a failed write (a full disk) names the report's file."""
        try:
            return atomic_write_bytes(self.staging.path / name, data)
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise type(err)(err.errno, f"cannot write {self.out_dir / name}: {reason}") from err

    def write_text(self, name: str, text: str, *, local: bool = False) -> Path:
        """Write ``text`` (UTF-8) as ``name`` of the report; returns the staged file."""
        return self.write_bytes(name, text.encode("utf-8"), local=local)

    def write_figure(self, fig: Figure, folder: str, stem: str, *, local: bool = False) -> tuple[str, str]:
        """``folder/stem.png`` (300 dpi) and ``folder/stem.pdf`` (vector); returns both names."""
        names = (f"{folder}/{stem}.png", f"{folder}/{stem}.pdf")
        for name, data in zip(names, figure_bytes(fig, ("png", "pdf")), strict=True):
            self.write_bytes(name, data, local=local)
        return names

    def figure(self, fig: Figure | None, stem: str, caption: str, *, folder: str = "figures",
               local: bool = False) -> str:
        """Write ``fig`` as ``folder/stem.png|pdf`` and return the Markdown showing it ("" for None)."""
        if fig is None:
            return ""
        png, pdf = self.write_figure(fig, folder, stem, local=local)
        self.captions[png] = Item("figure", caption, pdf, f"fig:{stem}", local)
        return figure_markdown(folder, stem, caption, local=local)

    def table(self, frame: pd.DataFrame, stem: str, caption: str, *, embed: bool = True) -> str:
        """Write ``tables/stem.csv|tex|md`` and return the Markdown linking (and, if ``embed``, showing)
        it; an empty frame writes nothing and returns ""."""
        if frame.empty:
            return ""
        for ext, text in table_texts(frame, stem, caption).items():
            self.write_text(f"tables/{stem}.{ext}", text)
        self.captions[f"tables/{stem}.tex"] = Item("table", caption, f"tables/{stem}.tex", f"tab:{stem}")
        return table_markdown(frame, stem, caption, embed=embed)

    def adopt(self, names: Iterable[str], *, local: bool = False) -> None:
        """List files an earlier stage of this run wrote into ``out_dir`` (predictions, audit ...); they stay
        where they are."""
        for name in names:
            if not (self.out_dir / name).is_file():
                raise FileNotFoundError(f"{self.out_dir / name} was to be listed in the report but does not exist")
            if name not in self.written and name not in self.adopted:
                self.adopted.append(name)
                if local:
                    self.local.add(name)

    def finish(self) -> list[str]:
        """Write the manifest into the staging folder and name what the move replaces: the files of the
        earlier report (those this one does not write again are removed); returns the removed names."""
        stale = [name for name in self.previous if name not in self.written and name not in self.adopted]
        for name in stale:
            logger.info("removing %s: the earlier report wrote it, this one did not", self.out_dir / name)
        sha256 = {name: sha256_file(self.staging.path / name) for name in self.written}
        sha256.update({name: sha256_file(self.out_dir / name) for name in self.adopted})
        record = {"format": MANIFEST_FORMAT, "complete": True, "files": [*self.written, *self.adopted],
                  "sha256": sha256, "local": sorted(self.local)}
        self._store(MANIFEST, json_text(record).encode("utf-8"))
        self.staging.entries = [p.relative_to(self.staging.path).as_posix() for p in walk_files(self.staging.path)]
        self.staging.replaced = {name for name in self.previous
                                 if name not in self.adopted and (self.out_dir / name).is_file()}
        return stale


@contextmanager
def report_writer(out_dir: str | Path) -> Iterator[ReportWriter]:
    """A :class:`ReportWriter` for the report folder ``out_dir`` (created when missing), holding its lock for
    the ``with`` block; when the block ends the report is moved in, ``manifest.json`` last, and when it
    raises nothing in ``out_dir`` has changed (``hierarchy.fileio.staged_swap``)."""
    with staged_swap(out_dir, last=MANIFEST) as staging:
        writer = ReportWriter(staging)
        yield writer
        writer.finish()


def figure_markdown(folder: str, stem: str, caption: str, *, local: bool = False) -> str:
    """How ``report.md`` shows a figure: embedded with a link to its PDF; a ``local`` (image-derived)
    figure is named, not linked, since published copies of the report leave it out."""
    png, pdf = f"{folder}/{stem}.png", f"{folder}/{stem}.pdf"
    if local:
        return (f"*{caption}*: `{png}` and `{pdf}` (image-derived: written beside the report, kept out of "
                "published copies)")
    return f"![{caption}]({png})\n\n*{caption}* ([PDF]({pdf}))"


def table_markdown(frame: pd.DataFrame, stem: str, caption: str, *, embed: bool = True) -> str:
    """How ``report.md`` shows a table: links to its CSV, LaTeX and Markdown, and the table when ``embed``."""
    links = (f"**{caption}** ([CSV](tables/{stem}.csv), [LaTeX](tables/{stem}.tex), "
             f"[Markdown](tables/{stem}.md))")
    return links + ("\n\n" + to_markdown(frame) if embed else "")


_REFERENCE = re.compile(r"\]\(([^)\s]+)\)|`([^`\s]+)`")


def supplement_items(markdown: str, captions: Mapping[str, Item]) -> list[Item]:
    """The supplement's items in the order ``markdown`` shows them: each ``## `` heading that has a table
    or figure under it, then every table and figure it references (``captions``: the item of each
    referenced file name, a figure's PNG or a table's ``.tex``)."""
    items: list[Item] = []
    seen: set[str] = set()
    heading = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading = Item("section", line[3:].strip())
            continue
        for match in _REFERENCE.finditer(line):
            name = match.group(1) or match.group(2)
            if name in captions and name not in seen:
                seen.add(name)
                if heading is not None:
                    items.append(heading)
                    heading = None
                items.append(captions[name])
    return items


class ReportFiles:
    """Figures, tables and JSON files of report sections composed before the report is written: their
    Markdown is returned at once (with the links the files will have), the files are written later
    through the report's :class:`ReportWriter` (``build_report(files=...)``)."""

    def __init__(self) -> None:
        self._pending: list[Callable[[ReportWriter], object]] = []

    def figure(self, fig: Figure | None, stem: str, caption: str, *, folder: str = "figures",
               local: bool = False) -> str:
        """Markdown showing ``folder/stem.png`` (with its PDF); empty when ``fig`` is None."""
        if fig is None:
            return ""
        self._pending.append(lambda w: w.figure(fig, stem, caption, folder=folder, local=local))
        return figure_markdown(folder, stem, caption, local=local)

    def table(self, frame: pd.DataFrame, stem: str, caption: str, *, embed: bool = True) -> str:
        """Markdown linking ``tables/stem.csv|tex|md``, with the table itself when ``embed``."""
        if frame.empty:
            return ""
        self._pending.append(lambda w: w.table(frame, stem, caption, embed=embed))
        return table_markdown(frame, stem, caption, embed=embed)

    def text(self, name: str, text: str) -> None:
        """``text`` (UTF-8) in ``name``, a file beside ``report.md`` (e.g. ``checklist.md``)."""
        self._pending.append(lambda w: w.write_text(name, text))

    def json(self, name: str, data: Any) -> None:
        """``data`` as JSON in ``name`` (``hierarchy.fileio.json_text``)."""
        text = json_text(data)
        self._pending.append(lambda w: w.write_text(name, text))

    def write(self, target: ReportWriter | str | Path) -> None:
        """Write every collected file through ``target`` (a folder gets a writer and manifest of its own)."""
        if not isinstance(target, ReportWriter):
            with report_writer(target) as writer:
                self.write(writer)
            return
        for write in self._pending:
            write(target)
        self._pending = []


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def unresolved_links(report_md: str | Path) -> list[str]:
    """The relative links and images of a Markdown file that name no existing file (web links and
    anchors are not checked)."""
    report_md = Path(report_md)
    targets = _LINK.findall(report_md.read_text(encoding="utf-8"))
    return [t for t in dict.fromkeys(targets) if not re.match(r"^([a-z]+:|#)", t)
            and not (report_md.parent / t.split("#")[0]).exists()]
