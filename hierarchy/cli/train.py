"""``hierarchy train``: fit a Router (parent-group classifier, per-group experts, flat baseline) and save it.

Settings are ``RouterConfig``'s: a ``--config`` JSON file in its ``to_dict()`` layout, then ``--set KEY=VALUE``
with the dotted keys the ablation arms use (``train.epochs=3``, ``preprocess.augment=robust``,
``preprocess.augment.jpeg_p=0.2``: a field of a preset modifies that preset), then the flags generated from
its top-level settings (``--mode``, ``--seed``...). Everything is merged by ``hierarchy.settings.merge_settings``,
as the experiment's ``--set router.KEY=VALUE`` is.
"""

from __future__ import annotations

import argparse
import logging
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from hierarchy.fileio import read_json
from hierarchy.routing.config import EXPERT_INITS, MODES, RouterConfig
from hierarchy.settings import merge_settings, parse_override

logger = logging.getLogger(__name__)

_NONE = "none"
_CHOICES = {"mode": MODES, "expert_init": EXPERT_INITS}


def _scalar_type(annotation: Any) -> tuple[type, bool] | None:
    """(base type, accepts None) of a field annotation, or None when it is not a plain scalar."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = len(args) < len(typing.get_args(annotation))
    base = args[0] if optional and len(args) == 1 else annotation
    return (base, optional) if base in (str, int, float, bool) else None


def _parser_for(base: type, optional: bool):
    def parse(text: str) -> Any:
        if optional and text.lower() == _NONE:
            return None
        if base is bool:
            if text.lower() not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
            return text.lower() == "true"
        return base(text)
    return parse


def _top_level_settings() -> list[tuple[str, str, type, bool]]:
    """(flag, field, type, optional) for every scalar top-level field of ``RouterConfig``."""
    hints = typing.get_type_hints(RouterConfig)
    return [(f"--{f.name.replace('_', '-')}", f.name, *scalar) for f in fields(RouterConfig)
            if (scalar := _scalar_type(hints[f.name])) is not None]


SETTINGS = _top_level_settings()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a Router on a dataset's training split",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root (its test split is never used)")
    parser.add_argument("--out", required=True, help="run folder: the saved Router and training logs")
    parser.add_argument("--config", help="JSON file of RouterConfig settings (RouterConfig.to_dict() layout)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a RouterConfig setting by dotted key (train.epochs=3, preprocess.image_size=160, "
                             "preprocess.augment=robust); the value is read as JSON when it parses; repeatable")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    group = parser.add_argument_group("Router settings (RouterConfig; 'none' for an optional one)")
    defaults = RouterConfig()
    for flag, name, base, optional in SETTINGS:
        choices = _CHOICES.get(name)
        group.add_argument(flag, dest=f"router__{name}", type=_parser_for(base, optional), choices=choices,
                           metavar=None if choices else base.__name__.upper(), default=argparse.SUPPRESS,
                           help=f"default: {getattr(defaults, name)}")
    parser.set_defaults(func=run)


def router_config(args: argparse.Namespace) -> RouterConfig:
    """The ``RouterConfig`` of the defaults, the ``--config`` file, ``--set`` overrides and flags, in that order."""
    source = args.config or "command line"
    try:
        values = RouterConfig().to_dict()
        if args.config:
            given = read_json(Path(args.config), what="--config")
            if not isinstance(given, dict):
                raise ValueError(f"expected a JSON object of RouterConfig settings, got {type(given).__name__}")
            values = merge_settings(RouterConfig, values, given)
        values = merge_settings(RouterConfig, values, dict(parse_override(text) for text in args.overrides))
        values = merge_settings(RouterConfig, values, {name: getattr(args, f"router__{name}")
                                                       for _, name, _, _ in SETTINGS
                                                       if f"router__{name}" in vars(args)})
        if "router__seed" in vars(args) or any(text.split("=", 1)[0].strip() == "seed" for text in args.overrides):
            values["train"]["seed"] = values["seed"]  # the Router's one seed: the file's train.seed follows it
        return RouterConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err


def run(args: argparse.Namespace) -> int:
    from hierarchy.routing import Router

    out = Path(args.out)
    if (out / "router.json").exists() and not args.resume:
        raise ValueError(f"--out {out} already holds a trained Router; choose another folder")
    router = Router.from_config(router_config(args)).fit(args.data, out_dir=out, resume=args.resume)
    router.save(out, overwrite=args.resume)
    logger.info("saved %r to %s", router, out)
    print(out)
    return 0
