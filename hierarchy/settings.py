"""Dataclasses of settings that round-trip through plain (JSON-ready) dicts, and the one function that merges
overrides into them.

Every entry point that changes settings (``hierarchy train --set``, a ``--config`` file, the experiment's
``--set router.<key>``, ablation arms) goes through ``merge_settings`` with the same dotted keys (``train.epochs``,
``preprocess.augment.jpeg_p``; the experiment nests the Router's under ``router.``), so an override means the
same thing wherever it is given.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, fields, is_dataclass
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T", bound="Settings")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON or a command line) is of the annotated type ``hint``: numbers, flags and lists
    of them are checked; names (``str``) and hints this does not know (a component object, ``Any``) accept
    anything, and the dataclass's own checks decide."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:  # names and choices: the dataclass checks them (some also take objects, e.g. tta=True)
        return True
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        item = args[0] if args and (origin is list or args[-1] is Ellipsis) else Any
        return all(_fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (tuple, list):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "an object"}
    return names.get(origin or hint, getattr(hint, "__name__", str(hint)))


class Settings:
    """``to_dict()`` and ``from_dict()`` for a dataclass; a key that is not a setting, or a value not of the
    setting's type (``epochs="three"``, ``epochs=3.5``), is refused.

    ``RETIRED`` maps a removed setting to the value the code now always uses: files saved before its removal
    (a Router's ``router.json``, a bundle's ``config.json``, an ablation's arms) still load when they hold
    that value, and name the setting when they hold another.
    """

    RETIRED: typing.ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every setting."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Build from ``to_dict()`` output; unknown keys and values of the wrong type raise ``ValueError``."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        changed = sorted(k for k in set(values) & set(cls.RETIRED) if values[k] != cls.RETIRED[k])
        if changed:
            raise ValueError(f"{cls.__name__} settings {changed} were removed; the code always uses "
                             f"{ {k: cls.RETIRED[k] for k in changed} }")
        values = {k: v for k, v in values.items() if k not in cls.RETIRED}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation that cannot be resolved here: the dataclass checks
            hints = {}
        for key, value in values.items():
            if key in hints and not _fits(value, hints[key]):
                raise ValueError(f"{cls.__name__} setting {key!r} must be {_type_name(hints[key])}, "
                                 f"got {value!r} ({type(value).__name__})")
        return cls(**values)

    @classmethod
    def from_name(cls: type[T], name: str) -> T:
        """The named preset ``name`` of these settings (a class with presets overrides this)."""
        raise ValueError(f"{cls.__name__} has no presets; give its settings as an object, got {name!r}")


@cache
def _groups(kind: type) -> dict[str, type[Settings] | None]:
    """Each field of the dataclass ``kind``: its ``Settings`` type when it is a group of settings, else None."""
    hints = typing.get_type_hints(kind)
    found: dict[str, type[Settings] | None] = {}
    for f in fields(kind):
        candidates = [hints[f.name], *typing.get_args(hints[f.name])]
        found[f.name] = next((c for c in candidates if isinstance(c, type) and is_dataclass(c)
                              and issubclass(c, Settings)), None)
    return found


def _as_dict(kind: type[Settings], value: Any) -> Any:
    """A group's value in ``to_dict()`` layout: an instance's dict, a preset name's settings, a dict as is."""
    if isinstance(value, kind):
        return value.to_dict()
    if isinstance(value, str):
        return kind.from_name(value).to_dict()
    return value


def merge_settings(kind: type[Settings], values: dict[str, Any], updates: dict[str, Any],
                   path: str = "") -> dict[str, Any]:
    """``values`` (``kind.to_dict()`` layout) updated by ``updates``, whose keys may be dotted paths
    (``train.epochs``); the one merge of every entry point.

    A dict given for a group of settings updates that group key by key; a preset name or an object given
    for a group replaces it, and later keys in ``updates`` modify it (``{"preprocess.augment": "robust",
    "preprocess.augment.jpeg_p": 0.2}`` is the robust preset with ``jpeg_p`` 0.2), so a field-level override
    always modifies the chosen preset. Keys that are not settings are kept, so ``kind.from_dict`` refuses
    them by name; ``path`` is the dotted prefix of ``values`` (for messages).
    """
    groups = _groups(kind)
    merged = dict(values)
    for key, value in updates.items():
        head, _, rest = key.partition(".")
        if rest:
            value = {rest: value}
        group = groups.get(head)
        current = merged.get(head)
        if group is not None:
            current = _as_dict(group, current)
            if isinstance(value, dict) and isinstance(current, dict):
                value = merge_settings(group, current, value, f"{path}{head}.")
            else:
                value = _as_dict(group, value)
        elif isinstance(value, dict) and isinstance(current, dict):
            value = {**current, **value}  # a plain dict setting (e.g. the synthetic data's sizes)
        elif rest and head in groups:
            raise ValueError(f"{path + key!r}: {path + head!r} is a single setting, not a group of settings")
        merged[head] = value
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as JSON when it parses as JSON.

    Nested settings take dotted keys: ``router.train.epochs=3``, ``router.preprocess.augment=robust``,
    ``router.mode=frozen``.
    """
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
