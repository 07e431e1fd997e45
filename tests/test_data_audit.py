"""The dataset audit and the `hierarchy audit` command."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from hierarchy.cli import main
from hierarchy.data import audit, index_dataset
from hierarchy.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory):
    """Synthetic data with a within-split duplicate, a train/test duplicate carrying another plane,
    an RGB-only class, and one unreadable file."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("audit") / "d", n_per_cell_train=4,
                                  n_per_cell_test=2, seed=2)
    train, test = root / "classification_task" / "train", root / "classification_task" / "test"
    glioma = sorted((train / "glioma").glob("*.jpg"))
    shutil.copy(glioma[0], train / "glioma" / "brisc2025_train_00900_gl_ax_t1.jpg")
    shutil.copy(glioma[1], test / "glioma" / "brisc2025_test_00900_gl_sa_t1.jpg")
    for path in (train / "no_tumor").glob("*.jpg"):
        Image.open(path).convert("RGB").save(path, quality=95)
    (train / "pituitary" / "brisc2025_train_00999_pi_ax_t1.jpg").write_text("broken")
    return root


@pytest.fixture(scope="module")
def report(planted_root):
    return audit(planted_root, progress=False)


def test_counts_and_duplicates(report):
    summary = report.to_dict()
    assert summary["n_images"] == 4 * 3 * 4 + 4 * 3 * 2 + 2
    assert summary["exact_duplicate_groups"] == 2 and summary["exact_duplicate_files"] == 4
    assert summary["cross_split_duplicate_groups"] == 1
    assert summary["plane_conflict_groups"] == 1 and summary["label_conflict_groups"] == 0
    crossing = [g for g in report.exact_duplicates if g["cross_split"]][0]
    assert sorted(crossing["splits"]) == ["test", "train"] and sorted(crossing["planes"]) == ["axial", "sagittal"]
    assert crossing["plane_conflict"]
    cells = {(c["split"], c["label"], c["plane"]): c["n"] for c in report.counts}
    assert cells[("train", "glioma", "axial")] == 5 and cells[("test", "glioma", "sagittal")] == 3


def test_unreadable_and_rgb(report):
    assert [u["path"].rsplit("/", 1)[-1] for u in report.unreadable] == ["brisc2025_train_00999_pi_ax_t1.jpg"]
    rgb = report.rgb_fraction_by_class
    assert rgb["no_tumor"] == pytest.approx(12 / 18) and rgb["glioma"] == 0.0
    mode = [c for c in report.confounders if c["target"] == "label" and c["feature"] == "mode"][0]
    assert mode["chi2_p"] < 1e-3 and mode["cramers_v"] > 0.5
    tree = [m for m in report.metadata_classifier if m["target"] == "label"][0]
    assert tree["accuracy"] > tree["majority_accuracy"]


def test_write_markdown_and_json(report, tmp_path):
    md_path, json_path = report.write(tmp_path / "out")
    data = json.loads(json_path.read_text())
    for key in ("n_images", "exact_duplicate_groups", "exact_duplicate_files", "cross_split_duplicate_groups",
                "plane_conflict_groups", "unreadable", "rgb_fraction_by_class", "exact_duplicates",
                "near_duplicates", "confounders", "metadata_classifier", "counts"):
        assert key in data
    text = md_path.read_text()
    assert "2 groups covering 4 files" in text and "**cross_split**" in text
    with pytest.raises(FileExistsError, match="audit.md"):
        report.write(tmp_path / "out")
    report.write(tmp_path / "out", overwrite=True)


def test_frame_input_and_no_near(planted_root):
    frame = index_dataset(planted_root, skip_bad=True)
    report = audit(frame, near=False)
    assert report.near_duplicates is None and report.to_dict()["near_duplicate_groups"] is None
    assert report.to_dict()["exact_duplicate_groups"] == 2 and len(report.unreadable) == 1


