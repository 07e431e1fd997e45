"""The shortcut check: how much of the tumour class image metadata alone predicts.

A model that sees only a file's colour mode, pixel size, aspect ratio, byte size and EXIF orientation should be
at chance on an honest dataset. Where it is not, part of any image model's accuracy may come
from those artefacts, and a reader must see that number beside the real results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from hierarchy.metrics import wilson_interval

METADATA_FEATURES: tuple[str, ...] = ("is_rgb", "width", "height", "aspect", "file_size", "exif_orientation")


def metadata_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The metadata a shortcut could use, one row per image of a dataset index."""
    return pd.DataFrame({
        "is_rgb": (frame["mode"] != "L").astype(int).to_numpy(),
        "width": frame["width"].astype(float).to_numpy(),
        "height": frame["height"].astype(float).to_numpy(),
        "aspect": (frame["width"] / frame["height"]).astype(float).to_numpy(),
        "file_size": frame["file_size"].astype(float).to_numpy(),
        # an index from before the column was recorded: every file upright
        "exif_orientation": frame.get("exif_orientation", pd.Series(1, index=frame.index)).astype(float).to_numpy(),
    }, index=frame.index)


def metadata_shortcut(train: pd.DataFrame, test: pd.DataFrame, *, seed: int = 0) -> dict[str, Any]:
    """Fit a metadata-only classifier on ``train`` and score it on ``test`` (tumour label).

    Returns test accuracy and balanced accuracy with a Wilson interval, the majority-class
    baseline, and each feature's importance.
    """
    model = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)
    x_train, x_test = metadata_features(train), metadata_features(test)
    model.fit(x_train, train["label"])
    predicted = model.predict(x_test)
    majority = DummyClassifier(strategy="most_frequent").fit(x_train, train["label"])
    correct = int(np.sum(predicted == test["label"].to_numpy()))
    return {
        "features": list(METADATA_FEATURES),
        "model": "random forest (300 trees) on metadata only",
        "n_test": int(len(test)),
        "accuracy": correct / len(test),
        "accuracy_ci": list(wilson_interval(correct, len(test))),
        "balanced_accuracy": float(balanced_accuracy_score(test["label"], predicted)),
        "majority_baseline_accuracy": float(accuracy_score(test["label"], majority.predict(x_test))),
        "feature_importance": dict(zip(METADATA_FEATURES, map(float, model.feature_importances_), strict=True)),
    }
