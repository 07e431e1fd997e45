"""Nothing lost under faults: saves killed (SIGKILL, in a forked process) at every file-system call and at random
moments, or stopped by a full disk, leave every user file intact and a Router folder that the next run finishes
or replaces; a loader never sees two saves mixed (issue 24). Each test prints its tries and failures
(``pytest -s``)."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from hierarchy.fileio import atomic_write_text
from hierarchy.routing.persistence import (
    FORMAT_VERSION,
    ROUTER_FILE,
    locked_for_reading,
    read_manifest,
    save_folder,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked processes (POSIX)")
_CALLS = ("mkdir", "replace", "rename", "fsync", "unlink", "rmdir")


def _writer(generation: str, files: int = 2):
    """A Router-like save: three component folders of ``files`` files, every file holding ``generation``."""
    def write(staging: Path) -> dict:
        for part in ("plane", "p", "q"):
            (staging / part).mkdir()
            for i in range(files):
                (staging / part / f"f{i}.txt").write_text(generation * 1000)
        return {"format_version": FORMAT_VERSION, "config": {}, "classes": ["a", "b"], "planes": ["p", "q"],
                "components": {"plane": "plane", "p": "p", "q": "q"}, "temperatures": {},
                "record": {"label": generation}, "ensemble_weight": None, "ood": None}
    return write


def _child(work, kill_at: int = 0) -> int:
    """Run ``work()`` in a forked process that SIGKILLs itself at its ``kill_at``-th file-system call (mkdir,
    replace, rename, fsync, unlink, rmdir; never when 0); returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: never returns into pytest
        calls = [0]
        for name in _CALLS:
            original = getattr(os, name)

            def patched(*args, _original=original, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _original(*args, **kwargs)
            setattr(os, name, patched)
        work()
        os._exit(min(calls[0], 255) if kill_at == 0 else 0)
    except BaseException:
        os._exit(254)


def _wait(pid: int) -> int:
    """The child's exit status, or minus the signal that killed it."""
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _save_in_child(directory: Path, generation: str, kill_at: int = 0) -> int:
    return _wait(_child(lambda: save_folder(directory, _writer(generation), overwrite=True), kill_at))


def _user_folder(root: Path) -> Path:
    directory = root / "router"
    (directory / "training").mkdir(parents=True)
    (directory / "training" / "log.csv").write_text("epoch,loss\n1,0.5\n")
    (directory / "notes.txt").write_text("mine")
    return directory


def _generation(directory: Path) -> str:
    """The one generation the folder holds, read under the load lock (finishing a killed save first); fails
    on a mix."""
    with locked_for_reading(directory):
        manifest = read_manifest(directory)
        contents = {(directory / rel).read_text()[0] for rel in manifest["files"]}
    label = manifest["record"]["label"]
    assert contents == {label}, f"a mix of saves: {contents} under {label}"
    return label


def _check_after_fault(directory: Path) -> str:
    """Every user file intact, the folder loadable as one save, the next save succeeding, nothing left over."""
    assert (directory / "training" / "log.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert (directory / "notes.txt").read_text() == "mine"
    found = _generation(directory) if (directory / ROUTER_FILE).exists() or any(
        p.name == ".swap-journal.json" for p in directory.iterdir()) else "none"
    return found


def test_a_save_killed_at_every_point_loses_nothing(tmp_path):
    counted = _user_folder(tmp_path / "count")
    save_folder(counted, _writer("1"))
    steps = _save_in_child(counted, "2")
    assert 10 < steps < 254
    tries = failures = 0
    outcomes = set()
    for kill_at in range(1, steps + 1):
        root = tmp_path / f"kill{kill_at}"
        directory = _user_folder(root)
        save_folder(directory, _writer("1"))
        tries += 1
        try:
            assert _save_in_child(directory, "2", kill_at) == -signal.SIGKILL
            found = _check_after_fault(directory)  # the next load finishes or ignores the killed save
            assert found in ("1", "2")
            outcomes.add(found)
            save_folder(directory, _writer("3"), overwrite=True)  # the next save succeeds
            assert _check_after_fault(directory) == "3"
            assert sorted(p.name for p in root.iterdir()) == ["router"], "hidden leftovers beside the folder"
            assert not [p for p in directory.iterdir() if p.name.startswith(".")], "hidden leftovers inside"
        except AssertionError:
            failures += 1
            raise
    print(f"\nkill at each of the {steps} file-system calls of a save: {tries} tries, {failures} failures, "
          f"outcomes {sorted(outcomes)}")
    assert outcomes == {"1", "2"}


@pytest.mark.slow
def test_saves_killed_at_random_moments_lose_nothing(tmp_path):
    rng = random.Random(0)
    directory = _user_folder(tmp_path)
    save_folder(directory, _writer("0"))

    def save_forever() -> None:
        for n in range(10**6):
            save_folder(directory, _writer(str(n % 10), files=3), overwrite=True)

    tries, failures = 30, 0
    for _ in range(tries):
        pid = _child(save_forever)
        threading.Event().wait(rng.uniform(0.01, 0.3))  # a random moment of the saving loop, not a readiness wait
        os.kill(pid, signal.SIGKILL)
        assert _wait(pid) == -signal.SIGKILL
        _check_after_fault(directory)
    save_folder(directory, _writer("x"), overwrite=True)
    assert _generation(directory) == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]
    print(f"\nsaves killed at random moments: {tries} tries, {failures} failures")


def test_a_full_disk_at_every_write_loses_nothing(tmp_path, monkeypatch):
    """Every write of a save fails in turn with ENOSPC (as on a full disk)."""
    import builtins
    import io
    directory = _user_folder(tmp_path)
    save_folder(directory, _writer("1"))
    real_open, real_fsync = builtins.open, os.fsync
    count = {"n": 0, "fail_at": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] == count["fail_at"]:
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wxa"):
            failing()
        return real_open(file, mode, *args, **kwargs)

    def fsync(fd):
        failing()
        return real_fsync(fd)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    save_folder(directory, _writer("2"), overwrite=True)
    writes = count["n"]
    tries = failures = 0
    for fail_at in range(1, writes + 1):
        count.update(n=0, fail_at=fail_at)
        tries += 1
        with pytest.raises(OSError) as stop:
            save_folder(directory, _writer("3"), overwrite=True)
        assert stop.value.errno == errno.ENOSPC
        count["fail_at"] = 0
        assert _check_after_fault(directory) == "2"  # the failed save changed nothing
        assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]
    save_folder(directory, _writer("4"), overwrite=True)
    assert _generation(directory) == "4"
    print(f"\nfull disk at each of {writes} writes of a save: {tries} tries, {failures} failures")


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.slow
def test_a_really_full_disk_loses_nothing(tmp_path):
    """On a 512 KiB tmpfs (needs root and mount; skipped elsewhere) saves of growing size fill the disk; the save
    that fails leaves the previous one, and a smaller save fits again."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "512k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        directory = _user_folder(disk)
        save_folder(directory, _writer("1"))
        tries = failures = 0
        for size in range(1, 60):
            def write(staging: Path, size: int = size) -> dict:
                manifest = _writer("5")(staging)
                for i in range(size):
                    (staging / "plane" / f"w{i}.bin").write_text("5" * 16384)
                return manifest
            tries += 1
            try:
                save_folder(directory, write, overwrite=True)
            except OSError as err:
                assert err.errno == errno.ENOSPC and str(disk) in str(err), err
                assert _check_after_fault(directory) in ("1", "5")
                assert sorted(p.name for p in disk.iterdir()) == ["router"]
                break
        else:
            pytest.fail("the disk never filled")
        save_folder(directory, _writer("6"), overwrite=True)
        assert _generation(directory) == "6"
        print(f"\nreal full disk (512 KiB tmpfs): filled at save {tries}, {failures} failures")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_loader_never_sees_two_saves_mixed(tmp_path):
    directory = tmp_path / "router"
    save_folder(directory, _writer("0"))
    stop = threading.Event()
    errors: list[BaseException] = []

    def saver() -> None:
        try:
            n = 0
            while not stop.is_set():
                n += 1
                save_folder(directory, _writer(str(n % 10)), overwrite=True)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=saver)
    thread.start()
    tries = 0
    try:
        seen = set()
        while tries < 300 or len(seen) < 3:
            seen.add(_generation(directory))  # asserts one generation throughout
            tries += 1
            if tries > 5000:
                break
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(seen) >= 3, f"the saver made no progress: {seen}"
    print(f"\nloads against a repeated saver: {tries} tries, 0 mixes, {len(seen)} generations seen")


def test_a_loader_in_another_process_never_sees_two_saves_mixed(tmp_path):
    directory = tmp_path / "router"
    save_folder(directory, _writer("x"))

    def save_forever() -> None:
        for n in range(10**6):
            save_folder(directory, _writer(str(n % 10)), overwrite=True)

    pid = _child(save_forever)
    tries, seen = 0, set()
    try:
        while len(seen) < 4 and tries < 20000:
            seen.add(_generation(directory))  # asserts one generation throughout
            tries += 1
    finally:
        os.kill(pid, signal.SIGKILL)
        _wait(pid)
    assert len(seen) >= 4, seen
    print(f"\nloads against a saver process: {tries} tries, 0 mixes, {len(seen)} generations seen")


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "predictions.csv"
    path.write_text("old,complete\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=str(path)):
        atomic_write_text(path, "new" * 10000)
    assert path.read_text() == "old,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def test_evaluate_overwrite_on_a_full_disk_keeps_the_old_predictions(synthetic_root, tmp_path, monkeypatch, capsys):
    import hierarchy.routing
    from hierarchy.cli import main
    from hierarchy.metrics import simulate_predictions

    class FakeRouter:
        parent = "plane"

        def available_routes(self, frame):
            return ("flat",)

        def predict_routes(self, frame, routes, progress=False):
            return simulate_predictions(len(frame), routes=routes)

    monkeypatch.setattr(hierarchy.routing.Router, "load", classmethod(lambda cls, *a, **k: FakeRouter()))
    out = tmp_path / "predictions.csv"
    out.write_text("id,route\nold,flat\n")
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(synthetic_root), "--out", str(out),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out) in err and "No space left" in err, err
    assert out.read_text() == "id,route\nold,flat\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(synthetic_root), "--out", str(out),
                 "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) > 2


def test_saved_bundles_and_routers_follow_the_umask(tmp_path):
    import torch

    from hierarchy.models.bundle import save_bundle

    config = {"architecture": "linear", "num_classes": 2, "in_chans": 1, "weights_origin": "random",
              "classes": ["a", "b"], "preprocess": {}}
    old = os.umask(0o022)
    try:
        def write(staging: Path) -> dict:
            save_bundle(torch.nn.Linear(2, 2), staging / "plane", config)
            return {"label": "x"}
        save_folder(tmp_path / "router", write)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777
             for p in [tmp_path / "router", *(tmp_path / "router").rglob("*")]}
    assert modes == {"router": 0o755, "router/router.json": 0o644, "router/plane": 0o755,
                     "router/plane/config.json": 0o644, "router/plane/model.safetensors": 0o644}
