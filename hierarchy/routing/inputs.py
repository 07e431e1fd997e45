"""What ``predict`` accepts (files, folders, in-memory images, a dataset index) and its one decode step."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hierarchy.data import ImageReadError, PreprocessConfig, eval_transform
from hierarchy.data.image_io import link_problem
from hierarchy.data.index import IMAGE_SUFFIXES
from hierarchy.data.perturb import get_perturbation
from hierarchy.data.scanner_index import SCANNER_COLUMNS, scanner_rows
from hierarchy.data.volume import is_dicom_file, is_nifti, is_scanner_path
from hierarchy.data.volume_io import parse_slice_ref
from hierarchy.training.runtime import resolve_runtime


@dataclass
class Inputs:
    """Resolved inputs: one id and one decodable source per image, and the index frame when given one."""

    ids: list[str]
    sources: list[Any]
    frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.ids)


def _folder_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """The image files under ``folder`` (any depth, hidden ones left out) plus every entry that cannot be
    followed or read (a broken symlink, a symlink loop, a folder without read permission: those stay in the list
    so that decoding names each one and says why), and its scanner items: NIfTI files, and the folder itself
    when it holds DICOM files."""
    if not os.access(folder, os.R_OK | os.X_OK):
        raise PermissionError(f"{folder}: folder cannot be read (permission denied)")
    found: list[Path] = []
    problems: list[Path] = []

    def unreadable(err: OSError) -> None:
        problems.append(Path(err.filename))

    for parent, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            path = Path(parent) / name
            if name.startswith("."):
                continue
            if link_problem(path):
                problems.append(path)
            elif path.is_file():
                found.append(path)
    found.sort()
    files = sorted([p for p in found if p.suffix.lower() in IMAGE_SUFFIXES] + problems)
    scanner = [p for p in found if is_nifti(p)] + ([folder] if any(is_dicom_file(p) for p in found) else [])
    if not files and not scanner:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}), DICOM or NIfTI files found "
                                f"under {folder}")
    return files, scanner


def _unique(ids: list[str], sources: list[Any]) -> list[str]:
    """``ids`` with each repeated one replaced by its file's path as given (and, for the same file given twice,
    a ``#<n>`` suffix), so that no two rows of a prediction table share an id."""
    counts = Counter(ids)
    ids = [str(Path(source).as_posix()) if counts[i] > 1 and isinstance(source, (str, Path)) else i
           for i, source in zip(ids, sources, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for i in ids:
        seen[i] += 1
        unique.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return unique


def resolve_inputs(inputs: Any) -> Inputs:
    """Turn a path, folder, image, array, tensor, a list of those, or a dataset-index frame into ``Inputs``.

    Ids are the frame's ``id`` column, a file's name, a path relative to a given folder, or
    ``input_<n>`` for in-memory images; files that would share an id (two folders' ``scan.jpg``) get their
    path as given instead. ``Inputs`` are returned as they are. NIfTI files, DICOM files and
    folders holding DICOM files become one input per slice as the file stored them
    (``hierarchy.data.scanner_index``), and then ``frame`` holds each input's ``path`` and the slices'
    ``SCANNER_COLUMNS`` (None for plain images).
    """
    if isinstance(inputs, Inputs):
        return inputs
    if isinstance(inputs, pd.DataFrame):
        if "path" not in inputs.columns:
            raise ValueError("a dataset-index frame needs a 'path' column (see hierarchy.data.index_dataset)")
        frame = inputs.reset_index(drop=True)
        ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [Path(p).name for p in frame["path"]]
        return Inputs(ids, frame["path"].tolist(), frame)
    single = isinstance(inputs, (str, Path, Image.Image, np.ndarray, torch.Tensor))
    items: Sequence[Any] = [inputs] if single else list(inputs)
    if not items:
        raise ValueError("no inputs to predict on")
    ids: list[str] = []
    sources: list[Any] = []
    slices: dict[int, dict] = {}  # input position -> its scanner row

    def add_scanner(path: Path, base: Path) -> None:
        for row in scanner_rows(path, base):
            slices[len(ids)] = row
            ids.append(row["id"])
            sources.append(row["path"])

    for n, item in enumerate(items):
        if isinstance(item, (str, Path)):
            path = Path(item)
            problem = link_problem(path)
            if problem:
                raise FileNotFoundError(f"{path}: {problem}")
            if path.is_dir():
                files, scanner = _folder_images(path)
                ids += [f.relative_to(path).as_posix() for f in files]
                sources += [str(f) for f in files]
                for scan in scanner:
                    add_scanner(scan, path)
                continue
            if not path.exists() and parse_slice_ref(path) is None:
                raise FileNotFoundError(f"{path}: no such file or folder")
            if path.exists() and is_scanner_path(path):
                add_scanner(path, path.parent)
                continue
            ids.append(path.name)
            sources.append(str(path))
        else:
            ids.append(f"input_{n}")
            sources.append(item)
    ids = _unique(ids, sources)
    if not slices:
        return Inputs(ids, sources)
    frame = pd.DataFrame([{"id": i, "path": s if isinstance(s, str) else None,
                           **{c: slices.get(n, {}).get(c) for c in SCANNER_COLUMNS}}
                          for n, (i, s) in enumerate(zip(ids, sources, strict=True))])
    return Inputs(ids, sources, frame)


@dataclass(frozen=True)
class Skipped:
    """An input that could not be decoded: its row, id and the decoder's message (naming the file)."""

    row: int
    id: str
    error: str


class _DecodedSources(Dataset):
    """``sources`` as (evaluation tensor, error message) pairs, decoded in this process or in DataLoader
    workers; the message is empty for a decodable image, and an undecodable one stands as a blank image
    (the caller decides whether it raises or is skipped)."""

    def __init__(self, sources: Sequence[Any], preprocess: PreprocessConfig, perturbation: str | None) -> None:
        self.sources = sources
        self.size = preprocess.image_size
        self.transform = eval_transform(preprocess)
        self.perturb = None if perturbation is None else get_perturbation(perturbation)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return self.transform(self.sources[index], self.perturb), ""
        except ImageReadError as err:
            return torch.zeros(1, self.size, self.size), str(err)


def decode_workers(configured: int) -> int:
    """Decoding processes for a prediction: ``configured`` (the ``train.num_workers`` setting) where the models
    run on an accelerator, 0 on a CPU, where workers take the cores the model needs (measured on 2 cores:
    2 workers cut EfficientNet-Lite0 prediction from 198 to 111 images/s at 224 px)."""
    return configured if resolve_runtime().device.type != "cpu" else 0


def batches(inputs: Inputs, preprocess: PreprocessConfig, batch_size: int, *, perturbation: str | None = None,
            skipped: list[Skipped] | None = None, num_workers: int = 0) -> Iterator[tuple[slice, torch.Tensor]]:
    """Decoded batches of ``inputs`` with the slice of rows each covers.

    With a ``skipped`` list, undecodable images are appended to it (and stand in their batch as blank
    images) instead of raising ``ImageReadError``. ``num_workers`` > 0 decodes in that many DataLoader worker
    processes, ahead of the model (worth it where decoding, not the model, bounds the speed: a GPU);
    the batches and errors are the same as with 0.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    n_batches = -(-len(inputs) // batch_size)
    loader = DataLoader(_DecodedSources(inputs.sources, preprocess, perturbation), batch_size=batch_size,
                        num_workers=min(num_workers, n_batches) if n_batches > 1 else 0)
    for start, (x, errors) in zip(range(0, len(inputs), batch_size), loader, strict=True):
        for position, message in enumerate(errors):
            if not message:
                continue
            if skipped is None:
                raise ImageReadError(message)
            skipped.append(Skipped(start + position, inputs.ids[start + position], message))
        yield slice(start, start + len(x)), x
