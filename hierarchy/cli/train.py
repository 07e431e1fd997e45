"""``hierarchy train``: fit a Router (plane classifier, per-plane experts, flat baseline) and save it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from hierarchy.data import PreprocessConfig
from hierarchy.fileio import read_json
from hierarchy.training import TrainConfig

logger = logging.getLogger(__name__)

# Router.fit settings a --config file may hold, besides "preprocess" and "train" (TrainConfig) sections.
_FIT_KEYS = ("plane_backbone", "expert_backbone", "flat_backbone", "weights", "expert_init", "mode", "seed",
             "val_fraction")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a Router on a dataset's training split",
                                   description=__doc__)
    parser.add_argument("--data", required=True, help="dataset root (its test split is never used)")
    parser.add_argument("--out", required=True, help="run folder: the saved Router and training logs")
    parser.add_argument("--config", help="JSON file with Router.fit settings and 'preprocess'/'train' sections")
    parser.add_argument("--mode", choices=("finetune", "frozen"))
    parser.add_argument("--plane-backbone")
    parser.add_argument("--expert-backbone")
    parser.add_argument("--flat-backbone", help="'none' trains no flat model (no flat/ensemble routes)")
    parser.add_argument("--weights", help="'imagenet' (offline), 'none', or a weights path")
    parser.add_argument("--expert-init", choices=("imagenet", "flat", "scratch"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--val-fraction", type=float, help="share of training images held out (default 0.15)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.set_defaults(func=run)


def fit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Router.fit keyword arguments from the --config file, overridden by command-line flags."""
    settings: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        settings = read_json(path, what="--config")
        unknown = sorted(set(settings) - {*_FIT_KEYS, "preprocess", "train"})
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted({*_FIT_KEYS, 'preprocess', 'train'})}")
    for key in _FIT_KEYS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for key in ("flat_backbone", "weights"):
        if isinstance(settings.get(key), str) and settings[key].lower() == "none":
            settings[key] = None
    settings["preprocess"] = PreprocessConfig.from_dict(settings.get("preprocess", {}))
    settings["train_config"] = TrainConfig.from_dict({"seed": settings.get("seed", 0), **settings.pop("train", {})})
    return settings


def run(args: argparse.Namespace) -> int:
    from hierarchy.routing import Router

    out = Path(args.out)
    if (out / "router.json").exists():
        raise ValueError(f"--out {out} already holds a trained Router; choose another folder")
    settings = fit_settings(args)
    router = Router.fit(args.data, out_dir=out, resume=args.resume, **settings)
    router.save(out, overwrite=args.resume)
    logger.info("saved %r to %s", router, out)
    print(out)
    return 0
