"""Training-time counterfactuals and style decorrelation: images whose label follows the tumour, not the file.

:class:`CounterfactualAugment` acts on a training :class:`~hierarchy.data.ImageDataset`'s decoded (head-cropped)
images, before the rest of the augmentation:

- *paste-in* (``paste_p``): a no-tumour image gets the tumour of a random training tumour image of the same
  plane and is labelled with that tumour's class;
- *removal* (``removal_p``): a tumour image with a mask gets its tumour removed (the contralateral hemisphere
  mirrored in for axial and coronal slices, diffusion filling for sagittal ones and midline tumours) and is
  labelled no tumour. The shortcut test of removal uses biharmonic inpainting instead, so that the test does not
  reward recognising the training fill;
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

from hierarchy.data.counterfactual import (
    FileStyle,
    head_of,
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
MIRROR_PLANES = frozenset({"axial", "coronal"})


class CounterfactualAugment:
    """Counterfactual and style-decorrelating augmentation for the rows of a training frame.

    ``frame`` is the dataset's frame (``path``, ``label``, optional ``plane`` and ``mask_path``); ``classes``
    the dataset's label classes, which must contain ``normal`` for paste-in and removal.
    """

    def __init__(self, frame: pd.DataFrame, classes: tuple[str, ...], *, paste_p: float = 0.0,
                 removal_p: float = 0.0, style_swap_p: float = 0.0, normal: str = NO_TUMOR) -> None:
        for name, p in (("paste_p", paste_p), ("removal_p", removal_p), ("style_swap_p", style_swap_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p!r}")
        if (paste_p or removal_p) and normal not in classes:
            raise ValueError(f"paste-in and removal need the class {normal!r} among the classes {list(classes)}")
        self.frame = frame.reset_index(drop=True)
        self.classes = tuple(classes)
        self.paste_p, self.removal_p, self.style_swap_p = paste_p, removal_p, style_swap_p
        self.normal = normal
        labels = self.frame["label"].astype(str)
        has_mask = (self.frame["mask_path"].notna() if "mask_path" in self.frame.columns
                    else pd.Series(False, index=self.frame.index))
        self.with_mask = (labels != normal) & has_mask
        if paste_p and not self.with_mask.any():
            raise ValueError("paste-in needs tumour rows with a mask (a mask_path column), and the frame has none")
        planes = self.frame["plane"] if "plane" in self.frame.columns else pd.Series(None, index=self.frame.index)
        self.planes = [None if is_missing(p) else str(p) for p in planes]
        self._donors: dict[str | None, np.ndarray] = {}
        self._styles: dict[int, FileStyle] = {}

    def donors(self, plane: str | None) -> np.ndarray:
        """Rows whose tumour can be pasted into a slice of ``plane`` (the same plane; any plane when unknown)."""
        if plane not in self._donors:
            same = np.array([plane is None or p == plane for p in self.planes])
            rows = np.flatnonzero(self.with_mask.to_numpy() & same)
            self._donors[plane] = rows if rows.size else np.flatnonzero(self.with_mask.to_numpy())
        return self._donors[plane]

    def style(self, row: int) -> FileStyle:
        if row not in self._styles:
            self._styles[row] = FileStyle.of(self.frame["path"].iat[row])
        return self._styles[row]

    def __call__(self, dataset: ImageDataset, row: int, image: Image.Image, label: str,
                 mask: np.ndarray | None, rng: np.random.Generator) -> tuple[Image.Image, str, np.ndarray | None]:
        """``(image, label, mask)`` of row ``row`` after this augmentation (mask None: unknown)."""
        if label == self.normal and self.paste_p and rng.random() < self.paste_p:
            image, label, mask = self._paste(dataset, row, image, label, mask, rng)
        elif label != self.normal and mask is not None and mask.any() and self.removal_p \
                and rng.random() < self.removal_p:
            method = "contralateral" if self.planes[row] in MIRROR_PLANES else "diffusion"
            removed = remove_tumour(np.asarray(image), mask, method=method,
                                    margin=float(rng.uniform(*REMOVAL_MARGIN)), seed=int(rng.integers(2**31)))
            image, label, mask = Image.fromarray(removed), self.normal, np.zeros_like(mask)
        if self.style_swap_p and rng.random() < self.style_swap_p:
            image = self._restyle(dataset, row, image, int(rng.integers(len(self.frame))))
        return image, label, mask

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
