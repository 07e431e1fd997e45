"""One helper per job: the tumour false-negative rate and the canonical-JSON hash each have one home that
every caller uses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hierarchy.experiment.ablation import detection_by_route
from hierarchy.metrics.false_negatives import detection_rates, tumour_detection
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
