"""One helper per job: the tumour false-negative rate and the canonical-JSON hash each have one home that
every caller uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hierarchy.experiment.ablation import detection_by_route
from hierarchy.fileio import json_text
from hierarchy.metrics.false_negatives import detection_rates, missed_mask, tumour_detection
from hierarchy.provenance import json_sha256
from hierarchy.routing.persistence import content_checksum
from hierarchy.training import feature_cache_key

PACKAGE = Path(__file__).resolve().parents[1] / "hierarchy"


def test_detection_rates_count_normal_recall_and_missed_tumours():
    truth = ["no_tumor", "no_tumor", "glioma", "glioma", "pituitary", "meningioma"]
    pred = ["no_tumor", "glioma", "no_tumor", "glioma", "pituitary", "no_tumor"]
    rates = detection_rates(truth, pred)
    assert rates["no_tumor_recall"]["value"] == pytest.approx(0.5)
    assert (rates["tumor_fnr"]["successes"], rates["tumor_fnr"]["n"]) == (2, 4)
    table = pd.DataFrame({"route": "flat", "true_label": truth, "pred_label": pred})
    assert detection_by_route(table) == {"flat": {"no_tumor_recall": 0.5, "tumor_fnr": 0.5}}
    assert tumour_detection(table)["false_negative_rate"]["value"] == rates["tumor_fnr"]["value"]
    assert detection_rates(["glioma"], ["glioma"])["no_tumor_recall"] is None


def test_canonical_json_hash_has_one_home():
    manifest = {"b": [1, 2], "a": {"y": 1.5, "x": None}, "checksum": "ignored"}
    assert content_checksum(manifest) == json_sha256({"a": {"x": None, "y": 1.5}, "b": [1, 2]})
    assert feature_cache_key(a=1, b="x") == json_sha256({"b": "x", "a": 1})
    with pytest.raises(ValueError):
        json_sha256({"a": float("nan")})
    compact = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
               if 'separators=(",", ":")' in p.read_text()]
    assert compact == ["provenance.py"]


ROOT = PACKAGE.parent
# (what, pattern, the only files allowed to match it): each job's one home
SINGLE_HOMES = (
    ("logging set-up", re.compile(r"basicConfig\("), {"hierarchy/logs.py"}),
    ("progress bars", re.compile(r"\btqdm\("), {"hierarchy/progress.py"}),
    ("canonical-JSON hashing", re.compile(r"sha256\([^\n]*json\.dumps|json\.dumps\([^\n]*(separators|sort_keys=True)"),
     {"hierarchy/provenance.py"}),
    ("JSON file formatting", re.compile(r"json\.dumps\([^\n]*indent"), {"hierarchy/fileio.py"}),
    ("the missed-tumour definition",
     re.compile(r"(!=|==) (NO_TUMOR|\"no_tumor\")[^\n]*(!=|==) (NO_TUMOR|\"no_tumor\")"),
     {"hierarchy/metrics/false_negatives.py"}),
)


@pytest.mark.parametrize(("what", "pattern", "homes"), SINGLE_HOMES, ids=[s[0] for s in SINGLE_HOMES])
def test_each_job_has_one_home(what, pattern, homes):
    found = {p.relative_to(ROOT).as_posix() for folder in ("hierarchy", "experiments", "examples")
             for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))}
    assert found <= homes, f"{what} outside its home: {sorted(found - homes)}"


def test_missed_tumour_definition_and_json_text():
    tumour, missed = missed_mask(["glioma", "no_tumor", "pituitary"], ["no_tumor", "no_tumor", "glioma"])
    assert tumour.tolist() == [True, False, True] and missed.tolist() == [True, False, False]
    assert json_text({"b": float("nan"), "a": 1}, sort_keys=True) == '{\n  "a": 1,\n  "b": null\n}\n'


def test_json_text_keeps_flat_lists_on_one_line_and_round_trips():
    curve = np.linspace(0.0, 1.0, 500)
    data = {"roc": {"fpr": curve, "tpr": curve[::-1]}, "rows": [{"a": 1}, [2, None]], "empty": {}, "p": Path("x")}
    text = json_text(data)
    assert len(text.splitlines()) == 14  # each 500-point array is one line
    assert json.loads(text) == {"roc": {"fpr": curve.tolist(), "tpr": curve[::-1].tolist()},
                                "rows": [{"a": 1}, [2, None]], "empty": {}, "p": "x"}
    assert json.loads(json_text(data, sort_keys=True)) == json.loads(text)
