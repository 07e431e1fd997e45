"""Property: whatever random corruption hits one file of a saved Router (bytes flipped, truncated or appended,
a JSON value edited), ``Router.load`` refuses it with a ``RouterError`` naming that file, or the file's bytes
did not change and it loads. No other exception type escapes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierarchy.data import PreprocessConfig, index_dataset
from hierarchy.labels import TUMOR_CLASSES
from hierarchy.routing import Router, RouterError
from hierarchy.training import TrainConfig

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)


@pytest.fixture(scope="module")
def saved(synthetic_root: Path, tmp_path_factory) -> Path:
    frame = index_dataset(synthetic_root)
    router = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", mode="frozen", weights=None,
                    expert_init="scratch", preprocess=PreprocessConfig(image_size=32), val_fraction=0.25,
                    train=TrainConfig(epochs=1, batch_size=16, warmup_epochs=0))
    router.fit(frame[frame["split"] == "train"].reset_index(drop=True))
    return router.save(tmp_path_factory.mktemp("saved") / "router")


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths (key/index tuples) of every value in a parsed JSON document, containers included."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _leaves(item, (*path, index))
    return found


def _corrupt(data: bytes, how: str, draw: Any) -> bytes:
    if how == "flip":
        position = draw(st.integers(0, len(data) - 1))
        mask = draw(st.integers(1, 255))
        return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]
    if how == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=16))
    document = json.loads(data)
    paths = _leaves(document)
    if not paths:
        return data
    target = draw(st.sampled_from(paths))
    holder = document
    for key in target[:-1]:
        holder = holder[key]
    holder[target[-1]] = draw(JSON_VALUES)
    return json.dumps(document, indent=2).encode()


def _same_json(rel: str, original: bytes, changed: bytes) -> bool:
    """Whether ``router.json`` (the one file no recorded sha256 covers) still parses to the same document: only
    whitespace changed, which is no corruption."""
    if rel != "router.json":
        return False
    try:
        return json.loads(changed) == json.loads(original)
    except ValueError:
        return False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corruption_of_a_saved_router_is_refused_naming_the_file(saved, data):
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    rel = data.draw(st.sampled_from(files), label="file")
    hows = ["flip", "truncate", "append"] + (["edit json"] if rel.endswith(".json") else [])
    how = data.draw(st.sampled_from(hows), label="corruption")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(saved, Path(tmp) / "router"))
        original = (folder / rel).read_bytes()
        changed = _corrupt(original, how, data.draw)
        (folder / rel).write_bytes(changed)
        if changed == original or _same_json(rel, original, changed):  # e.g. only a trailing newline cut
            assert isinstance(Router.load(folder), Router)
            return
        with pytest.raises(RouterError) as error:
            Router.load(folder)
        assert rel in str(error.value), f"{how} of {rel}: {error.value}"


def test_the_saved_router_loads_untouched(saved):
    assert Router.load(saved).classes_ == TUMOR_CLASSES
