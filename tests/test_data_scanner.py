"""DICOM and NIfTI readers: the intensity path against pydicom's and nibabel's own arrays, rescale, VOI,
MONOCHROME1, multi-frame, compressed syntaxes, the plane from the geometry (oblique included), slicing
orientation, the brain rule, and indexing (scanner layout, CSV rows naming volumes, the shared files)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from hierarchy.data import index_dataset, load_image
from hierarchy.data.dicom import read_dicom_file
from hierarchy.data.image_io import ImageReadError
from hierarchy.data.volume import (
    OBLIQUE_DEGREES,
    brain_slices,
    plane_from_orientation,
    plane_source,
    to_uint8,
)
from hierarchy.data.volume_io import load_volume, parse_slice_ref, slice_ref

SCANNER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scanner_samples"


@pytest.fixture(scope="session")
def scanner_root() -> Path:
    if not (SCANNER / "manifest.csv").is_file():
        pytest.skip(f"scanner_samples not found at {SCANNER}")
    return SCANNER


def _pydicom_8bit(ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's own steps (modality LUT, VOI LUT) on its own array, then the window's output range to 0-255."""
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    bounds = apply_voi_lut(np.array([-1e12, 1e12]), ds)
    return to_uint8(values, (bounds.min(), bounds.max()))


# -- the intensity path ---------------------------------------------------------------------------------------
def test_to_uint8_maps_the_window_to_0_255_clips_and_inverts():
    values = np.array([-50.0, 0.0, 50.0, 100.0, 400.0])
    assert to_uint8(values, (0, 100)).tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(values, (0, 100), invert=True).tolist() == [255, 255, 127, 0, 0]
    ramp = np.arange(1000.0)  # default window: the 0.5th-99.5th percentiles
    out = to_uint8(ramp)
    assert out[:5].tolist() == [0] * 5 and out[-5:].tolist() == [255] * 5 and out.dtype == np.uint8


def test_an_mr_file_matches_pydicoms_own_modality_and_voi_steps():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    volume = read_dicom_file(get_testdata_file("MR_small.dcm"))
    assert volume.array.shape == (64, 64, 1)
    # an axial file (ImageOrientationPatient 1,0,0,0,1,0) is shown as stored
    np.testing.assert_array_equal(volume.slice(2, 0), _pydicom_8bit(ds))
    assert volume.plane(2) == ("axial", 0.0)
    assert volume.info["window"] == "header VOI"


