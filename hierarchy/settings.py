"""A mixin for dataclasses of settings that round-trip through plain (JSON-ready) dicts."""

from __future__ import annotations

from dataclasses import asdict, fields
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
