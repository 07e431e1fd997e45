"""One figure style for every report: font sizes, a colour per class and per route.

Figures are ``matplotlib.figure.Figure`` objects drawn and saved without pyplot, so importing the reports
neither chooses nor needs a backend: a notebook that imports the library keeps its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.logs import third_party_quiet
from hierarchy.predictions import ROUTES

RC_PARAMS = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "figure.dpi": 100, "savefig.bbox": "tight",
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
PANEL_SIZE = (3.2, 3.0)
PNG_DPI = 300


def color_for(name: str) -> str:
    """The colour of a class, route or plane (grey for unknown names)."""
    return CLASS_COLORS.get(name) or ROUTE_COLORS.get(name) or PLANE_COLORS.get(name) or "#666666"


def styled(draw: Callable) -> Callable:
    """Run a figure-drawing function inside the report style."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC_PARAMS):
            return draw(*args, **kwargs)
    return wrapper


def panels(n: int, *, square: bool = True) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` side-by-side panels (call inside ``styled`` drawing functions)."""
    if n < 1:
        raise ValueError("a figure needs at least one panel")
    fig = Figure(figsize=(PANEL_SIZE[0] * n, PANEL_SIZE[1]), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)
    for ax in axes[0]:
        if square:
            ax.set_box_aspect(1)
    return fig, list(axes[0])


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (300 dpi) and ``stem.pdf`` (vector) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    with matplotlib.rc_context(RC_PARAMS), third_party_quiet():  # PDF font subsetting logs a dozen INFO lines
        fig.savefig(paths[0], dpi=PNG_DPI)
        fig.savefig(paths[1])
    return paths
