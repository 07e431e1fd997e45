"""Indexing dataset folders (BRISC 2025, Kaggle brain-tumour MRI, or a CSV list) into one table."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hierarchy.csv_io import read_csv
from hierarchy.data.image_io import ImageReadError, inspect_image_bytes, link_problem, skip_record
from hierarchy.data.scanner_index import SCANNER_COLUMNS, scanner_rows
from hierarchy.data.volume import is_dicom_file, is_nifti, is_scanner_path
from hierarchy.labels import normalize_plane, normalize_tumor_label

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("id", "path", "label", "plane", "split", "sha256", "width", "height",
                            "mode", "file_size", "exif_orientation", "layout", "mask_path")
LAYOUTS: tuple[str, ...] = ("brisc2025", "kaggle", "csv", "scanner")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
_KAGGLE_SPLITS = {"training": "train", "testing": "test"}
_CSV_SPLITS = {"train": "train", "training": "train", "test": "test", "testing": "test"}


@dataclass
class _Entry:
    """One image found by a layout reader, before its file is read."""

    path: Path
    label: str
    plane: str | None
    split: str | None
    mask_path: Path | None = None


def _check_root(root: Path) -> None:
    if not root.exists():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if root.is_dir() and not any(root.iterdir()):
        raise ValueError(f"dataset root {root} is empty")


def _kaggle_split_dirs(root: Path) -> list[tuple[Path, str]]:
    return [(d, _KAGGLE_SPLITS[d.name.lower()]) for d in sorted(root.iterdir())
            if d.is_dir() and d.name.lower() in _KAGGLE_SPLITS]


def detect_layout(root: str | Path) -> str:
    """Which layout ``root`` uses: ``brisc2025``, ``kaggle``, ``csv`` (a .csv file) or ``scanner`` (a NIfTI
    file, a DICOM file, or a folder of DICOM and NIfTI files)."""
    root = Path(root)
    _check_root(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        if is_nifti(root) or is_dicom_file(root):
            return "scanner"
        raise ValueError(f"{root} is a file but not a .csv image list, a NIfTI or a DICOM file")
    if (root / "classification_task").is_dir():
        return "brisc2025"
    if _kaggle_split_dirs(root):
        return "kaggle"
    if _scanner_items(root):
        return "scanner"
    raise ValueError(f"cannot tell the layout of {root}: expected classification_task/ (brisc2025), "
                     "Training/ and Testing/ (kaggle), a .csv file, or DICOM/NIfTI files (scanner)")


def _scanner_items(root: Path) -> list[Path]:
    """The scanner paths of a ``scanner`` root: the file itself, or every NIfTI file under the folder and the
    folder itself when it holds DICOM files."""
    if root.is_file():
        return [root]
    nifti = [p for p in sorted(root.rglob("*")) if is_nifti(p) and p.is_file() and not p.name.startswith(".")]
    return nifti + ([root] if is_scanner_path(root) else [])


def _image_files(folder: Path) -> Iterator[Path]:
    """Every non-hidden file in ``folder``; non-image suffixes, symlinks that cannot be followed and a folder
    that cannot be read (``folder`` itself included) are yielded too, so that they get reported."""
    if link_problem(folder):
        yield folder
        return
    try:
        entries = sorted(folder.iterdir())
    except PermissionError:
        yield folder  # reported as an unreadable folder
        return
    for path in entries:
        if (path.is_file() or link_problem(path)) and not path.name.startswith("."):
            yield path


def _class_folders(split_dir: Path) -> Iterator[tuple[Path, str]]:
    for folder in sorted(split_dir.iterdir()):
        if (folder.is_dir() or link_problem(folder)) and not folder.name.startswith("."):
            yield folder, normalize_tumor_label(folder.name, source=str(folder))


def _brisc_entries(root: Path) -> Iterator[_Entry]:
    task = root / "classification_task"
    splits = [d for d in sorted(task.iterdir()) if d.is_dir() and d.name in ("train", "test")]
    if not splits:
        raise ValueError(f"{task} has no train/ or test/ folder")
    for split_dir in splits:
        masks = root / "segmentation_task" / split_dir.name / "masks"
        for folder, label in _class_folders(split_dir):
            for path in _image_files(folder):
                if path.is_dir() or link_problem(path):  # reported by _read_row, whatever its name
                    yield _Entry(path, label, None, split_dir.name)
                    continue
                tokens = path.stem.split("_")
                if len(tokens) < 5 or tokens[0] != "brisc2025":
                    raise ValueError(f"{path}: name does not follow "
                                     "brisc2025_<split>_<idx>_<class>_<plane>_<seq>")
                mask = masks / f"{path.stem}.png"
                yield _Entry(path, label, normalize_plane(tokens[4], source=str(path)),
                             split_dir.name, mask if mask.is_file() else None)


def _kaggle_entries(root: Path) -> Iterator[_Entry]:
    for split_dir, split in _kaggle_split_dirs(root):
        for folder, label in _class_folders(split_dir):
            for path in _image_files(folder):
                yield _Entry(path, label, None, split)


def _csv_entries(csv_path: Path) -> Iterator[_Entry]:
    table = read_csv(csv_path, "dataset CSV (path,label[,plane][,split])", required={"path", "label"},
                     dtype=str, keep_default_na=False)
    for row_number, row in enumerate(table.to_dict("records"), start=2):
        where = f"{csv_path} line {row_number}"
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        split = row.get("split", "").strip().lower()
        if split and split not in _CSV_SPLITS:
            raise ValueError(f"{where}: unknown split {row['split']!r}; expected train or test")
        yield _Entry(path, normalize_tumor_label(row["label"], source=where),
                     normalize_plane(row.get("plane"), source=where), _CSV_SPLITS.get(split))


def _relative_id(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _read_row(entry: _Entry, base: Path, layout: str) -> dict:
    where = str(entry.path)
    problem = link_problem(entry.path)
    if problem:
        raise ImageReadError(f"{where}: {problem}")
    if entry.path.is_dir():
        raise ImageReadError(f"{where}: folder cannot be read (permission denied), so its images are not listed")
    if entry.path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{where}: not an image file suffix ({entry.path.suffix or 'none'})")
    try:
        data = entry.path.read_bytes()
    except OSError as err:
        raise ImageReadError(f"{where}: cannot read file ({err})") from err
    width, height, mode, orientation = inspect_image_bytes(data, where)
    return {
        "id": _relative_id(entry.path, base),
        "path": str(entry.path.resolve()),
        "label": entry.label,
        "plane": entry.plane,
        "split": entry.split,
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": width,
        "height": height,
        "mode": mode,
        "file_size": len(data),
        "exif_orientation": orientation,
        "layout": layout,
        "mask_path": str(entry.mask_path.resolve()) if entry.mask_path else None,
    }


def _index_root(root: str | Path, layout: str = "auto", *, skip_bad: bool = False) -> pd.DataFrame:
    """One row per image of the dataset at ``root`` (a folder, or a CSV file for layout "csv").

    Columns as in docs/architecture.md. Only file headers are decoded (files whose stream does
    not end properly are decoded fully). Bad files raise ``ImageReadError`` naming the file;
    with ``skip_bad`` they are logged and listed in ``frame.attrs["skipped"]`` as
    ``{"path", "reason"}`` dicts. Nothing is written under ``root``.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected 'auto' or one of {LAYOUTS}")
    else:
        _check_root(root)
    if layout == "csv":
        entries, base = _csv_entries(root), root.parent
    elif layout == "brisc2025":
        entries, base = _brisc_entries(root), root
    elif layout == "scanner":
        base = root.parent if root.is_file() else root
        entries = (_Entry(path, None, None, None) for path in _scanner_items(root))
    else:
        entries, base = _kaggle_entries(root), root
    rows, skipped = [], []
    for entry in entries:
        try:
            if layout == "scanner" or (layout == "csv" and is_scanner_path(entry.path)):
                rows += scanner_rows(entry.path, base, label=entry.label, plane=entry.plane, split=entry.split,
                                     layout=layout)
            else:
                rows.append(_read_row(entry, base, layout))
        except ImageReadError as err:
            if not skip_bad:
                raise
            skipped.append(skip_record(entry.path, err))
    if not rows:
        raise ValueError(f"no readable images found under {root} (layout {layout})")
    columns = list(COLUMNS) + (list(SCANNER_COLUMNS) if any("series" in row for row in rows) else [])
    frame = pd.DataFrame(rows, columns=columns).sort_values("id", ignore_index=True)
    text = [c for c in ("series", "header_plane", "plane_source", "brain") if c in columns]
    for column in ("plane", "split", "mask_path", *text):  # keep None (not NaN) for "not known"
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    frame["exif_orientation"] = frame["exif_orientation"].fillna(1).astype(int)  # scanner files carry no EXIF
    frame.attrs["skipped"] = skipped
    frame.attrs["root"] = str(root.resolve())
    return frame


