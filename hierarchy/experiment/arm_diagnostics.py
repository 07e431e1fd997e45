"""What the diagnostics of trained disease-ablation arms share (``experiments/diagnose_removal_fill.py``,
``experiments/diagnose_paste_in.py``): their command line, each arm's Router rebuilt from its trained
checkpoints, and the run record written beside their results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.experiment.ablation import arm_config, study_frames
from hierarchy.experiment.disease_study import ARMS
from hierarchy.experiment.recipe_arms import profile_router
from hierarchy.provenance import command_line, run_record
from hierarchy.routing import Router, RouterConfig
from hierarchy.training import resolve_runtime


def arm_diagnostic_parser(description: str | None, *, data_help: str, n_default: int,
                          n_help: str) -> argparse.ArgumentParser:
    """The arguments every arm diagnostic takes: ``--data``, ``--work``, ``--arm`` (repeatable), ``--profile``,
    ``--set``, ``--n`` and ``--out``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--work", required=True, help="the disease ablation's work folder")
    parser.add_argument("--arm", action="append", required=True, choices=list(ARMS), help="repeatable")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="the study's --set (router.train.epochs=4 for the cpu study)")
    parser.add_argument("--n", type=int, default=n_default, help=n_help)
    parser.add_argument("--out", help="JSON file for the results")
    return parser


def study_rows(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's training and validation rows, divided as the ablation divided them."""
    train, val, _ = study_frames(args.data, profile_router(args.profile, args.overrides).val_fraction)
    return train, val


def trained_arms(parser: argparse.ArgumentParser, args: argparse.Namespace, train: pd.DataFrame,
                 val: pd.DataFrame) -> Iterator[tuple[str, RouterConfig, Router]]:
    """Each ``--arm``'s settings and Router, fitted from its trained checkpoints in ``--work``: the trunk resumes
    from its last checkpoint, so nothing is trained again. An arm the ablation has not run is refused."""
    base = profile_router(args.profile, args.overrides)
    for arm in args.arm:
        checkpoint = Path(args.work) / arm / "training"
        if not checkpoint.is_dir():
            parser.error(f"{checkpoint} is missing: run experiments/ablation_disease.py --arms {arm} first")
        config = arm_config(base, ARMS[arm])
        yield arm, config, Router.from_config(config).fit(train, val, out_dir=Path(args.work) / arm, resume=True)


def diagnostic_record(script: str, args: argparse.Namespace, configs: dict[str, RouterConfig],
                      frames: dict[str, pd.DataFrame], argv: Sequence[str] | None) -> dict[str, Any]:
    """The run record of a diagnostic: its arms' settings, the data's hashes, the runtime and the command."""
    record = run_record({"profile": args.profile, "arms": {arm: c.to_dict() for arm, c in configs.items()}},
                        runtime=resolve_runtime().describe(), seed=0, frames=frames)
    record["command"] = command_line(["python", script, *(sys.argv[1:] if argv is None else argv)])
    return record
