"""Dataset indexing: the three layouts, label normalisation, and every bad-input case."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hierarchy.data import ImageReadError, detect_layout, holdout_source, index_dataset, source_name
from hierarchy.data.index import COLUMNS


def _some_images(synthetic_root: Path, n: int) -> list[Path]:
    return sorted((synthetic_root / "classification_task" / "train").rglob("*.jpg"))[::7][:n]


@pytest.fixture
def kaggle_root(tmp_path, synthetic_root) -> Path:
    """Kaggle layout mixing the 2021 names (notumor) and SARTAJ names (glioma_tumor)."""
    images = _some_images(synthetic_root, 8)
    folders = ["Training/glioma_tumor", "Training/notumor", "Testing/meningioma", "Testing/pituitary_tumor"]
    for i, src in enumerate(images):
        dest = tmp_path / "kaggle" / folders[i % 4]
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest / f"img_{i}.jpg")
    return tmp_path / "kaggle"


def _bad_tree(tmp_path: Path, synthetic_root: Path) -> tuple[Path, list[Path]]:
    """A Kaggle tree with two good images and one of every bad-file kind."""
    folder = tmp_path / "bad" / "Training" / "glioma"
    folder.mkdir(parents=True)
    for i, src in enumerate(_some_images(synthetic_root, 2)):
        shutil.copy(src, folder / f"good_{i}.jpg")
    good = _some_images(synthetic_root, 1)[0].read_bytes()
    bad = [folder / "truncated.jpg", folder / "text.jpg", folder / "deep.png", folder / "cmyk.jpg"]
    bad[0].write_bytes(good[: len(good) // 2])
    bad[1].write_text("not an image at all")
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(bad[2])
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(bad[3])
    return tmp_path / "bad", bad


def test_brisc_layout(synthetic_root):
    frame = index_dataset(synthetic_root)
    assert list(frame.columns) == [*COLUMNS, "source"]
    assert len(frame) == 108 and set(frame.layout) == {"brisc2025"}
    assert frame.groupby(["split", "label", "plane"]).size().to_dict() == {
        **{("train", c, p): 6 for c in ("glioma", "meningioma", "pituitary", "no_tumor")
           for p in ("axial", "coronal", "sagittal")},
        **{("test", c, p): 3 for c in ("glioma", "meningioma", "pituitary", "no_tumor")
           for p in ("axial", "coronal", "sagittal")}}
    tumour = frame[frame.label != "no_tumor"]
    assert tumour.mask_path.map(lambda p: Path(p).is_file()).all()
    assert frame[frame.label == "no_tumor"].mask_path.isna().all()
    row = frame.iloc[0]
    assert row.id.startswith("classification_task/") and Path(row.path).is_absolute()
    assert (row.width, row.height, row["mode"]) == (64, 64, "L")
    assert row.file_size == Path(row.path).stat().st_size and len(row.sha256) == 64
    assert frame.attrs["skipped"] == []


def test_kaggle_layout_normalises_labels(kaggle_root):
    assert detect_layout(kaggle_root) == "kaggle"
    frame = index_dataset(kaggle_root)
    assert len(frame) == 8 and set(frame.layout) == {"kaggle"}
    assert frame.set_index("id").label.to_dict()["Training/glioma_tumor/img_0.jpg"] == "glioma"
    assert set(frame.label) == {"glioma", "no_tumor", "meningioma", "pituitary"}
    assert frame.groupby("split").size().to_dict() == {"train": 4, "test": 4}
    assert frame.plane.isna().all() and frame.mask_path.isna().all()


def test_csv_layout(tmp_path, synthetic_root):
    images = _some_images(synthetic_root, 3)
    (tmp_path / "imgs").mkdir()
    shutil.copy(images[0], tmp_path / "imgs" / "a.jpg")
    pd.DataFrame({
        "path": ["imgs/a.jpg", str(images[1]), str(images[2])],
        "label": ["Glioma", "notumor", "pituitary_tumor"],
        "plane": ["ax", "", "Sagittal"],
        "split": ["train", "Testing", ""],
    }).to_csv(tmp_path / "list.csv", index=False)
    frame = index_dataset(tmp_path / "list.csv").set_index("id")
    assert detect_layout(tmp_path / "list.csv") == "csv"
    assert frame.loc["imgs/a.jpg", "label"] == "glioma"
    assert frame.loc["imgs/a.jpg", "plane"] == "axial"
    by_path = frame.reset_index().set_index("path")
    assert by_path.loc[str(images[1].resolve()), "label"] == "no_tumor"
    assert by_path.loc[str(images[1].resolve()), "split"] == "test"
    assert by_path.loc[str(images[1].resolve()), "plane"] is None
    assert by_path.loc[str(images[2].resolve()), "split"] is None


def test_csv_bad_label_names_the_line(tmp_path, synthetic_root):
    pd.DataFrame({"path": [str(_some_images(synthetic_root, 1)[0])], "label": ["astrocytoma"]}).to_csv(
        tmp_path / "list.csv", index=False)
    with pytest.raises(ValueError, match=r"list\.csv line 2"):
        index_dataset(tmp_path / "list.csv")


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        index_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        index_dataset(tmp_path / "empty")
    (tmp_path / "other" / "stuff").mkdir(parents=True)
    with pytest.raises(ValueError, match="cannot tell the layout"):
        index_dataset(tmp_path / "other")


def test_unknown_class_folder(tmp_path, synthetic_root):
    folder = tmp_path / "k" / "Training" / "astrocytoma"
    folder.mkdir(parents=True)
    shutil.copy(_some_images(synthetic_root, 1)[0], folder / "a.jpg")
    with pytest.raises(ValueError, match="astrocytoma"):
        index_dataset(tmp_path / "k")


@pytest.mark.parametrize("kind", range(4), ids=["truncated", "text", "16bit", "cmyk"])
def test_bad_file_raises_naming_it(tmp_path, synthetic_root, kind):
    root, bad = _bad_tree(tmp_path, synthetic_root)
    for other in bad:
        if other != bad[kind]:
            other.unlink()
    with pytest.raises(ImageReadError, match=bad[kind].name):
        index_dataset(root)


def test_skip_bad_lists_every_bad_file(tmp_path, synthetic_root, caplog):
    root, bad = _bad_tree(tmp_path, synthetic_root)
    frame = index_dataset(root, skip_bad=True)
    assert len(frame) == 2
    skipped = {Path(s["path"]).name: s["reason"] for s in frame.attrs["skipped"]}
    assert set(skipped) == {p.name for p in bad}
    assert "16-bit" in skipped["deep.png"] and "CMYK" in skipped["cmyk.jpg"]
    assert "truncated" in skipped["truncated.jpg"]
    assert sum("skipping" in r.message for r in caplog.records) == 4


def test_index_writes_nothing(synthetic_root):
    before = sorted(p for p in synthetic_root.rglob("*"))
    index_dataset(synthetic_root)
    assert sorted(p for p in synthetic_root.rglob("*")) == before


def test_single_root_gets_its_folder_as_source(synthetic_root):
    frame = index_dataset(synthetic_root)
    assert set(frame.source) == {synthetic_root.name} == {source_name(synthetic_root)}
    assert not frame.id.str.startswith(synthetic_root.name).any()
    assert frame.attrs["roots"] == {synthetic_root.name: str(synthetic_root.resolve())}


def test_several_roots_make_one_frame(synthetic_root, kaggle_root):
    single = index_dataset(synthetic_root)
    frame = index_dataset([synthetic_root, kaggle_root])
    assert list(frame.columns) == [*COLUMNS, "source"]
    assert frame.groupby("source").size().to_dict() == {synthetic_root.name: 108, "kaggle": 8}
    assert frame.groupby("source").layout.unique().map(list).to_dict() == {
        synthetic_root.name: ["brisc2025"], "kaggle": ["kaggle"]}
    assert frame.id.is_unique
    assert set(frame.id[frame.source == "kaggle"]) == {f"kaggle/{i}" for i in index_dataset(kaggle_root).id}
    assert list(frame.id[frame.source != "kaggle"]) == [f"{synthetic_root.name}/{i}" for i in single.id]
    named = index_dataset({"brisc": synthetic_root, "kg": kaggle_root})
    assert set(named.source) == {"brisc", "kg"} and named.id.str.match("(brisc|kg)/").all()
    assert set(named.attrs["roots"]) == {"brisc", "kg"}


def test_several_roots_errors(tmp_path, synthetic_root, kaggle_root):
    twin = tmp_path / "twin" / "kaggle"
    shutil.copytree(kaggle_root, twin)
    with pytest.raises(ValueError, match="several roots are named \\['kaggle'\\]"):
        index_dataset([kaggle_root, twin])
    assert set(index_dataset({"a": kaggle_root, "b": twin}).source) == {"a", "b"}
    with pytest.raises(ValueError, match="no dataset root"):
        index_dataset([])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        index_dataset([synthetic_root, tmp_path / "nowhere"])


def test_brisc_beside_another_source(brisc_root, synthetic_root):
    frame = index_dataset({"brisc2025": brisc_root, "phantoms": synthetic_root})
    assert frame.groupby("source").size().to_dict() == {"brisc2025": 6000, "phantoms": 108}
    assert frame.id.is_unique and frame.id.str.match("(brisc2025|phantoms)/classification_task/").all()
    train, test = holdout_source(frame, "phantoms", near=False)
    assert set(train.source) == {"brisc2025"} and len(test) == 108
