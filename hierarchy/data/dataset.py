"""A torch Dataset over rows of a dataset index, and a seeded DataLoader factory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from hierarchy.data.perturb import get_perturbation
from hierarchy.data.preprocess import Preprocess, PreprocessConfig, eval_transform, train_transform
from hierarchy.labels import PLANES, TUMOR_CLASSES, is_missing, to_indices

_DEFAULT_CLASSES = {"label": TUMOR_CLASSES, "plane": PLANES}


class ImageDataset(Dataset):
    """Rows of a dataset index as ``(tensor (1, S, S) float32, target index)`` pairs.

    ``target`` names the column to predict (``"label"`` or ``"plane"``); the index is -1 when
    ``target`` is None or the row's value is missing. ``train=True`` adds augmentation, with
    horizontal flips only where the row's plane allows them. ``perturbation`` (a name in
    ``PERTURBATIONS``) is applied to the decoded image before preprocessing.
    """

    def __init__(self, frame: pd.DataFrame, preprocess: PreprocessConfig, *, target: str | None = "label",
                 classes: Sequence[str] | None = None, train: bool = False,
                 perturbation: str | None = None) -> None:
        if "path" not in frame.columns:
            raise KeyError("dataset frame has no 'path' column; build it with index_dataset()")
        if target is not None and target not in frame.columns:
            raise KeyError(f"dataset frame has no {target!r} column to use as the target")
        if classes is None and target is not None:
            if target not in _DEFAULT_CLASSES:
                raise ValueError(f"pass classes= for target column {target!r}")
            classes = _DEFAULT_CLASSES[target]
        self.frame = frame.reset_index(drop=True)
        self.preprocess = preprocess
        self.target = target
        self.classes: tuple[str, ...] = tuple(classes or ())
        self.train = train
        self.perturbation = perturbation
        self._perturb = get_perturbation(perturbation) if perturbation is not None else None
        self.targets = (np.full(len(self.frame), -1, dtype=np.int64) if target is None else
                        to_indices(self.frame[target], self.classes, what=target,
                                   sources=self.frame["path"].tolist(), allow_missing=True))
        self._eval = eval_transform(preprocess)
        self._train = {plane: train_transform(preprocess, plane) for plane in (*PLANES, None)} if train else {}

    def _transform(self, row: int) -> Preprocess:
        if not self.train:
            return self._eval
        plane = self.frame["plane"].iat[row] if "plane" in self.frame.columns else None
        return self._train[None if is_missing(plane) else plane]

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self._transform(row)(self.frame["path"].iat[row], self._perturb), int(self.targets[row])


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, num_workers: int = 0,
                seed: int = 0) -> DataLoader:
    """A DataLoader whose shuffling and per-worker augmentation RNG are fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, persistent_workers=False)