def test_near_duplicates_found(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_per_cell_train=2, n_per_cell_test=1, seed=5)
    src = sorted((root / "classification_task" / "train" / "meningioma").glob("*.jpg"))[0]
    Image.open(src).save(src.with_name("brisc2025_train_00800_me_co_t1.jpg"), quality=60)
    report = audit(root, progress=False)
    assert report.to_dict()["exact_duplicate_groups"] == 0
    planted = [g for g in report.near_duplicates if any("00800" in i for i in g["ids"])]
    assert len(planted) == 1 and planted[0]["plane_conflict"] != (src.name.split("_")[4] == "co")


def test_cli(planted_root, tmp_path, capsys):
    out, json_file = tmp_path / "audit", tmp_path / "extra" / "a.json"
    assert main(["audit", str(planted_root), "--out", str(out), "--json", str(json_file), "--no-near"]) == 0
    printed = capsys.readouterr().out
    assert "# Dataset audit" in printed and "Near duplicates: not searched" in printed
    assert (out / "audit.md").is_file() and json.loads(json_file.read_text())["cross_split_duplicate_groups"] == 1
    assert main(["audit", str(planted_root), "--json", str(json_file), "--no-near"]) == 2  # refuses overwrite
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.brisc
@pytest.mark.slow
def test_brisc_audit_numbers(brisc_root):
    summary = audit(brisc_root, progress=False).to_dict()
    assert summary["n_images"] == 6000 and summary["unreadable"] == []
    assert summary["exact_duplicate_groups"] == 46 and summary["exact_duplicate_files"] == 96
    assert summary["cross_split_duplicate_groups"] == 7
    assert summary["plane_conflict_groups"] >= 13
    assert summary["rgb_fraction_by_class"]["no_tumor"] == 1.0
    assert summary["rgb_fraction_by_class"]["glioma"] < 0.5


def _with_orientation(path, orientation: int) -> None:
    image = Image.open(path)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), quality=95)


def test_exif_orientation_confined_to_one_class_is_flagged(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_per_cell_train=3, n_per_cell_test=1, seed=3)
    turned = sorted((root / "classification_task" / "train" / "no_tumor").glob("*.jpg"))[:5]
    for path, orientation in zip(turned, (3, 6, 6, 8, 3), strict=True):
        _with_orientation(path, orientation)
    frame = index_dataset(root)
    orientation = frame.set_index("path")["exif_orientation"]
    assert orientation.dtype.kind == "i" and sorted(orientation[[str(p) for p in turned]]) == [3, 3, 6, 6, 8]
    assert (orientation.drop([str(p) for p in turned]) == 1).all()
    report = audit(frame, near=False, progress=False)
    trap = next(t for t in report.metadata_traps if t["column"] == "exif_orientation")
    n_classes = frame["label"].nunique()
    assert trap["class"] == "no_tumor" and trap["n_files"] == 5 and trap["default"] == 1
    assert trap["counts"] == {c: (5 if c == "no_tumor" else 0) for c in sorted(frame["label"].unique())}
    assert 0.2 < trap["cramers_v"] <= 1 and n_classes == 4
    assert report.to_dict()["n_metadata_traps"] == len(report.metadata_traps)
    assert "**Metadata trap**: `exif_orientation` differs from 1 in 5 files, all of class no_tumor" in report.to_markdown()


def test_orientation_in_several_classes_is_no_trap(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_per_cell_train=3, n_per_cell_test=1, seed=3)
    for label in ("no_tumor", "glioma"):
        _with_orientation(sorted((root / "classification_task" / "train" / label).glob("*.jpg"))[0], 6)
    report = audit(index_dataset(root), near=False, progress=False)
    assert [t["column"] for t in report.metadata_traps] == []


def test_rgb_confined_to_no_tumor_is_flagged(report):
    trap = next(t for t in report.metadata_traps if t["column"] == "mode")
    assert trap["class"] == "no_tumor" and trap["n_files"] == 12 and set(trap["counts"].values()) == {0, 12}
