"""A torch Dataset over rows of a dataset index (with an optional decode-once image cache), and a
seeded DataLoader factory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hierarchy.data.counterfactual_augment import CounterfactualAugment
from hierarchy.data.masks import mask_on_decoded
from hierarchy.data.perturb import get_perturbation
from hierarchy.data.preprocess import Preprocess, PreprocessConfig, eval_transform, train_transform
from hierarchy.labels import NO_TUMOR, is_missing, to_indices
from hierarchy.progress import progress_bar


class ImageDataset(Dataset):
    """Rows of a dataset index as ``(tensor (1, S, S) float32, target index)`` pairs.

    ``target`` names the column to predict (``"label"`` or ``"plane"``) and ``classes`` its values in index
    order (required with a target: there is no default label set); the index is -1 when ``target`` is None
    or the row's value is missing. ``train=True`` adds the augmentation of ``preprocess.augment``, with
    horizontal flips only where the row's plane allows them.
    ``perturbation`` (a name in ``PERTURBATIONS``) is applied to the decoded image before preprocessing.

    ``cache=True`` keeps each row's decoded, cropped greyscale image (uint8, longer side at most
    ``preprocess.base_side``; about 67 kB at 224 px) in memory after its first use, so later epochs
    only run the augmentation and the final resize. The cache lives in the process that reads the
    rows: call :meth:`prefill` before iterating with DataLoader workers (``make_loader`` does), so
    forked workers share the filled cache instead of each filling, and losing, their own.

    ``seed``: when given, row ``i``'s augmentation in epoch ``e`` (see :meth:`set_epoch`) is drawn
    from a generator seeded by ``(seed, e, i)``, so it does not depend on workers or order; without
    it, augmentation draws from torch's global RNG (seeded per worker by the DataLoader).

    ``counterfactual`` (training only, ``target="label"``): a
    :class:`~hierarchy.data.counterfactual_augment.CounterfactualAugment` applied to the decoded image
    first (pasted-in and removed tumours, style swaps). ``return_masks``: items are ``(x, target, mask)``,
    ``mask`` the (S, S) tumour mask moved through the same augmentation (float in [0, 1]; all zero for a
    no-tumour row, all -1 where unknown: a tumour row without ``mask_path``).
    """

    def __init__(self, frame: pd.DataFrame, preprocess: PreprocessConfig, *, target: str | None = "label",
                 classes: Sequence[str] | None = None, train: bool = False,
                 perturbation: str | None = None, cache: bool = False, seed: int | None = None,
                 counterfactual: CounterfactualAugment | None = None, return_masks: bool = False,
                 normal: str = NO_TUMOR) -> None:
        if "path" not in frame.columns:
            raise KeyError("dataset frame has no 'path' column; build it with index_dataset()")
        if target is not None and target not in frame.columns:
            raise KeyError(f"dataset frame has no {target!r} column to use as the target")
        if classes is None and target is not None:
            raise ValueError(f"pass classes= (the values of {target!r} in index order) with target={target!r}")
        self.frame = frame.reset_index(drop=True)
        self.preprocess = preprocess
        self.target = target
        self.classes: tuple[str, ...] = tuple(classes or ())
        self.train = train
        self.perturbation = perturbation
        self.cache = cache
        self.seed = seed
        self.epoch = 0
        self._perturb = get_perturbation(perturbation) if perturbation is not None else None
        self.targets = (np.full(len(self.frame), -1, dtype=np.int64) if target is None else
                        to_indices(self.frame[target], self.classes, what=target,
                                   sources=self.frame["path"].tolist(), allow_missing=True))
        self._eval = eval_transform(preprocess)
        planes = set(self.frame["plane"].dropna()) if "plane" in self.frame.columns else set()
        self._train = {plane: train_transform(preprocess, plane) for plane in (*planes, None)} if train else {}
        self._decoded: dict[int, np.ndarray] = {}
        if counterfactual is not None and (not train or target != "label"):
            raise ValueError("counterfactual augmentation is for training datasets whose target is 'label'")
        if return_masks and target != "label":
            raise ValueError("return_masks needs target='label' (masks follow the tumour label)")
        self.counterfactual, self.return_masks, self.normal = counterfactual, return_masks, normal
        self._masks: dict[int, np.ndarray | None] = {}

    def _transform(self, row: int) -> Preprocess:
        if not self.train:
            return self._eval
        plane = self.frame["plane"].iat[row] if "plane" in self.frame.columns else None
        return self._train[None if is_missing(plane) else plane]

    def __len__(self) -> int:
        return len(self.frame)

    def set_epoch(self, epoch: int) -> None:
        """Make the next items' augmentation that of ``epoch`` (only used with ``seed``)."""
        self.epoch = int(epoch)

    def _item_seed(self, row: int) -> int | None:
        if self.seed is None or not self.train:
            return None
        return int(np.random.SeedSequence([self.seed, self.epoch, row]).generate_state(1)[0])

    def decoded(self, row: int) -> Image.Image:
        """Row ``row``'s decoded, cropped greyscale image (from the cache when it is on)."""
        if row in self._decoded:
            return Image.fromarray(self._decoded[row])
        image = self._eval.decode(self.frame["path"].iat[row], self._perturb)
        if self.cache:
            self._decoded[row] = np.asarray(image)
        return image

    def prefill(self, *, progress: bool | None = None) -> ImageDataset:
        """Decode every row not cached yet into the cache (turning it on); returns ``self``."""
        self.cache = True
        for row in progress_bar(range(len(self)), enabled=progress, desc="decoding images", leave=False):
            self.decoded(row)
        return self

    def mask(self, row: int) -> np.ndarray | None:
        """Row ``row``'s tumour mask on the grid of :meth:`decoded` (all False for a ``normal`` row; None when
        unknown), cached."""
        if row not in self._masks:
            label = self.frame["label"].iat[row] if "label" in self.frame.columns else None
            mask_path = self.frame["mask_path"].iat[row] if "mask_path" in self.frame.columns else None
            decoded = self.decoded(row)
            if label == self.normal:
                self._masks[row] = np.zeros(decoded.size[::-1], dtype=bool)
            elif is_missing(mask_path):
                self._masks[row] = None
            else:
                self._masks[row] = mask_on_decoded(mask_path, self.frame["path"].iat[row], decoded,
                                                   crop_foreground=self.preprocess.crop_foreground,
                                                   target_size=self.preprocess.image_size)
        return self._masks[row]

    def __getitem__(self, row: int) -> tuple[torch.Tensor, ...]:
        seed = self._item_seed(row)
        image, target = self.decoded(row), int(self.targets[row])
        wants_mask = self.return_masks or self.counterfactual is not None
        mask = self.mask(row) if wants_mask else None
        if self.counterfactual is not None:
            rng = np.random.default_rng(seed if seed is not None else int(torch.randint(2**31, ())))
            image, label, mask = self.counterfactual(self, row, image, str(self.frame["label"].iat[row]), mask, rng)
            target = self.classes.index(label)
        if not self.return_masks:
            return self._transform(row).finish(image, seed=seed), target
        if mask is None:
            x = self._transform(row).finish(image, seed=seed)
            return x, target, torch.full(x.shape[-2:], -1.0)
        x, moved = self._transform(row).finish_with_mask(image, mask, seed=seed)
        return x, target, moved


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, num_workers: int = 0,
                seed: int = 0) -> DataLoader:
    """A DataLoader whose shuffling and per-worker augmentation RNG are fixed by ``seed``.

    A caching :class:`ImageDataset` read by workers is prefilled first, so the workers share its cache.
    """
    if num_workers > 0 and isinstance(dataset, ImageDataset) and dataset.cache:
        dataset.prefill()
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, persistent_workers=False)
