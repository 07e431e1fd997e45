"""Saving and loading a Router: a journaled swap, every file hashed and verified, refusals that name the file;
an interrupted save leaves the old Router or the new one; predict skips undecodable images when asked."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hierarchy.cli import main
from hierarchy.data import ImageReadError, PreprocessConfig
from hierarchy.routing import Router, RouterError
from hierarchy.routing.persistence import ROUTER_FILE, content_checksum
from hierarchy.training import TrainConfig

TINY = {"plane": "simple_cnn", "experts": "simple_cnn", "flat": "simple_cnn", "mode": "frozen", "weights": None,
        "expert_init": "scratch", "preprocess": PreprocessConfig(image_size=32), "val_fraction": 0.25,
        "train": TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)}


@pytest.fixture(scope="module")
def old_router(frames) -> Router:
    return Router(seed=0, **TINY).fit(frames[0])


@pytest.fixture(scope="module")
def new_router(frames) -> Router:
    return Router(seed=1, **TINY).fit(frames[0])


@pytest.fixture(scope="module")
def saved(old_router, tmp_path_factory) -> Path:
    return old_router.save(tmp_path_factory.mktemp("saved") / "router")


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "router"))


def _probe(frames) -> pd.DataFrame:
    return frames[1].iloc[:6]


def _soft(router: Router, frames) -> np.ndarray:
    return router.predict_proba(_probe(frames), "soft")


def _rewrite(folder: Path, change: Callable[[dict], object], *, rechecksum: bool = True) -> None:
    """Edit router.json; with ``rechecksum`` its checksum is recomputed, so a later check must catch it."""
    manifest = json.loads((folder / ROUTER_FILE).read_text())
    manifest = change(manifest) or manifest
    if rechecksum and isinstance(manifest, dict):
        manifest["checksum"] = content_checksum(manifest)
    (folder / ROUTER_FILE).write_text(json.dumps(manifest))


def _rehash(folder: Path, rel: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        import hashlib
        manifest["files"][rel] = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    return change


# -- saving ----------------------------------------------------------------------------------------------
def test_router_json_records_every_file_a_generation_and_a_checksum(saved):
    manifest = json.loads((saved / ROUTER_FILE).read_text())
    on_disk = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [p for p in on_disk if p != ROUTER_FILE]
    assert {"plane/config.json", "plane/model.safetensors", "flat/config.json"} <= set(manifest["files"])
    assert len(manifest["generation"]) == 32 and manifest["checksum"] == content_checksum(manifest)


def test_overwrite_swaps_the_router_and_keeps_the_users_files(copy, new_router, frames):
    (copy / "training").mkdir()
    (copy / "training" / "log.csv").write_text("epoch,loss\n1,0.5\n")
    (copy / "notes.md").write_text("mine")
    old_generation = json.loads((copy / ROUTER_FILE).read_text())["generation"]
    with pytest.raises(FileExistsError, match="router.json"):
        new_router.save(copy)
    new_router.save(copy, overwrite=True)
    assert json.loads((copy / ROUTER_FILE).read_text())["generation"] != old_generation
    np.testing.assert_allclose(_soft(Router.load(copy), frames), _soft(new_router, frames))
    assert (copy / "training" / "log.csv").read_text().startswith("epoch") and (copy / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in copy.parent.iterdir()) == ["router"]  # no staged or retired folder left


def test_save_into_a_folder_with_other_files_refuses_to_replace_a_clashing_one(old_router, tmp_path):
    (tmp_path / "run" / "plane").mkdir(parents=True)
    (tmp_path / "run" / "plane" / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="plane"):
        old_router.save(tmp_path / "run")
    assert (tmp_path / "run" / "plane" / "mine.txt").read_text() == "mine"


def test_save_takes_relative_paths_and_the_current_folder(old_router, tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "run")
    old_router.save(".")  # the folder is never renamed, so saving into the working folder is safe
    monkeypatch.chdir(tmp_path)
    old_router.save("run/", overwrite=True)
    assert Router.load("run").classes_ == old_router.classes_ and Path("run/mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


class Interrupted(Exception):
    """Raised by a patched file operation, standing for a crash or a full disk."""


# Every operation that creates, writes or moves a file or folder during a save.
_WRITES = [(os, "replace"), (os, "rename"), (os, "mkdir"), (os, "fsync")]


def _interrupt_at(monkeypatch, *steps: int) -> list[str]:
    """Patch every write to count its calls and raise ``Interrupted`` at the calls numbered ``steps``."""
    calls: list[str] = []
    for module, name in _WRITES:
        original = getattr(module, name)

        def patched(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) in steps:
                raise Interrupted(f"{_name} (step {len(calls)})")
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, patched)
    return calls


@pytest.mark.slow
def test_an_interrupted_save_leaves_the_old_router_or_the_new_one(saved, new_router, old_router, frames,
                                                                  tmp_path, monkeypatch):
    old, new = _soft(old_router, frames), _soft(new_router, frames)
    assert not np.allclose(old, new)
    def old_folder(name: str) -> Path:
        folder = Path(shutil.copytree(saved, tmp_path / name / "router"))
        (folder / "training").mkdir()
        (folder / "training" / "log.csv").write_text("kept")  # a user's entry, carried over by every save
        return folder

    counted = old_folder("count")
    with monkeypatch.context() as patch:
        calls = _interrupt_at(patch)
        new_router.save(counted, overwrite=True)
    steps = len(calls)
    assert steps > 20 and calls[-2:] == ["replace"] * 2  # ... the last component moved in, then router.json
    for step in range(1, steps + 2):  # the last one is never interrupted
        folder = old_folder(f"step{step}")
        with monkeypatch.context() as patch:
            _interrupt_at(patch, step)
            try:
                new_router.save(folder, overwrite=True)
                interrupted = False
            except Interrupted:  # before the parts move; once they move, a failed move is retried
                interrupted = True
        got = _soft(Router.load(folder), frames)  # never an error, never a mix
        outcome = "new" if np.allclose(got, new) else "old" if np.allclose(got, old) else "mixed"
        assert outcome == ("old" if interrupted else "new"), f"step {step}: {outcome}"
        assert (folder / "training" / "log.csv").read_text() == "kept", f"step {step}"
        assert sorted(p.name for p in folder.parent.iterdir()) == ["router"], f"step {step}: leftovers"


def test_when_the_retry_fails_too_the_next_load_finishes_the_save(saved, new_router, frames, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(saved, tmp_path / "router"))
    (folder / "training").mkdir()
    (folder / "training" / "log.csv").write_text("kept")
    counted = Path(shutil.copytree(folder, tmp_path / "count" / "router"))
    with monkeypatch.context() as patch:
        calls = _interrupt_at(patch)
        new_router.save(counted, overwrite=True)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, len(calls), len(calls) + 1)  # router.json moving in, then the retry's first step
        with pytest.raises(RouterError, match="next save or load of this folder finishes it"):
            new_router.save(folder, overwrite=True)
    assert (folder / "training" / "log.csv").read_text() == "kept"  # a user's entry is never moved
    assert np.allclose(_soft(Router.load(folder), frames), _soft(new_router, frames))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["count", "router"]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


# -- loading: every refusal names the file ------------------------------------------------------------------
def _edit_bundle_mean(folder: Path) -> None:
    config = json.loads((folder / "plane" / "config.json").read_text())
    config["preprocess"]["mean"] = 0.9
    (folder / "plane" / "config.json").write_text(json.dumps(config))


def test_a_changed_preprocessing_config_is_refused(copy):
    _edit_bundle_mean(copy)
    with pytest.raises(RouterError, match=r"plane/config.json: does not match the sha256"):
        Router.load(copy)


def test_corrupt_weights_are_refused(copy):
    weights = next(copy.glob("experts/*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RouterError, match=f"{weights.parent.name}/model.safetensors: does not match"):
        Router.load(copy)


def test_a_missing_file_is_refused(copy):
    (copy / "flat" / "model.safetensors").unlink()
    with pytest.raises(RouterError, match=r"flat/model.safetensors: missing"):
        Router.load(copy)


def test_a_component_from_another_save_is_refused(copy, new_router, tmp_path):
    other = new_router.save(tmp_path / "other")
    expert = next(p.name for p in (copy / "experts").iterdir())
    shutil.rmtree(copy / "experts" / expert)
    shutil.copytree(other / "experts" / expert, copy / "experts" / expert)
    with pytest.raises(RouterError, match=rf"experts/{expert}/.*(another save|does not match)"):
        Router.load(copy)


def test_a_file_added_to_a_component_is_refused(copy):
    (copy / "plane" / "head.skops").write_bytes(b"planted")
    with pytest.raises(RouterError, match=r"plane/head.skops: not written by the save"):
        Router.load(copy)


def test_an_edited_router_json_is_refused(copy):
    _rewrite(copy, lambda m: m.update(ensemble_weight=0.99), rechecksum=False)
    with pytest.raises(RouterError, match=r"router.json: .*checksum"):
        Router.load(copy)


@pytest.mark.parametrize("path", ["../outside/plane", "/tmp/plane", "plane/../../outside", "", "C:\\plane"])
def test_a_component_path_that_leaves_the_folder_is_refused(copy, path):
    _rewrite(copy, lambda m: m["components"].update(plane=path))
    with pytest.raises(RouterError, match=r"router.json: component folder .*(leaves|not a relative path)"):
        Router.load(copy)


def test_a_symlink_leading_out_of_the_folder_is_refused(copy, tmp_path):
    outside = shutil.copytree(copy / "plane", tmp_path / "outside_plane")
    shutil.rmtree(copy / "plane")
    (copy / "plane").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RouterError, match=r"leads out of the model folder"):
        Router.load(copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: list(m), "expected a JSON object, found a JSON list"),
    (lambda m: m.update(format_version=2), "format version 2"),
    (lambda m: m["components"].update(bogus="plane"), r"unknown \['bogus'\]"),
    (lambda m: m["components"].pop("plane") and None, r"missing \['plane'\]"),
    (lambda m: m.update(classes="glioma"), "'classes' must be a list"),
    (lambda m: m.update(planes=["axial", "axial"]), "'planes' must be a list of at least two distinct"),
    (lambda m: m.update(ensemble_weight="0.5"), "'ensemble_weight' must be null or a number"),
    (lambda m: m.update(temperatures={"soft": -1.0}), "temperature 'soft'"),
    (lambda m: m.update(files=[]), "'files' must be a JSON object"),
    (lambda m: m["files"].update({"plane/config.json": "abc"}), "sha256 of 'plane/config.json' is malformed"),
    (lambda m: m.update(config={**m["config"], "mode": 3}), "config"),
    (lambda m: m.update(config={**m["config"], "unknown_setting": 1}), "unknown_setting"),
])
def test_a_malformed_router_json_is_refused_naming_it(copy, change, message):
    _rewrite(copy, change)
    with pytest.raises(RouterError, match=message) as error:
        Router.load(copy)
    assert "router.json" in str(error.value)


def test_an_unknown_component_kind_is_refused(copy):
    config = json.loads((copy / "plane" / "config.json").read_text())
    config["component"] = "pickled"
    (copy / "plane" / "config.json").write_text(json.dumps(config))
    _rewrite(copy, _rehash(copy, "plane/config.json"))
    with pytest.raises(RouterError, match=r"plane.*unknown component kind 'pickled'"):
        Router.load(copy)


def test_folders_left_by_killed_saves_are_removed_by_the_next_save(old_router, copy):
    for leftover in (".router.saving-0123", ".router.old-4567"):
        (copy.parent / leftover / "plane").mkdir(parents=True)
        (copy.parent / leftover / "plane" / "weights.bin").write_bytes(b"x" * 100)
    old_router.save(copy, overwrite=True)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["router"]


# -- predicting on bad images ----------------------------------------------------------------------------
@pytest.fixture
def mixed_images(frames, tmp_path) -> tuple[list[str], list[Path]]:
    good = [str(p) for p in _probe(frames)["path"][:3]]
    bad = [tmp_path / "not_an_image.jpg", tmp_path / "truncated.jpg"]
    bad[0].write_bytes(b"not a jpeg")
    bad[1].write_bytes(Path(good[0]).read_bytes()[:200])
    return good, bad


def test_predict_skips_bad_images_when_asked_and_lists_them(old_router, mixed_images, caplog):
    good, bad = mixed_images
    inputs = [good[0], bad[0], good[1], bad[1], good[2]]
    with caplog.at_level(logging.WARNING):
        table = old_router.predict_routes(inputs, ("hierarchical", "soft"), skip_bad=True)
    assert table["id"].tolist() == [Path(p).name for p in good] * 2
    assert [s["id"] for s in table.attrs["skipped"]] == [p.name for p in bad]
    assert all(p.name in s["error"] for p, s in zip(bad, table.attrs["skipped"], strict=True))
    assert "not_an_image.jpg" in caplog.text
    alone = old_router.predict_routes(good, ("hierarchical", "soft"))
    pd.testing.assert_frame_equal(table, alone, check_like=True, rtol=1e-4)  # batch makeup moves floats
    with pytest.raises(ImageReadError, match="not_an_image.jpg"):
        old_router.predict_routes(inputs, ("hierarchical",))


def test_cli_predict_skip_bad_lists_what_it_skipped(saved, mixed_images, capsys):
    good, bad = mixed_images
    assert main(["predict", "--model", str(saved), good[0], str(bad[0]), "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 2 and "skipped 1 image" in err and "not_an_image.jpg" in err
    assert main(["predict", "--model", str(saved), good[0], str(bad[0])]) == 2
    assert "not_an_image.jpg" in capsys.readouterr().err
    assert main(["predict", "--model", str(saved), *map(str, bad), "--skip-bad"]) == 2
    assert "none of the 2 images" in capsys.readouterr().err
