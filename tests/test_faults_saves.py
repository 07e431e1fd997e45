"""Nothing lost under faults: saves killed (SIGKILL, in a forked process) at every file-system call and at random
moments, or stopped by a full disk, leave every user file intact and a Router folder that the next run finishes
or replaces; a loader never sees two saves mixed (issue 24). Each test prints its tries and failures
(``pytest -s``)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from hierarchy.fileio import atomic_write_text
from hierarchy.labels import PLANES, TUMOR_CLASSES
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


def _child(work, kill_at: int = 0, count_to: Path | None = None) -> int:
    """Run ``work()`` in a forked process that SIGKILLs itself at its ``kill_at``-th file-system call (mkdir,
    replace, rename, fsync, unlink, rmdir; never when 0); returns the child's pid. Without a kill the child
    exits with its number of calls (at most 255), and writes it to ``count_to`` when given."""
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
        if count_to is not None:
            count_to.write_text(str(calls[0]))
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
            return simulate_predictions(len(frame), classes=TUMOR_CLASSES, planes=PLANES, routes=routes)

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


# -- reports (``hierarchy report`` and the experiment's build_report) ---------------------------------------
def _report_args(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["report", "--predictions", str(csv), "--out", str(out), "--n-bootstrap", "5", *extra]


def _report_child(csv: Path, out: Path, kill_at: int = 0, count_to: Path | None = None) -> int:
    from hierarchy.cli import main
    return _wait(_child(lambda: main(_report_args(csv, out, "--overwrite")) == 0 or os._exit(253), kill_at, count_to))


@pytest.fixture
def report_case(tmp_path):
    """Two prediction tables (the second writes more files) and a function making a report folder that holds
    the first table's report and a user's files, inside and beside the report's subfolders."""
    from hierarchy.cli import main
    from hierarchy.metrics import simulate_predictions
    tables = {}
    for name, routes in (("old", ("flat",)), ("new", ("flat", "hierarchical"))):
        tables[name] = tmp_path / f"{name}.csv"
        simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                             routes=routes, seed=4).to_csv(tables[name], index=False)

    def make(name: str) -> Path:
        out = tmp_path / name / "report"
        assert main(_report_args(tables["old"], out)) == 0
        (out / "notes.txt").write_text("mine")
        (out / "figures" / "my_figure.png").write_bytes(b"mine")
        return out
    return tables, make


def _user_files_intact(out: Path) -> None:
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "figures" / "my_figure.png").read_bytes() == b"mine"


def _whole_report(out: Path) -> str:
    """Which report the folder holds, once the next run's first step has finished or discarded a killed one:
    every file its manifest lists with its sha256, and no other file but the user's."""
    from hierarchy.fileio import sha256_file, tidy_folder
    tidy_folder(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and {n: sha256_file(out / n) for n in manifest["files"]} == manifest["sha256"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {*manifest["files"], "manifest.json", "notes.txt", "figures/my_figure.png"}
    return "new" if "tables/comparisons.csv" in manifest["files"] else "old"


def _report_killed_at(report_case, kill_at: int, name: str) -> str:
    """Kill a report over the old one at its ``kill_at``-th file-system call; check and return what is left."""
    tables, make = report_case
    out = make(name)
    assert _report_child(tables["new"], out, kill_at) == -signal.SIGKILL
    _user_files_intact(out)
    found = _whole_report(out)
    from hierarchy.cli import main
    assert main(_report_args(tables["old"], out)) == 2  # a report is there: --overwrite is needed ...
    assert main(_report_args(tables["new"], out, "--overwrite")) == 0  # ... and the next run succeeds
    assert _whole_report(out) == "new"
    _user_files_intact(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["report"], "hidden leftovers beside the report"
    assert not [p for p in out.rglob(".*")], "hidden leftovers inside the report"
    return found


def _report_steps(report_case) -> int:
    tables, make = report_case
    out = make("count")
    _report_child(tables["new"], out, 0, count_to=out.parent / "calls")
    steps = int((out.parent / "calls").read_text())
    assert steps > 20
    return steps


@pytest.mark.slow
def test_a_report_killed_while_written_or_moved_in_loses_nothing(report_case, capsys):
    """Two seeded points: one while the files are written (the old report stays), one while they move in
    (the next run finishes the move)."""
    steps = _report_steps(report_case)
    rng = random.Random(24)
    points = [rng.randint(1, steps // 2), rng.randint(steps - 6, steps - 1)]
    outcomes = [_report_killed_at(report_case, kill_at, f"kill{kill_at}") for kill_at in points]
    assert outcomes == ["old", "new"]
    with capsys.disabled():
        print(f"\nreport killed at calls {points} of {steps}: 2 tries, 0 failures, outcomes {outcomes}")


@pytest.mark.slow
def test_reports_killed_at_random_points_lose_nothing(report_case, capsys):
    steps = _report_steps(report_case)
    rng = random.Random(0)
    points = sorted(rng.sample(range(1, steps + 1), 12) + rng.sample(range(steps - 12, steps + 1), 4))
    outcomes = {}
    for kill_at in dict.fromkeys(points):
        outcomes[kill_at] = _report_killed_at(report_case, kill_at, f"kill{kill_at}")
    assert set(outcomes.values()) == {"old", "new"}
    with capsys.disabled():
        print(f"\nreports killed at {len(outcomes)} seeded points of {steps} file-system calls: "
              f"{len(outcomes)} tries, 0 failures, outcomes {sorted(set(outcomes.values()))}")


@pytest.mark.slow
def test_a_report_on_a_full_disk_names_the_file_and_keeps_the_old_report(report_case, monkeypatch, capsys):
    """A figure's, then the manifest's write fail with ENOSPC in fileio's low-level write (its fsync): one
    line naming the report's file, exit 2, the old report and the user's files as they were, and the next
    run succeeds."""
    import hierarchy.fileio
    from hierarchy.cli import main
    tables, make = report_case
    out = make("full")
    real_fsync = os.fsync
    disk = {"fail_on": None, "writes": 0}

    def fsync(fd):
        disk["writes"] += 1
        written = Path(os.readlink(f"/proc/self/fd/{fd}"))  # the temporary file .<name>.<pid>.<id>.tmp
        if written.name.startswith(f".{disk['fail_on']}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(hierarchy.fileio.os, "fsync", fsync)
    for failed in (out / "figures" / "roc.png", out / "manifest.json"):
        disk["fail_on"] = failed.name
        assert main(_report_args(tables["new"], out, "--overwrite")) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"cannot write {failed}: No space left" in err, err
        assert _whole_report(out) == "old"
        _user_files_intact(out)
        assert sorted(p.name for p in out.parent.iterdir()) == ["report"]
    monkeypatch.setattr(hierarchy.fileio.os, "fsync", real_fsync)
    assert main(_report_args(tables["new"], out, "--overwrite")) == 0
    assert _whole_report(out) == "new"
    with capsys.disabled():
        print(f"\nreport on a full disk at a figure and at the manifest ({disk['writes']} writes): 2 tries, 0 failures")
