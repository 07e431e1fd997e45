"""Whether a re-run may resume the run in its --out folder: the recorded settings are read as this code reads
them (a setting added since takes its default), and any real difference is refused, naming it; the stages it
reuses keep the commit that computed them, which the report names."""

from __future__ import annotations

import json

import pytest

from hierarchy.experiment import resolve_config
from hierarchy.experiment.resume import CONFIG_FILE, check_resume
from hierarchy.experiment.stages import StageLog
from hierarchy.fileio import read_json, write_json
from hierarchy.reports.build import resumed_stages, uncommitted_note


def _identity(**overrides) -> dict:
    config = resolve_config("demo", overrides=overrides)
    return {"experiment": json.loads(json.dumps(config.to_dict(), default=str)), "code_version": "1.0",
            "data": None, "external": {}}


def test_a_setting_added_since_the_run_takes_its_default(tmp_path):
    recorded = _identity()
    del recorded["experiment"]["router"]["train"]["removal_fills"]  # a run made before the setting existed
    write_json(tmp_path / CONFIG_FILE, recorded)
    (tmp_path / "work").mkdir()
    check_resume(tmp_path, _identity())
    assert (tmp_path / "work").exists()  # resumed, nothing discarded
    assert read_json(tmp_path / CONFIG_FILE) == _identity()


@pytest.mark.parametrize(("edit", "named"), [
    (lambda e: e["router"]["train"].update(epochs=99), "router.train.epochs: 99 -> "),
    (lambda e: e["router"]["train"].update(no_such_setting=1), "router.train.no_such_setting removed"),
    (lambda e: e.update(n_bootstrap="many"), "n_bootstrap"),
])
def test_a_changed_or_unreadable_setting_is_refused_by_name(tmp_path, edit, named):
    recorded = _identity()
    edit(recorded["experiment"])
    write_json(tmp_path / CONFIG_FILE, recorded)
    (tmp_path / "work").mkdir()
    with pytest.raises(ValueError, match="records another run") as err:
        check_resume(tmp_path, _identity())
    assert named in str(err.value)
    assert (tmp_path / "work").exists()
    check_resume(tmp_path, _identity(), restart=True)
    assert not (tmp_path / "work").exists()


def test_each_stage_records_the_commit_that_ran_it(tmp_path):
    path = tmp_path / "stages.json"
    write_json(path, {"audit": {"seconds": 1.0}})  # a stage of a run made before commits were recorded
    first = StageLog(path, commit="abc")
    assert first.run("train", lambda: 1, lambda: 2) == 1
    resumed = StageLog(path, commit="def")
    assert resumed.run("train", lambda: 1, lambda: 2) == 2  # reused, not run again
    resumed.run("report", lambda: None, lambda: None)
    assert resumed.commits() == {"audit": None, "train": "abc", "report": "def"}
    assert resumed_stages({"git_commit": "def", "stage_commits": resumed.commits()}) == [
        "- stages reused from an unrecorded commit: 1 (audit)", "- stages reused from `abc`: 1 (train)"]
    assert uncommitted_note({"git_commit": "def", "stage_commits": resumed.commits()}) == ""
    note = uncommitted_note({"git_commit": "def", "stage_commits": {"train": "abc+dirty"}})
    assert "uncommitted" in note and "`abc`" in note
