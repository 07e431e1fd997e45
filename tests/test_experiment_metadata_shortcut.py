"""The metadata-shortcut classifier's features (it lives in hierarchy.experiment, which needs torch, so this is
not among the light tests that run at the dependency floors)."""

import pandas as pd

from hierarchy.experiment.shortcut import METADATA_FEATURES, metadata_features


def _index(orientations: list[int] | None) -> pd.DataFrame:
    frame = pd.DataFrame({"mode": ["L", "RGB", "L"], "width": [512, 256, 300], "height": [512, 128, 300],
                          "file_size": [1000, 2000, 3000]})
    if orientations is not None:
        frame["exif_orientation"] = orientations
    return frame


def test_metadata_features_carry_exif_orientation():
    features = metadata_features(_index([1, 6, 3]))
    assert list(features.columns) == list(METADATA_FEATURES)
    assert features["exif_orientation"].tolist() == [1.0, 6.0, 3.0]
    assert features["is_rgb"].tolist() == [0, 1, 0] and features["aspect"].tolist() == [1.0, 2.0, 1.0]


def test_an_index_without_the_orientation_column_reads_as_upright():
    assert metadata_features(_index(None))["exif_orientation"].tolist() == [1.0, 1.0, 1.0]
