"""Shared fixtures: tiny synthetic data for every test, BRISC 2025 when ../shared has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import torch
except ModuleNotFoundError:  # `make test-floors` runs the tests that need no torch without it
    pass
else:
    # Tests run on 2 CPU cores beside other work: keep torch to one thread so timings stay sane.
    torch.set_num_threads(1)

BRISC_ROOT = Path(os.environ.get("HIERARCHY_BRISC", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brisc2025"))


@pytest.fixture(scope="session")
def brisc_root() -> Path:
    """The BRISC 2025 folder, or skip the test when it is not beside the repository."""
    if not (BRISC_ROOT / "classification_task").is_dir():
        pytest.skip(f"BRISC 2025 not found at {BRISC_ROOT}")
    return BRISC_ROOT


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BRISC-layout phantom dataset (6 train / 3 test images per class x plane, 64 px)."""
    from hierarchy.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "brisc_synthetic")


@pytest.fixture(scope="session")
def frames(synthetic_root: Path):
    """The synthetic dataset's index as (train rows, test rows)."""
    from hierarchy.data import index_dataset

    frame = index_dataset(synthetic_root)
    return (frame[frame["split"] == "train"].reset_index(drop=True),
            frame[frame["split"] == "test"].reset_index(drop=True))


@pytest.fixture(scope="session")
def split_frames(synthetic_root: Path):
    """The synthetic dataset as (training rows, validation rows: a quarter of the non-test rows, test rows)."""
    from hierarchy.data import index_dataset, train_val_split

    frame = index_dataset(synthetic_root)
    train, val = train_val_split(frame[frame["split"] != "test"], val_fraction=0.25, seed=0)
    return train, val, frame[frame["split"] == "test"].reset_index(drop=True)
