"""Training-time counterfactuals and style decorrelation: images whose label follows the tumour, not the file.

:class:`CounterfactualAugment` acts on a training :class:`~hierarchy.data.ImageDataset`'s decoded (head-cropped)
images, before the rest of the augmentation:

- *paste-in* (``paste_p``): a no-tumour image gets the tumour of a random training tumour image of the same
  plane and is labelled with that tumour's class;
- *removal* (``removal_p``): a tumour image with a mask gets its tumour removed (the contralateral hemisphere
  mirrored in for axial and coronal slices, diffusion filling for sagittal ones and midline tumours) and is
  labelled no tumour. The shortcut test of removal uses biharmonic inpainting instead, so that the test does not
  reward recognising the training fill. ``removal_fills`` draws each removal's fill from the named
  :data:`~hierarchy.data.counterfactual.REMOVAL_METHODS` instead (``contralateral`` on axial and coronal
  slices only);
- *sham edits* (``sham_edits``): the same two edits where they change nothing, so that an edit's traces carry
  no label. A removal fill is otherwise found only in no-tumour images and a paste seam only in tumour images,
  and a network can learn the traces instead of the tumour. A tumour-labelled image gets the removal fill over a
  tumour-shaped region of healthy tissue, and a no-tumour-labelled image normal tissue of another no-tumour
  image pasted over such a region, at the rates that make each edit as common under one label as under the
  other (:meth:`CounterfactualAugment.sham_rates`). Labels and masks stay;
- *style swap* (``style_swap_p``): any image, whatever its class, takes the global style of a random training
  file of any class: its intensity histogram, its resolution when lower, and its colour mode and JPEG
  quantisation tables. Style then carries no information about the class.

Every draw comes from a generator seeded by the item's seed, so an epoch's counterfactuals are reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from hierarchy.data.counterfactual import (
    FileStyle,
    check_removal_fills,
    head_of,
    healthy_region,
    paste_tumour,
    remove_tumour,
    restyle_like,
)
from hierarchy.labels import NO_TUMOR, is_missing

if TYPE_CHECKING:
    from hierarchy.data.dataset import ImageDataset

# A pasted tumour must lie this much inside the recipient's head, else another donor is tried.
MIN_INSIDE_HEAD = 0.8
DONOR_TRIES = 4
# Removal margin range, as a fraction of the crop's longer side.
REMOVAL_MARGIN = (0.01, 0.04)
# A sham edit keeps this far (a fraction of the crop's longer side) from the image's tumour, real or pasted.
SHAM_CLEARANCE = 0.06
MIRROR_PLANES = frozenset({"axial", "coronal"})


def training_fill(plane: str | None) -> str:
    """The removal fill training uses for a slice of ``plane``: the contralateral hemisphere mirrored in for
    axial and coronal slices, diffusion filling otherwise (a sagittal slice has no mirror image)."""
    return "contralateral" if plane in MIRROR_PLANES else "diffusion"


class CounterfactualAugment:
    """Counterfactual and style-decorrelating augmentation for the rows of a training frame.

    ``frame`` is the dataset's frame (``path``, ``label``, optional ``plane`` and ``mask_path``); ``classes``
    the dataset's label classes, which must contain ``normal`` for paste-in and removal.
    """

    def __init__(self, frame: pd.DataFrame, classes: tuple[str, ...], *, paste_p: float = 0.0,
                 removal_p: float = 0.0, style_swap_p: float = 0.0, sham_edits: bool = False,
                 removal_fills: tuple[str, ...] = (), normal: str = NO_TUMOR) -> None:
        for name, p in (("paste_p", paste_p), ("removal_p", removal_p), ("style_swap_p", style_swap_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p!r}")
        if (paste_p or removal_p) and normal not in classes:
            raise ValueError(f"paste-in and removal need the class {normal!r} among the classes {list(classes)}")
        if sham_edits and not (paste_p or removal_p):
            raise ValueError("sham_edits hide the traces of paste-in and removal; set paste_p or removal_p")
        check_removal_fills(removal_fills)
        self.removal_fills = tuple(removal_fills)
        self.frame = frame.reset_index(drop=True)
        self.classes = tuple(classes)
        self.paste_p, self.removal_p, self.style_swap_p = paste_p, removal_p, style_swap_p
        self.normal = normal
        labels = self.frame["label"].astype(str)
        has_mask = (self.frame["mask_path"].notna() if "mask_path" in self.frame.columns
                    else pd.Series(False, index=self.frame.index))
        self.with_mask = (labels != normal) & has_mask
        self.is_normal = labels == normal
        if (paste_p or sham_edits) and not self.with_mask.any():
            raise ValueError("paste-in and sham edits need tumour rows with a mask (a mask_path column), and the "
                             "frame has none")
        planes = self.frame["plane"] if "plane" in self.frame.columns else pd.Series(None, index=self.frame.index)
        self.planes = [None if is_missing(p) else str(p) for p in planes]
        self.sham_fill_p, self.sham_paste_p = self.sham_rates() if sham_edits else (0.0, 0.0)
        self._donors: dict[tuple[str | None, bool], np.ndarray] = {}
        self._styles: dict[int, FileStyle] = {}

    def sham_rates(self) -> tuple[float, float]:
        """``(fill, paste)``: the probabilities of a sham removal fill on a tumour-labelled image and of a sham
        paste on a no-tumour-labelled one that make, in expectation over this frame's rows, the share of images
        with a removal fill (paste seam) equal among tumour-labelled and no-tumour-labelled images (the fill
        capped at 1). A tumour without a mask gets no fill (it could cover the tumour): the others make up for it."""
        normals, masked = float(self.is_normal.sum()), float(self.with_mask.sum())
        others = len(self.frame) - normals - masked  # tumours without a mask: never edited
        removed, pasted = masked * self.removal_p, normals * self.paste_p
        labelled_normal = normals - pasted + removed
        labelled_tumour = masked - removed + others + pasted
        fill = removed / labelled_normal if labelled_normal else 0.0
        fill *= labelled_tumour / (labelled_tumour - others) if labelled_tumour > others else 0.0
        paste = pasted / labelled_tumour if labelled_tumour else 0.0
        return min(fill, 1.0), paste

    def donors(self, plane: str | None, *, normal: bool = False) -> np.ndarray:
        """Rows of the same plane as a slice of ``plane`` (any plane when unknown or none matches) whose tumour
        can be pasted into it, or with ``normal`` no-tumour rows whose tissue can."""
        if (plane, normal) not in self._donors:
            pool = (self.is_normal if normal else self.with_mask).to_numpy()
            same = np.array([plane is None or p == plane for p in self.planes])
            rows = np.flatnonzero(pool & same)
            self._donors[plane, normal] = rows if rows.size else np.flatnonzero(pool)
        return self._donors[plane, normal]

    def style(self, row: int) -> FileStyle:
        if row not in self._styles:
            self._styles[row] = FileStyle.of(self.frame["path"].iat[row])
        return self._styles[row]

    def __call__(self, dataset: ImageDataset, row: int, image: Image.Image, label: str,
                 mask: np.ndarray | None, rng: np.random.Generator) -> tuple[Image.Image, str, np.ndarray | None]:
        """``(image, label, mask)`` of row ``row`` after this augmentation (mask None: unknown)."""
        edited = mask
        if label == self.normal and self.paste_p and rng.random() < self.paste_p:
            image, label, mask = self._paste(dataset, row, image, label, mask, rng)
            edited = mask
        elif label != self.normal and mask is not None and mask.any() and self.removal_p \
                and rng.random() < self.removal_p:
            image = Image.fromarray(self._fill(np.asarray(image), mask, row, rng))
            label, mask = self.normal, np.zeros_like(mask)
        known = edited is not None and edited.any()  # a tumour whose mask is unknown or empty could be covered
        sham_p = self.sham_paste_p if label == self.normal else self.sham_fill_p if known else 0.0
        if sham_p and rng.random() < sham_p:
            image = self._sham(dataset, row, image, label, edited, rng)
        if self.style_swap_p and rng.random() < self.style_swap_p:
            image = self._restyle(dataset, row, image, int(rng.integers(len(self.frame))))
        return image, label, mask

    def fill_method(self, row: int, rng: np.random.Generator) -> str:
        """The fill of a removal in row ``row``: the :func:`training_fill` of its plane, or with ``removal_fills``
        one of them drawn at random (``contralateral`` only where the plane has a mirror image)."""
        plane = self.planes[row]
        if not self.removal_fills:
            return training_fill(plane)
        usable = [f for f in self.removal_fills if f != "contralateral" or plane in MIRROR_PLANES]
        return str(rng.choice(usable)) if usable else training_fill(plane)

    def _fill(self, image: np.ndarray, region: np.ndarray, row: int, rng: np.random.Generator) -> np.ndarray:
        """``image`` with ``region`` removed by the row's :meth:`fill_method`."""
        return remove_tumour(image, region, method=self.fill_method(row, rng),
                             margin=float(rng.uniform(*REMOVAL_MARGIN)), seed=int(rng.integers(2**31)))

    def _sham(self, dataset: ImageDataset, row: int, image: Image.Image, label: str, edited: np.ndarray | None,
              rng: np.random.Generator) -> Image.Image:
        """``image`` with a sham edit over a tumour-shaped region of healthy tissue (unchanged when none fits):
        a removal fill when ``label`` is a tumour, another no-tumour image's tissue pasted when it is not."""
        pixels = np.asarray(image)
        avoid = np.zeros(pixels.shape, dtype=bool) if edited is None else edited.astype(bool)
        if avoid.any():
            avoid = ndimage.binary_dilation(avoid, iterations=max(1, round(SHAM_CLEARANCE * max(pixels.shape))))
        shape_row = int(rng.choice(self.donors(self.planes[row])))
        shape = dataset.mask(shape_row)
        if shape is None or not shape.any():
            return image
        region = healthy_region(shape, head_of(pixels), avoid, rng, tries=DONOR_TRIES, inside=MIN_INSIDE_HEAD)
        if region is None:
            return image
        if label != self.normal:
            return Image.fromarray(self._fill(pixels, region, row, rng))
        tissue = int(rng.choice(self.donors(self.planes[row], normal=True)))
        composite, _ = paste_tumour(pixels, np.asarray(dataset.decoded(tissue)), region)
        return Image.fromarray(composite)

    def _paste(self, dataset: ImageDataset, row: int, image: Image.Image, label: str, mask: np.ndarray | None,
               rng: np.random.Generator) -> tuple[Image.Image, str, np.ndarray | None]:
        recipient = np.asarray(image)
        head = head_of(recipient)
        donors = self.donors(self.planes[row])
        for donor in rng.choice(donors, size=min(DONOR_TRIES, len(donors)), replace=False):
            donor_mask = dataset.mask(int(donor))
            if donor_mask is None or not donor_mask.any():
                continue
            composite, pasted = paste_tumour(recipient, np.asarray(dataset.decoded(int(donor))), donor_mask)
            if (pasted & head).sum() >= MIN_INSIDE_HEAD * pasted.sum():
                return Image.fromarray(composite), str(self.frame["label"].iat[int(donor)]), pasted
        return image, label, mask

    def _restyle(self, dataset: ImageDataset, row: int, image: Image.Image, reference: int) -> Image.Image:
        """``image`` with the reference row's histogram and encoding, and its resolution when lower than this row's."""
        ratio = min(1.0, max(self.style(reference).size) / max(self.style(row).size))
        size = tuple(max(8, round(side * ratio)) for side in image.size)
        return restyle_like(np.asarray(image), np.asarray(dataset.decoded(reference)), self.style(reference),
                            size=size)
