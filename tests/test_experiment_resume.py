"""Whether a re-run may resume the run in its --out folder: the recorded settings are read as this code reads
them (a setting added since takes its default), and any real difference is refused, naming it."""

from __future__ import annotations

import json

import pytest

from hierarchy.experiment import resolve_config
from hierarchy.experiment.resume import CONFIG_FILE, check_resume
from hierarchy.fileio import read_json, write_json


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
