"""A tiny synthetic dataset in the BRISC 2025 layout: phantom head slices with planted lesions.

Planes differ in head shape and inner structure, classes in the lesion, so a tiny CNN learns both
from a few dozen images. For tests and examples only; never a stand-in for real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hierarchy.labels import PLANES, TUMOR_CLASSES

TUMOR_CODES = {"glioma": "gl", "meningioma": "me", "pituitary": "pi", "no_tumor": "no"}
PLANE_CODES = {"axial": "ax", "coronal": "co", "sagittal": "sa"}

# Head semi-axes (x, y) as fractions of the image size.
_HEAD_AXES = {"axial": (0.41, 0.42), "coronal": (0.30, 0.44), "sagittal": (0.45, 0.32)}


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             angle: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _head(plane: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Greyscale head (float 0-255) and its brain mask; also (cx, cy, rx, ry) of the head."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ax, ay = _HEAD_AXES[plane]
    jitter = rng.uniform(0.95, 1.05, size=2)
    rx, ry = ax * size * jitter[0], ay * size * jitter[1]
    cx = size / 2 + rng.uniform(-0.03, 0.03) * size
    cy = size / 2 + rng.uniform(-0.03, 0.03) * size
    skull = _ellipse(xx, yy, cx, cy, rx, ry)
    brain = _ellipse(xx, yy, cx, cy, rx * 0.88, ry * 0.88)
    img = np.zeros((size, size), np.float32)
    img[skull] = 200.0
    img[brain] = 110.0 + rng.uniform(-10, 10)
    dark = 35.0
    if plane == "axial":  # two symmetric lateral ventricles and a midline
        for side in (-1, 1):
            img[_ellipse(xx, yy, cx + side * 0.12 * rx, cy, 0.07 * rx, 0.30 * ry, side * 0.2)] = dark
        img[(np.abs(xx - cx) < max(1.0, size / 96)) & brain] = 70.0
    elif plane == "coronal":  # horizontal butterfly ventricles high up, brainstem column below
        img[_ellipse(xx, yy, cx, cy - 0.25 * ry, 0.35 * rx, 0.08 * ry)] = dark
        img[(np.abs(xx - cx) < 0.12 * rx) & (yy > cy + 0.35 * ry) & skull] = 160.0
    else:  # sagittal: corpus-callosum arc and a cerebellum bump at the lower back
        arc = _ellipse(xx, yy, cx, cy, 0.50 * rx, 0.30 * ry) & ~_ellipse(xx, yy, cx, cy + 0.04 * ry,
                                                                         0.45 * rx, 0.22 * ry)
        img[arc & (yy < cy)] = 175.0
        img[_ellipse(xx, yy, cx + 0.55 * rx, cy + 0.55 * ry, 0.28 * rx, 0.25 * ry)] = 150.0
    return img, brain, (cx, cy, rx, ry)


def _lesion(label: str, size: int, head: tuple, rng: np.random.Generator) -> np.ndarray | None:
    """Boolean lesion mask for a tumour class, or None for no_tumor."""
    if label == "no_tumor":
        return None
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy, rx, ry = head
    if label == "glioma":  # irregular blob of overlapping discs in one hemisphere
        side = rng.choice([-1, 1])
        bx, by = cx + side * 0.45 * rx, cy + rng.uniform(-0.2, 0.2) * ry
        mask = np.zeros((size, size), bool)
        for _ in range(4):
            r = rng.uniform(0.08, 0.14) * size
            ox, oy = rng.uniform(-0.07, 0.07, size=2) * size
            mask |= _ellipse(xx, yy, bx + ox, by + oy, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
        return mask
    if label == "meningioma":  # round disc hugging the inner skull
        theta = rng.uniform(-np.pi * 0.9, -np.pi * 0.1)  # upper half of the head
        r = rng.uniform(0.09, 0.12) * size
        px, py = cx + (rx * 0.86 - r) * np.cos(theta), cy + (ry * 0.86 - r) * np.sin(theta)
        return _ellipse(xx, yy, px, py, r, r)
    if label == "pituitary":  # small spot near the centre-bottom
        r = rng.uniform(0.04, 0.06) * size
        return _ellipse(xx, yy, cx + rng.uniform(-0.03, 0.03) * size, cy + 0.45 * ry, r, r)
    raise ValueError(f"unknown tumour class {label!r}")


def _slice(label: str, plane: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image | None]:
    img, _, head = _head(plane, size, rng)
    lesion = _lesion(label, size, head, rng)
    if lesion is not None:
        img[lesion] = 245.0
    img += rng.normal(0.0, 6.0, img.shape)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")
    mask = None if lesion is None else Image.fromarray(lesion.astype(np.uint8) * 255, mode="L")
    return image, mask


def make_synthetic_dataset(root: str | Path, *, n_per_cell_train: int = 6, n_per_cell_test: int = 3,
                           image_size: int = 64, seed: int = 0) -> Path:
    """Write a BRISC-2025-layout dataset of phantom slices under ``root`` and return ``root``.

    ``n_per_cell_*`` images per (class, plane) cell; deterministic given ``seed``. Tumour images get
    a PNG lesion mask in ``segmentation_task/<split>/masks/``. Refuses to write into an existing
    non-empty folder.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"refusing to write a synthetic dataset into non-empty folder {root}")
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_per_cell_train), ("test", n_per_cell_test)):
        mask_dir = root / "segmentation_task" / split / "masks"
        mask_dir.mkdir(parents=True, exist_ok=True)
        index = 0
        for label in TUMOR_CLASSES:
            class_dir = root / "classification_task" / split / label
            class_dir.mkdir(parents=True, exist_ok=True)
            for plane in PLANES:
                for _ in range(n):
                    index += 1
                    name = f"brisc2025_{split}_{index:05d}_{TUMOR_CODES[label]}_{PLANE_CODES[plane]}_t1"
                    image, mask = _slice(label, plane, image_size, rng)
                    image.save(class_dir / f"{name}.jpg", quality=95)
                    if mask is not None:
                        mask.save(mask_dir / f"{name}.png")
    return root
