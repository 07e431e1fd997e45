"""Dataclasses of settings that round-trip through plain (JSON-ready) dicts, and the one function that merges
overrides into them.

Every entry point that changes settings (``hierarchy train --set``, a ``--config`` file, the experiment's
``--set router.<key>``, ablation arms) goes through ``merge_settings`` with the same dotted keys (``train.epochs``,
``preprocess.augment.jpeg_p``; the experiment nests the Router's under ``router.``), so an override means the
same thing wherever it is given.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields, is_dataclass
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T", bound="Settings")


class Settings:
    """``to_dict()`` and ``from_dict()`` for a dataclass; a key that is not a setting is refused."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every setting."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Build from ``to_dict()`` output; keys that are not settings raise ``ValueError``."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")
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
