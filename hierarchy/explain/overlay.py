"""Attribution heatmaps drawn over the greyscale input, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hierarchy.explain.mask_scores import resize_mask


def save_overlay(
    image: np.ndarray,
    attribution: np.ndarray,
    path: str | Path,
    *,
    mask: np.ndarray | None = None,
    title: str | None = None,
    alpha: float = 0.45,
    dpi: int = 150,
) -> Path:
    """Draw ``attribution`` (H, W, in [0, 1]) as a heatmap over greyscale ``image`` (H, W) and save a PNG.

    A tumour ``mask`` (resized to (H, W), nearest) is outlined in cyan. Parent folders are
    created. Returns the written path.
    """
    image = np.asarray(image, dtype=float)
    attribution = np.asarray(attribution, dtype=float)
    if image.ndim != 2 or image.shape != attribution.shape:
        raise ValueError(
            f"image and attribution must be (H, W) maps of one shape, got {image.shape} and {attribution.shape}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(4, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(image, cmap="gray", interpolation="nearest")
    heat = axes.imshow(attribution, cmap="inferno", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mask is not None:
        outline = resize_mask(mask, image.shape)
        if outline.any():
            axes.contour(outline.astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
    figure.colorbar(heat, ax=axes, fraction=0.046, pad=0.04, label="attribution")
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    figure.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
    return path
