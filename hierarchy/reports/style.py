"""One figure style for every report, made for print: declared journal widths (3.5 or 7.2 in), fonts of at
least 7 pt at that width, the Okabe-Ito palette, and line styles that stay distinct in greyscale.

Figures are ``matplotlib.figure.Figure`` objects drawn and saved without pyplot, so importing the reports
neither chooses nor needs a backend: a notebook that imports the library keeps its own.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hierarchy.fileio import atomic_write_bytes
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.logs import third_party_quiet
from hierarchy.predictions import ROUTES

# Declared print widths (inches): one column of a two-column journal page, and the full page width.
SINGLE_COLUMN = 3.5
DOUBLE_COLUMN = 7.2
MIN_FONT_PT = 7  # no text smaller than this at the declared width
RC_PARAMS = {
    "font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7, "legend.fontsize": 7,
    "legend.title_fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6, "lines.linewidth": 1.0,
    "lines.markersize": 3.5, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "figure.dpi": 100,
    "savefig.bbox": "standard",  # the saved figure keeps its declared size
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType so journals can edit text in the PDF
}
# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
CLASS_COLORS = dict(zip(TUMOR_CLASSES, ("#0072B2", "#E69F00", "#009E73", "#CC79A7"), strict=True))
ROUTE_COLORS = dict(zip(ROUTES, ("#000000", "#D55E00", "#56B4E9", "#009E73", "#999999"),
                        strict=True))
# the rest of the palette for the experiment's seed-ensemble routes ``<route>_seeds``
ROUTE_COLORS.update({"flat_seeds": "#0072B2", "hierarchical_seeds": "#CC79A7", "soft_seeds": "#E69F00",
                     "ensemble_seeds": "#F0E442"})
PLANE_COLORS = dict(zip(PLANES, ("#0072B2", "#E69F00", "#009E73"), strict=True))
# Lines in one panel differ in dash and marker as well as colour, so they stay apart in greyscale.
MAX_LINES_PER_PANEL = 4
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PNG_DPI = 300


def color_for(name: str) -> str:
    """The colour of a class, route or plane (grey for unknown names)."""
    return CLASS_COLORS.get(name) or ROUTE_COLORS.get(name) or PLANE_COLORS.get(name) or "#666666"


def line_styles(names: Sequence[str]) -> dict[str, dict]:
    """Plot keywords (colour, dash, marker) for up to ``MAX_LINES_PER_PANEL`` lines drawn in one panel:
    colours by name, dashes and markers by position, so no two lines look alike in greyscale."""
    if len(names) > MAX_LINES_PER_PANEL:
        raise ValueError(f"{len(names)} lines in one panel cannot be told apart; draw at most "
                         f"{MAX_LINES_PER_PANEL} (see line_groups)")
    return {name: {"color": color_for(name), "ls": LINESTYLES[i], "marker": MARKERS[i]}
            for i, name in enumerate(names)}


def line_groups(names: Sequence[str], size: int = MAX_LINES_PER_PANEL) -> list[list[str]]:
    """``names`` in consecutive groups of at most ``size``: one figure (or panel) per group."""
    names = list(names)
    return [names[i:i + size] for i in range(0, len(names), size)] or [[]]


def styled(draw: Callable) -> Callable:
    """Run a figure-drawing function inside the report style."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC_PARAMS):
            return draw(*args, **kwargs)
    return wrapper


def grid(n: int, *, width: float = DOUBLE_COLUMN, ncols: int | None = None, aspect: float = 1.0,
         extra_height: float = 0.0, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure ``width`` inches wide (``SINGLE_COLUMN`` or ``DOUBLE_COLUMN``) of ``n`` panels in rows of
    ``ncols`` (default: all in one row), each ``aspect`` times as high as wide, plus ``extra_height``
    inches (for a legend below); unused cells are hidden. Call inside ``styled`` drawing functions."""
    if n < 1:
        raise ValueError("a figure needs at least one panel")
    if width not in (SINGLE_COLUMN, DOUBLE_COLUMN):
        raise ValueError(f"figure width must be {SINGLE_COLUMN} or {DOUBLE_COLUMN} inches, got {width}")
    ncols = min(ncols or n, n)
    nrows = -(-n // ncols)
    height = nrows * width / ncols * aspect + extra_height
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def legend_below(fig: Figure, handles: Sequence, labels: Sequence[str], *, ncols: int | None = None,
                 title: str | None = None) -> None:
    """One legend for the whole figure, under its panels (constrained layout keeps it off every axes)."""
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols or min(len(labels), 4), title=title)


def figure_bytes(fig: Figure, formats: tuple[str, ...] = ("png", "pdf")) -> list[bytes]:
    """``fig`` rendered in each format (PNG at ``PNG_DPI``, PDF vector)."""
    rendered = []
    with matplotlib.rc_context(RC_PARAMS), third_party_quiet():  # PDF font subsetting logs a dozen INFO lines
        for fmt in formats:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI)
            rendered.append(buffer.getvalue())
    return rendered


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (300 dpi) and ``stem.pdf`` (vector) under ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path, data in zip(paths, figure_bytes(fig), strict=True):
        atomic_write_bytes(path, data)
    return paths
