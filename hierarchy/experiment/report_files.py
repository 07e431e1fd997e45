"""Figures and tables of the experiment's own report sections, written after ``build_report``.

``build_report`` clears ``figures/`` and ``tables/`` before it writes, so a section's Markdown is
composed first (with the links its files will have) and the files are written once the report is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hierarchy.reports import save_figure, to_markdown, write_table


class ReportFiles:
    """Collects figures and tables, returns the Markdown that shows them, and writes them on ``write``."""

    def __init__(self) -> None:
        self._figures: list[tuple[Figure, str, str]] = []
        self._tables: list[tuple[pd.DataFrame, str, str]] = []

    def figure(self, fig: Figure | None, stem: str, caption: str, *, folder: str = "figures") -> str:
        """Markdown showing ``folder/stem.png`` (with its PDF); empty when ``fig`` is None."""
        if fig is None:
            return ""
        self._figures.append((fig, folder, stem))
        return f"![{caption}]({folder}/{stem}.png)\n\n*{caption}* ([PDF]({folder}/{stem}.pdf))"

    def table(self, frame: pd.DataFrame, stem: str, caption: str, *, embed: bool = True) -> str:
        """Markdown linking ``tables/stem.csv|tex|md``, with the table itself when ``embed``."""
        if frame.empty:
            return ""
        self._tables.append((frame, stem, caption))
        links = (f"**{caption}** ([CSV](tables/{stem}.csv), [LaTeX](tables/{stem}.tex), "
                 f"[Markdown](tables/{stem}.md))")
        return links + ("\n\n" + to_markdown(frame) if embed else "")

    def write(self, out_dir: str | Path) -> None:
        """Write every collected figure and table under ``out_dir``."""
        out_dir = Path(out_dir)
        for fig, folder, stem in self._figures:
            save_figure(fig, out_dir / folder, stem)
        for frame, stem, caption in self._tables:
            write_table(frame, out_dir / "tables", stem, caption=caption)
        self._figures, self._tables = [], []
