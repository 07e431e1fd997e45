"""Property: a CSV image list, however malformed, is indexed or refused with an error naming the CSV."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hierarchy.data import index_dataset
from hierarchy.labels import PLANES, TUMOR_CLASSES

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_LABELS = [*TUMOR_CLASSES, "notumor", "glioma_tumor"]
GOOD_SPLITS = ["train", "test", "Training", "", "testing"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """good_<i>.png (readable), text.png (not an image); missing.png does not exist."""
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"good_{i}.png")
    (folder / "text.png").write_text("not an image")
    return folder


files = st.sampled_from(["good_0.png", "good_1.png", "good_2.png", "text.png", "missing.png", ""])
labels = st.one_of(st.sampled_from(GOOD_LABELS), st.text(max_size=8))
planes = st.one_of(st.sampled_from([*PLANES, "", "ax", "Sagittal"]), st.text(max_size=6))
splits = st.one_of(st.sampled_from(GOOD_SPLITS), st.text(max_size=6))
rows = st.lists(st.tuples(files, labels, planes, splits, st.booleans()), min_size=0, max_size=8)


def _expected_error(row_values) -> bool:
    """Whether some row has a value the index refuses (a label, plane or split it does not know)."""
    from hierarchy.labels import normalize_plane, normalize_tumor_label

    for _, label, plane, split, _ in row_values:
        try:
            normalize_tumor_label(label, source="x")
            normalize_plane(plane, source="x")
        except ValueError:
            return True
        if split.strip() and split.strip().lower() not in {"train", "training", "test", "testing"}:
            return True
    return False


@SETTINGS
@given(rows, st.permutations(["path", "label", "plane", "split"]))
def test_random_manifests(images, row_values, columns):
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "images.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for file, label, plane, split, absolute in row_values:
                path = str(images / file) if absolute else f"{images.name}/{file}"
                if not absolute:
                    (Path(folder) / images.name).mkdir(exist_ok=True)
                    target = Path(folder) / images.name / file
                    if file.startswith("good") or file == "text.png":
                        target.write_bytes((images / file).read_bytes())
                values = {"path": path, "label": label, "plane": plane, "split": split}
                writer.writerow([values[c] for c in columns])
        good = sum(file.startswith("good") for file, *_ in row_values)
        try:
            frame = index_dataset(manifest, layout="csv", skip_bad=True)
        except ValueError as err:
            assert str(manifest) in str(err)
            assert _expected_error(row_values) or good == 0
        else:
            assert not _expected_error(row_values)
            assert len(frame) == good and len(frame.attrs["skipped"]) == len(row_values) - good
            assert set(frame["label"]) <= set(TUMOR_CLASSES)


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_as_a_manifest(data):
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "images.csv"
        manifest.write_bytes(data)
        try:
            index_dataset(manifest, layout="csv", skip_bad=True)
        except (ValueError, FileNotFoundError) as err:
            assert str(manifest) in str(err)
