"""Secondary test sets (`--external`): another dataset, cleaned of anything the models trained on (duplicate-free,
which does not make it source-disjoint)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.data import duplicate_groups, index_dataset

logger = logging.getLogger(__name__)


def external_name(root: str | Path) -> str:
    """The key an external dataset gets in reports and ``summary.json``: its folder name."""
    return Path(root).resolve().name


def load_external(root: str | Path, train: pd.DataFrame,
                  indexed: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Index ``root`` (any layout the data layer reads; ``indexed``: its index, when already made) and drop
    images duplicating training images.

    Exact (sha256) and near (perceptual hash) duplicates of any ``train`` row are removed, since a
    model has seen them. Returns the cleaned frame and a record of what was removed.
    """
    external = (index_dataset(root) if indexed is None else indexed).reset_index(drop=True)
    both = pd.concat([train.assign(_source="train"), external.assign(_source="external")],
                     ignore_index=True)
    groups = duplicate_groups(both, near=True)
    seen_in_training = set(groups[both["_source"] == "train"])
    leaked = groups[both["_source"] == "external"].isin(seen_in_training).to_numpy()
    record = {
        "root_name": external_name(root),
        "n_indexed": int(len(external)),
        "n_removed_as_training_duplicates": int(leaked.sum()),
        "removed_ids": external.loc[leaked, "id"].tolist(),
        "n_evaluated": int((~leaked).sum()),
        "labels": external.loc[~leaked, "label"].value_counts().to_dict(),
    }
    logger.info("external %s: %d images, %d removed as duplicates of training images",
                record["root_name"], record["n_indexed"], record["n_removed_as_training_duplicates"])
    return external.loc[~leaked].reset_index(drop=True), record