def test_rescale_slope_and_intercept_are_applied_before_the_window(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 1000, 1000  # in rescaled units: 500-1500 -> 0-255
    path = tmp_path / "rescaled.dcm"
    ds.save_as(path)
    got = read_dicom_file(path).slice(2, 0).astype(int)
    rescaled = 2.0 * ds.pixel_array - 100
    expected = np.clip(np.round((rescaled - 500) / 1000 * 255), 0, 255)
    assert np.abs(got - expected).max() <= 1  # pydicom's window formula is off by half a unit at the edges
    np.testing.assert_array_equal(got, _pydicom_8bit(pydicom.dcmread(path)))


def test_without_a_window_the_volume_percentiles_are_the_default(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # rescale slope 1, intercept -1024, no window
    assert "WindowCenter" not in ds
    volume = read_dicom_file(get_testdata_file("CT_small.dcm"))
    np.testing.assert_array_equal(volume.slice(2, 0), to_uint8(apply_modality_lut(ds.pixel_array, ds)))
    assert volume.info["window"] == "percentiles 0.5-99.5"


def test_monochrome1_is_inverted(tmp_path):
    original = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "77654033" / "CR1" / "6154"
    ds = pydicom.dcmread(original)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    ds.PhotometricInterpretation = "MONOCHROME2"
    flipped = tmp_path / "mono2.dcm"
    ds.save_as(flipped)
    mono1, mono2 = read_dicom_file(original).array, read_dicom_file(flipped).array
    np.testing.assert_array_equal(mono1.astype(int) + mono2, 255)
    assert mono2.std() > 0


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_compressed_and_other_syntaxes_decode_to_the_same_pixels(name):
    np.testing.assert_array_equal(read_dicom_file(get_testdata_file(name)).array,
                                  read_dicom_file(get_testdata_file("MR_small.dcm")).array)


def test_lossy_compressed_files_decode():
    for name in ("JPEG2000.dcm", "JPGExtended.dcm", "693_J2KI.dcm"):
        volume = read_dicom_file(get_testdata_file(name))
        assert volume.array.std() > 0, name


def test_an_undecodable_syntax_is_one_error_naming_the_file(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no pip plugin decodes it
    ds.PixelData = encapsulate([ds.PixelData])
    path = tmp_path / "mpeg.dcm"
    ds.save_as(path, enforce_file_format=False)
    with pytest.raises(ImageReadError, match=r"mpeg\.dcm: cannot decode DICOM pixel data"):
        read_dicom_file(path)
    bad = tmp_path / "junk.dcm"
    bad.write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageReadError, match=r"junk\.dcm"):
        load_volume(bad)


def test_a_dicom_file_without_pixel_data_is_one_error_naming_it(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData
    path = tmp_path / "header_only.dcm"
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"header_only\.dcm: DICOM file without pixel data \(MR"):
        load_volume(path)


@pytest.mark.parametrize("field, value", [("ImageOrientationPatient", [1, 0, 0]), ("PixelSpacing", [0, 0])])
def test_malformed_dicom_geometry_is_one_error_naming_the_file_or_series(tmp_path, field, value):
    uid = pydicom.uid.generate_uid()
    for k in range(3):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.ImagePositionPatient = uid, pydicom.uid.generate_uid(), [0, 0, k]
        setattr(ds, field, value)
        ds.save_as(tmp_path / f"{k}.dcm")
    with pytest.raises(ImageReadError, match=r"0\.dcm: malformed DICOM header"):
        read_dicom_file(tmp_path / "0.dcm")
    with pytest.raises(ImageReadError, match=rf"{tmp_path.name}/@{uid}: malformed DICOM header"):
        load_volume(tmp_path, uid)


@pytest.mark.parametrize("name", ["head.nii.gz", "head.nii"])
def test_a_truncated_nifti_is_one_error_naming_the_file(tmp_path, name):
    path, _ = _nifti(tmp_path, np.eye(4), name=name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=rf"{name.replace('.', '[.]')}: cannot read NIfTI volume"):
        load_volume(path)
    path.write_bytes(b"\0" * 100)  # shorter than a NIfTI header
    with pytest.raises(ImageReadError, match=rf"{name.replace('.', '[.]')}: cannot read NIfTI volume"):
        load_volume(path)


def test_multi_frame_files_give_one_slice_per_frame():
    dose = read_dicom_file(get_testdata_file("rtdose.dcm"))  # 15 frames with geometry
    assert dose.array.shape == (10, 10, 15)
    assert dose.plane(dose.acquired_axis)[0] == "axial"
    colour = read_dicom_file(get_testdata_file("examples_ybr_color.dcm"))  # 30 colour frames, no geometry
    assert colour.array.shape == (240, 320, 30) and colour.affine is None
    assert colour.axes() == (2,) and colour.plane(2) == (None, None)


# -- the plane from the geometry ------------------------------------------------------------------------------
@pytest.mark.parametrize(("orientation", "plane"), [
    ((1, 0, 0, 0, 1, 0), "axial"), ((0, 1, 0, 0, 0, -1), "sagittal"), ((1, 0, 0, 0, 0, -1), "coronal")])
def test_the_normal_of_image_orientation_names_the_plane(orientation, plane):
    assert plane_from_orientation(orientation) == (plane, 0.0)


def test_an_oblique_slice_keeps_its_nearest_plane_and_says_how_far_it_is():
    for degrees, source in ((10, "header"), (30, "oblique")):
        t = math.radians(degrees)
        plane, angle = plane_from_orientation((1, 0, 0, 0, math.cos(t), math.sin(t)))  # axial tilted about x
        assert plane == "axial" and angle == pytest.approx(degrees)
        assert plane_source(angle) == source
    assert OBLIQUE_DEGREES < 30


def _nifti(tmp_path: Path, affine: np.ndarray, shape=(20, 24, 16), name="head.nii.gz") -> tuple[Path, np.ndarray]:
    """A synthetic ellipsoid head with one bright marker voxel."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    data = np.where((grid ** 2).sum(axis=0) < 0.8, 100.0, 0.0).astype(np.float32)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data


def test_a_nifti_volume_is_reoriented_to_canonical_and_shown_like_a_viewer(tmp_path):
    # stored P-S-R like the IXI files: axis 0 runs posterior, 1 superior, 2 right
    affine = np.array([[0, 0, 2, -20], [-2, 0, 0, 20], [0, 2, 0, -20], [0, 0, 0, 1.0]])
    shape = (20, 24, 16)
    grid = np.zeros(shape, dtype=np.float32)
    grid[5:15, 5:19, 4:12] = 50.0
    grid[5, 18, 11] = 200.0  # anterior (low axis 0), superior (high axis 1), right (high axis 2)
    path = tmp_path / "psr.nii.gz"
    nib.save(nib.Nifti1Image(grid, affine), path)
    volume = load_volume(path)
    canonical = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(volume.array, to_uint8(canonical.get_fdata()))
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert [volume.plane(a)[0] for a in range(3)] == ["sagittal", "coronal", "axial"]
    assert volume.acquired_axis == 0  # the stored slice axis (R) is canonical x
    x, y, z = (int(v) for v in np.argwhere(volume.array == volume.array.max())[0])
    axial = volume.slice(2, z)
    row, col = np.argwhere(axial == axial.max())[0]
    assert row < axial.shape[0] / 2 and col < axial.shape[1] / 2  # anterior up, patient's right on the left
    coronal = volume.slice(1, y)
    row, col = np.argwhere(coronal == coronal.max())[0]
    assert row < coronal.shape[0] / 2 and col < coronal.shape[1] / 2  # superior up, right on the left
    sagittal = volume.slice(0, x)
    row, col = np.argwhere(sagittal == sagittal.max())[0]
    assert row < sagittal.shape[0] / 2 and col < sagittal.shape[1] / 2  # superior up, face on the left


def test_slices_are_resampled_to_square_pixels(tmp_path):
    path, _ = _nifti(tmp_path, np.diag([1.0, 1.0, 3.0, 1.0]), shape=(30, 30, 10))
    volume = load_volume(path)
    assert volume.slice(2, 5).shape == (30, 30)
    assert volume.slice(0, 15).shape == (30, 30)  # 10 slices of 3 mm become 30 rows of 1 mm
    assert volume.position(2, 4) == pytest.approx(12.0)


def test_the_brain_rule_keeps_central_slices_and_drops_the_edges(tmp_path):
    path, _ = _nifti(tmp_path, np.diag([4.0, 4.0, 4.0, 1.0]), shape=(40, 48, 40))
    volume = load_volume(path)
    for axis in range(3):
        brain = brain_slices(volume, axis)
        n = len(brain)
        assert not brain[0] and not brain[-1], axis
        if axis != 2:
            assert brain[n // 2]
    axial = np.flatnonzero(brain_slices(volume, 2))
    top = np.flatnonzero(volume.head_area(2) >= 10).max()
    assert (top - axial.max()) * 4 >= 10 and (top - axial.min()) * 4 <= 110


def test_slice_references_round_trip_and_decode(tmp_path):
    path, _ = _nifti(tmp_path, np.eye(4))
    ref = slice_ref(path, 1, 7)
    assert parse_slice_ref(ref) == (path.resolve(), None, 1, 7)
    assert parse_slice_ref(slice_ref(tmp_path, 2, 3, series="1.2.3")) == (tmp_path.resolve(), "1.2.3", 2, 3)
    assert parse_slice_ref(str(path)) is None
    image = load_image(ref)
    assert image.mode == "L" and np.asarray(image).shape == load_volume(path).slice(1, 7).shape
    with pytest.raises(ImageReadError, match="slice 99"):
        load_image(slice_ref(path, 1, 99))


# -- indexing -------------------------------------------------------------------------------------------------
def test_index_dataset_reads_a_folder_of_nifti_and_dicom_files(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    _nifti(root, np.eye(4), name="a.nii.gz")
    shutil.copy(get_testdata_file("MR_small.dcm"), root / "mr.dcm")
    frame = index_dataset(root)
    assert set(frame["layout"]) == {"scanner"}
    assert {"series", "header_plane", "plane_source", "slice_position", "brain"} <= set(frame.columns)
    nifti = frame[frame["series"] == "a.nii.gz"]
    assert len(nifti) == 16 and set(nifti["header_plane"]) == {"axial"}  # acquired axis: the stored third
    assert (nifti["plane"] == nifti["header_plane"]).all() and set(nifti["plane_source"]) == {"header"}
    assert frame["label"].isna().all()
    every = index_dataset(root).pipe(lambda f: f)  # indexing twice gives the same rows
    pd.testing.assert_frame_equal(frame, every)


def test_a_csv_row_naming_a_volume_expands_to_its_labelled_slices(tmp_path):
    path, _ = _nifti(tmp_path, np.eye(4), name="healthy.nii.gz")
    (tmp_path / "list.csv").write_text("path,label,split\nhealthy.nii.gz,no_tumor,test\n")
    frame = index_dataset(tmp_path / "list.csv")
    assert len(frame) == 16 and set(frame["label"]) == {"no_tumor"} and set(frame["split"]) == {"test"}
    assert set(frame["layout"]) == {"csv"}


def test_the_shared_dicom_series_stack_along_their_normal(scanner_root):
    frame = index_dataset(scanner_root / "dicom")
    counts = frame.groupby("series")["header_plane"].agg(["count", "first"])
    mprage = counts.loc[[s for s in counts.index if s.startswith("t1_mprage")]]
    assert mprage["count"].tolist() == [176] and mprage["first"].tolist() == ["sagittal"]
    field_maps = counts.loc[[s for s in counts.index if s.startswith("field_map")]]
    assert field_maps["count"].tolist() == [36, 36] and set(field_maps["first"]) == {"axial"}
    positions = frame[frame["series"].str.startswith("t1_mprage")].sort_values("slice_index")["slice_position"]
    assert np.all(np.diff(positions.to_numpy()) > 0)


def test_the_shared_manifest_indexes_with_header_planes_that_match_it(scanner_root):
    manifest = pd.read_csv(scanner_root / "manifest.csv")
    frame = index_dataset(scanner_root / "manifest.csv")
    dicom = frame[frame["series"].str.endswith(".dcm")]
    expected = manifest.set_index("path")["acquired_plane"]
    assert (dicom["header_plane"].to_numpy() == expected.loc[dicom["series"]].to_numpy()).all()
    assert len(frame) == (manifest["format"] == "dicom").sum() + 2 * 90
    assert set(frame["label"]) == {"no_tumor"}


def test_the_shared_nifti_volumes_reslice_in_all_three_planes(scanner_root):
    from hierarchy.data.scanner_index import scanner_rows

    path = scanner_root / "nifti" / "IXI012-HH-1211_T1.nii.gz"
    rows = pd.DataFrame(scanner_rows(path, scanner_root, axes="all"))
    assert rows.groupby("header_plane").size().to_dict() == {"axial": 120, "coronal": 120, "sagittal": 90}
    brain = rows[rows["brain"]].groupby("header_plane").size()
    assert (brain > 30).all()
    canonical = nib.as_closest_canonical(nib.load(path)).get_fdata()
    np.testing.assert_array_equal(load_volume(path).array, to_uint8(canonical))
