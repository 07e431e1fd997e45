"""Model bundles: a folder with ``config.json`` (what the model is, how its inputs are prepared, where it
came from) and ``model.safetensors``, written atomically and checked on load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from hierarchy.fileio import (
    atomic_write_bytes,
    read_json,
    sha256_file,
    staged_swap,
    write_json,
)
from hierarchy.models.registry import build_architecture
from hierarchy.provenance import software_versions

BUNDLE_FORMAT = "hierarchy-bundle"
BUNDLE_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_REQUIRED_FROM_CALLER = ("classes", "preprocess")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What read_bundle_config requires of every key it relies on: (check, what it must be).
_CONFIG_SCHEMA: dict[str, tuple[Any, str]] = {
    "architecture": (lambda v: isinstance(v, str) and bool(v), "a model name (string)"),
    "num_classes": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "in_chans": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of class names"),
    "preprocess": (lambda v: isinstance(v, dict), "an object of preprocessing settings"),
    "weights_sha256": (lambda v: isinstance(v, str) and len(v) == 64, "a sha256 hex digest"),
}


class BundleError(ValueError):
    """A bundle is missing, corrupt, from another format version, or not the model that was expected."""


def _bundle_config(model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in _REQUIRED_FROM_CALLER if key not in config]
    if missing:
        raise ValueError(f"bundle config lacks {missing}")
    described = {
        "architecture": getattr(model, "architecture", None),
        "num_classes": getattr(model, "num_classes", None),
        "in_chans": getattr(model, "in_chans", None),
        "weights_origin": getattr(model, "weights_origin", None),
    }
    for key, value in described.items():
        if value is None and key not in config:
            raise ValueError(f"bundle config lacks {key!r} and the model does not say (build it with create)")
        if value is not None and key in config and config[key] != value:
            raise ValueError(f"bundle config says {key}={config[key]!r} but the model has {value!r}")
    if len(config["classes"]) != (config.get("num_classes") or described["num_classes"]):
        raise ValueError(f"bundle config lists {len(config['classes'])} classes for a model with "
                         f"{config.get('num_classes') or described['num_classes']} outputs")
    merged = {"training": {}, "data_hashes": {}, **{k: v for k, v in described.items() if v is not None}, **config}
    merged.update(format=BUNDLE_FORMAT, format_version=BUNDLE_FORMAT_VERSION, versions=software_versions())
    return json.loads(json.dumps(merged))  # fails here, not half-way through writing, if not JSON-ready


def save_bundle(model: nn.Module, directory: str | os.PathLike, config: dict[str, Any], *,
                overwrite: bool = False) -> Path:
    """Write ``model`` and ``config`` as a bundle folder ``directory``; returns its path.

    ``config`` must hold ``classes`` and ``preprocess`` (dict) and may hold ``training`` and
    ``data_hashes``; architecture, num_classes, in_chans and weights_origin come from the model (made by
    ``create``). Refuses to replace an existing non-empty ``directory`` unless ``overwrite``.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    record = _bundle_config(model, config)
    with staged_swap(directory, last=CONFIG_FILE) as staging:
        tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        # bytes written by atomic_write: the umask applies (safetensors' save_file makes owner-only files) and
        # a full disk names the file
        atomic_write_bytes(staging.path / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
        record["weights_sha256"] = sha256_file(staging.path / WEIGHTS_FILE)
        write_json(staging.path / CONFIG_FILE, record, sort_keys=True)
        staging.replaced = {e.name for e in staging.target.iterdir()}
    return directory


def read_bundle_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The checked ``config.json`` of a bundle, without loading its tensors."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise BundleError(f"{path} does not exist; {Path(directory)} is not a model bundle")
    try:
        config = read_json(path, what="bundle config")
    except ValueError as err:
        raise BundleError(str(err)) from err
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a {BUNDLE_FORMAT} config (format={config.get('format')!r})"
                          if isinstance(config, dict) else f"{path} is not a {BUNDLE_FORMAT} config")
    if config.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{path} has format_version {config.get('format_version')!r}; this version of "
                          f"hierarchy reads format_version {BUNDLE_FORMAT_VERSION} only")
    problems = [f"{key!r} is missing" if key not in config else
                f"{key!r} must be {what}, got {config[key]!r} ({type(config[key]).__name__})"
                for key, (valid, what) in _CONFIG_SCHEMA.items() if key not in config or not valid(config[key])]
    if not problems and len(config["classes"]) != config["num_classes"]:
        problems.append(f"'classes' lists {len(config['classes'])} names for num_classes={config['num_classes']}")
    if problems:
        raise BundleError(f"{path}: {'; '.join(problems)}")
    return config


def load_bundle(directory: str | os.PathLike, *, expect: dict[str, Any] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a bundle's model in eval mode, with its tensors; returns ``(model, config)``.

    ``expect`` maps config keys to required values (e.g. ``{"classes": [...], "in_chans": 1}``).
    Raises ``BundleError`` for a missing or corrupt file, another format version, tensors that do
    not fit the architecture, or a config that differs from ``expect``.
    """
    directory = Path(directory)
    config = read_bundle_config(directory)
    for key, wanted in (expect or {}).items():
        if config.get(key) != json.loads(json.dumps(wanted)):
            raise BundleError(f"{directory / CONFIG_FILE}: {key} is {config.get(key)!r}, expected {wanted!r}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights} does not exist")
    if sha256_file(weights) != config.get("weights_sha256"):
        raise BundleError(f"{weights} does not match the sha256 recorded in {directory / CONFIG_FILE}; "
                          "the file is corrupt or was changed after saving")
    try:
        model = build_architecture(config["architecture"], config["num_classes"], in_chans=config["in_chans"])
    except (KeyError, ValueError) as err:
        raise BundleError(f"{directory / CONFIG_FILE} describes no buildable model: {err}") from err
    try:
        tensors = load_file(weights)
    except SafetensorError as err:
        raise BundleError(f"{weights} is not a readable safetensors file: {err}") from err
    expected_keys = set(model.state_dict())
    missing, unexpected = sorted(expected_keys - set(tensors)), sorted(set(tensors) - expected_keys)
    if missing or unexpected:
        raise BundleError(f"{weights} does not fit {config['architecture']}: missing tensors {missing[:5]} "
                          f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise BundleError(f"{weights} does not fit {config['architecture']}: {err}") from err
    # Still what training started from, so a re-saved bundle reports the same origin.
    model.weights_origin = config.get("weights_origin")
    return model.eval(), config
