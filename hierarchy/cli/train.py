"""``hierarchy train``: fit a Router (parent-group classifier, per-group experts, flat baseline) and save it.

The Router flags are generated from ``RouterConfig``'s fields (``--train-epochs`` and ``--preprocess-image-size``
for the nested ``train`` and ``preprocess`` settings); a ``--config`` JSON file holds the same keys
(``RouterConfig.to_dict()`` layout) and the flags override it.
"""

from __future__ import annotations

import argparse
import logging
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from hierarchy.fileio import read_json
from hierarchy.routing.config import EXPERT_INITS, MODES, RouterConfig

logger = logging.getLogger(__name__)

_NONE = "none"


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


def _settings(cls: type, prefix: str = "") -> list[tuple[str, type, bool, tuple[str, ...]]]:
    """(flag, type, optional, key path) for every scalar field of a settings dataclass, nested ones prefixed."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            found += [(flag, t, o, (f.name, *path)) for flag, t, o, path in
                      _settings(hints[f.name], f"{prefix}{f.name}-")]
        elif (scalar := _scalar_type(hints[f.name])) is not None:
            found.append((f"--{prefix}{f.name}".replace("_", "-"), *scalar, (f.name,)))
    return found


SETTINGS = _settings(RouterConfig)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a Router on a dataset's training split",
                                   description=__doc__)
    parser.add_argument("--data", required=True, help="dataset root (its test split is never used)")
    parser.add_argument("--out", required=True, help="run folder: the saved Router and training logs")
    parser.add_argument("--config", help="JSON file of RouterConfig settings (RouterConfig.to_dict() layout)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    group = parser.add_argument_group("Router settings (RouterConfig; 'none' for an optional one)")
    defaults = RouterConfig().to_dict()
    for flag, base, optional, path in SETTINGS:
        default = defaults
        for key in path:
            default = default[key]
        choices = {"mode": MODES, "expert_init": EXPERT_INITS}
        group.add_argument(flag, dest="router__" + "__".join(path), type=_parser_for(base, optional),
                           choices=choices.get(path[-1]) if len(path) == 1 else None, metavar=None
                           if len(path) == 1 and path[-1] in choices else base.__name__.upper(),
                           default=argparse.SUPPRESS, help=f"default: {default}")
    parser.set_defaults(func=run)


def router_config(args: argparse.Namespace) -> RouterConfig:
    """The ``RouterConfig`` of the ``--config`` file, overridden by command-line flags."""
    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        values = read_json(path, what="--config")
    for _, _, _, path in SETTINGS:
        dest = "router__" + "__".join(path)
        if dest not in vars(args):  # not given (the flags default to SUPPRESS, so 'none' stays visible)
            continue
        value = getattr(args, dest)
        target = values
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    try:
        return RouterConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{args.config or 'command line'}: {err}") from err


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
