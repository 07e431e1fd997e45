"""What an experiment's ``--out`` folder may hold, and whether a re-run may resume the run in it.

The experiment owns the entries of ``OWNED`` in its output folder, and records that it does in
``experiment_outputs.json`` before it writes any of them: a folder holding one of them that it did not write
(a user's ``summary.json``, an earlier ``hierarchy report``) is refused, naming them, before anything is written.

A re-run resumes the finished stages only when its identity (``config.json``) matches the earlier run's: every
setting, the code's version, and the content of every input (per dataset root and external set, the sha256
of its index, which holds every file's sha256). Any difference is refused with what changed, or, with
``restart``, the earlier run's work is discarded and everything runs again. The recorded settings are read as
this code reads a saved configuration: a setting added since the run takes its default (which, by the
library's rule for new settings, keeps the earlier behaviour), as a saved Router's ``router.json`` loads.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

import hierarchy
from hierarchy.experiment.profiles import ExperimentConfig
from hierarchy.fileio import read_json, write_json
from hierarchy.provenance import data_fingerprint

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
OUTPUTS_FILE = "experiment_outputs.json"
# every entry the experiment writes in its output folder (the report's own files included)
OWNED = (CONFIG_FILE, "work", "predictions", "audit", "explanations", "figures", "tables", "gallery", "run_record.json",
         "summary.json", "report.md", "metrics.json", "comparisons.json", "manifest.json", "supplement.tex")
# what --restart discards: the finished stages and everything computed from them
_WORK = ("work", "predictions")


def claim_out_dir(out: Path) -> None:
    """Record that the experiment owns ``OWNED`` in ``out``; refuse (``FileExistsError`` naming them) when
    ``out`` already holds some of them that no earlier run of the experiment wrote."""
    record = out / OUTPUTS_FILE
    if record.is_file() or _legacy_run(out):
        return
    foreign = sorted(name for name in OWNED if (out / name).exists() or (out / name).is_symlink())
    if foreign:
        raise FileExistsError(f"{out} already holds {', '.join(foreign)}, which this experiment did not write (no "
                              f"{OUTPUTS_FILE}) and would replace; move them away or choose another --out")
    write_json(record, {"written_by": "experiments/compare_flat_vs_hierarchical.py", "entries": list(OWNED)})


def _legacy_run(out: Path) -> bool:
    """An output folder of a run from before ``OUTPUTS_FILE`` existed: its ``config.json`` is the experiment's."""
    try:
        config = read_json(out / CONFIG_FILE)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "experiment" in config


def input_identity(frame: pd.DataFrame) -> dict[str, Any]:
    """Per source of a dataset index: its root's name, image count and content hash (every file's sha256)."""
    sources = frame["source"] if "source" in frame.columns else pd.Series("data", index=frame.index)
    return {str(name): {"n_images": int(len(rows)), "sha256": data_fingerprint(rows)}
            for name, rows in frame.groupby(sources, sort=True)}


def resume_identity(config: dict[str, Any], data: pd.DataFrame | None,
                    external: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """What a re-run must share with the earlier run to reuse its stages (JSON-ready)."""
    identity = {"experiment": config, "code_version": hierarchy.__version__,
                "data": None if data is None else input_identity(data),
                "external": {name: input_identity(frame) for name, frame in sorted(external.items())}}
    return json.loads(json.dumps(identity, default=str))


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in old:
                found.append(f"{where} added")
            elif key not in new:
                found.append(f"{where} removed")
            else:
                found += _differences(old[key], new[key], where)
        return found
    return [] if old == new else [f"{path or 'the record'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_read_now(settings: Any) -> Any:
    """Recorded experiment settings as this code reads them (added settings at their defaults), JSON-ready;
    settings it cannot read (a removed or mistyped one) stay as recorded, so they show as changed."""
    try:
        return json.loads(json.dumps(ExperimentConfig.from_dict(settings).to_dict(), default=str))
    except (TypeError, ValueError):
        return settings


def check_resume(out: Path, identity: dict[str, Any], *, restart: bool = False) -> None:
    """Refuse to resume the run in ``out`` when ``identity`` differs from the one it recorded (naming what
    changed); with ``restart``, discard that run's work instead. Records ``identity`` in ``config.json``."""
    path = out / CONFIG_FILE
    if path.exists():
        recorded = read_json(path, what="experiment record")
        if isinstance(recorded, dict) and "experiment" in recorded:
            recorded = {**recorded, "experiment": _as_read_now(recorded["experiment"])}
        changed = _differences(recorded, identity)
        if changed and not restart:
            shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise ValueError(f"{path} records another run ({shown}); resume with the same settings, code and "
                             "data, pass --restart to discard its work and run again, or choose a new --out")
        if changed or restart:
            logger.warning("--restart: discarding the earlier run's work in %s (%s)", out,
                           "; ".join(changed) or "same settings and data")
            for name in _WORK:
                shutil.rmtree(out / name, ignore_errors=True)
    write_json(path, identity)