def source_name(root: str | Path) -> str:
    """The default ``source`` of a dataset root: its folder name (a CSV list's file stem)."""
    path = Path(root).resolve()
    return path.stem if path.is_file() else path.name


def index_dataset(roots: str | Path | Sequence[str | Path] | Mapping[str, str | Path], layout: str = "auto",
                  *, skip_bad: bool = False) -> pd.DataFrame:
    """One row per image of one dataset or several, with a ``source`` column naming each row's dataset.

    ``roots``: a root (a folder, or a CSV file for layout "csv"), a sequence of roots (each source
    named by :func:`source_name`), or a mapping ``{source: root}``. Each root is indexed on its own
    (``layout`` applies to every root; "auto" detects each one's). With several sources, ids are
    prefixed with ``"<source>/"`` so they stay unique. Columns as in docs/architecture.md plus
    ``source``. Only file headers are decoded (files whose stream does not end properly are decoded
    fully). Bad files raise ``ImageReadError`` naming the file; with ``skip_bad`` they are logged
    and listed in ``frame.attrs["skipped"]`` as ``{"path", "reason"}`` dicts. ``frame.attrs["roots"]``
    maps each source to its resolved root. Nothing is written under any root.
    """
    if isinstance(roots, Mapping):
        named = {str(name): Path(root) for name, root in roots.items()}
    else:
        paths = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
        names = [source_name(p) for p in paths]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"several roots are named {repeated}; pass a mapping {{source: root}} "
                             "to name them apart")
        named = dict(zip(names, paths, strict=True))
    if not named:
        raise ValueError("no dataset root given")
    frames = []
    for name, root in named.items():
        frame = _index_root(root, layout, skip_bad=skip_bad)
        if len(named) > 1:
            frame["id"] = name + "/" + frame["id"]
        frames.append(frame.assign(source=name))
    attrs = {"skipped": [s for f in frames for s in f.attrs["skipped"]],
             "roots": {name: str(root.resolve()) for name, root in named.items()}}
    if len(frames) == 1:
        attrs["root"] = frames[0].attrs["root"]
    combined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    combined.attrs = attrs
    return combined
