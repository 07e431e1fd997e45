"""Experiment profiles: named, fully overridable configurations of the flat-vs-hierarchical run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hierarchy.data import PERTURBATIONS, PreprocessConfig
from hierarchy.fileio import read_json
from hierarchy.routing.config import RouterConfig
from hierarchy.settings import Settings
from hierarchy.training import TrainConfig


@dataclass(frozen=True)
class ExperimentConfig(Settings):
    """Everything that decides what the comparison trains and measures.

    ``flat_backbone`` is the intended flat baseline; when its ImageNet weights cannot be found the
    run says so and trains ``flat_fallback_backbone`` (offline-pretrained) instead, plus the
    intended backbone from random initialisation when ``flat_random_init_too`` is set. The Router's
    settings are built from these in one place, ``router_config``.
    """

    profile: str
    mode: str  # RouterConfig.mode: "frozen" (cached features, linear heads), "finetune", "shared"
    image_size: int
    plane_backbone: str
    expert_backbone: str
    flat_backbone: str
    flat_fallback_backbone: str
    weights: str | None = "imagenet"
    expert_init: str = "imagenet"
    flat_random_init_too: bool = False
    seeds: tuple[int, ...] = (0,)
    val_fraction: float = 0.15
    epochs: int = 5
    plane_epochs: int | None = None
    expert_epochs: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    class_balanced: bool = False
    num_workers: int = 2
    feature_views: int = 1
    n_bootstrap: int = 1000
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS)
    throughput_images: int = 200
    explain_images: int = 24
    synthetic: dict[str, Any] = field(default_factory=dict)
    # with several seeds, one route ``<route>_seeds`` per base route here: probabilities averaged over seeds
    seed_ensemble_routes: tuple[str, ...] = ("flat", "hierarchical")
    conformal_alpha: float = 0.1  # conformal sets aim at coverage 1 - alpha, calibrated on validation rows
    holdout_source: str | None = None  # with several dataset roots: train on the others, test on this one

    def router_config(self, seed: int, flat_backbone: str | None) -> RouterConfig:
        """The ``RouterConfig`` of seed ``seed``, with the flat backbone the weights plan chose."""
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
                            class_balanced=self.class_balanced, num_workers=self.num_workers, seed=seed)
        return RouterConfig(plane=self.plane_backbone, experts=self.expert_backbone, flat=flat_backbone,
                            mode=self.mode, weights=self.weights, expert_init=self.expert_init,
                            preprocess=PreprocessConfig(image_size=self.image_size), train=train,
                            plane_epochs=self.plane_epochs, expert_epochs=self.expert_epochs,
                            val_fraction=self.val_fraction, feature_views=self.feature_views, seed=seed)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Build from plain values (JSON lists become tuples); unknown keys raise ``ValueError``."""
        return super().from_dict({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


PROFILES: dict[str, ExperimentConfig] = {
    # Synthetic phantoms, frozen offline-pretrained EfficientNet-Lite0 at 96 px: a few minutes on a laptop CPU.
    "demo": ExperimentConfig(
        profile="demo", mode="frozen", image_size=96, plane_backbone="tf_efficientnet_lite0",
        expert_backbone="tf_efficientnet_lite0", flat_backbone="inception_resnet_v2",
        flat_fallback_backbone="tf_efficientnet_lite0", feature_views=2, num_workers=0, n_bootstrap=500,
        throughput_images=32, explain_images=8,
        synthetic={"n_per_cell_train": 24, "n_per_cell_test": 10, "image_size": 128},
    ),
    # Frozen offline-pretrained EfficientNet-Lite0, features cached once, linear heads only.
    "quick": ExperimentConfig(
        profile="quick", mode="frozen", image_size=224, plane_backbone="tf_efficientnet_lite0",
        expert_backbone="tf_efficientnet_lite0", flat_backbone="inception_resnet_v2",
        flat_fallback_backbone="tf_efficientnet_lite0", feature_views=2, num_workers=2,
    ),
    # EfficientNet-Lite0 fine-tuned end to end at 224 px as the flat model; the plane and expert heads are
    # then fitted on its trunk (mode "shared"), so every route costs one trunk pass. ~1 h on 2 CPU cores.
    "cpu": ExperimentConfig(
        profile="cpu", mode="shared", image_size=224, plane_backbone="tf_efficientnet_lite0",
        expert_backbone="tf_efficientnet_lite0", flat_backbone="inception_resnet_v2",
        flat_fallback_backbone="tf_efficientnet_lite0", epochs=4, lr=1e-3, batch_size=32,
        feature_views=2, num_workers=2,
    ),
    # The published recipe: InceptionResNetV2 flat baseline at 299 px; meant for a GPU.
    "full": ExperimentConfig(
        profile="full", mode="finetune", image_size=299, plane_backbone="tf_efficientnet_lite0",
        expert_backbone="tf_efficientnet_lite2", flat_backbone="inception_resnet_v2",
        flat_fallback_backbone="tf_efficientnet_lite2", expert_init="flat", epochs=30,
        plane_epochs=10, expert_epochs=15, lr=3e-4, batch_size=32, num_workers=8,
        flat_random_init_too=True, seeds=(0, 1, 2),
    ),
}


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as JSON when it parses as JSON."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def resolve_config(profile: str, *, config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """A profile, then the settings of ``config_file`` (JSON), then command-line overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    values = PROFILES[profile].to_dict()
    if config_file is not None:
        values.update(read_json(config_file, what="experiment config"))
    values.update(overrides or {})
    config = ExperimentConfig.from_dict(values)
    unknown = sorted(set(config.perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; known: {sorted(PERTURBATIONS)}")
    return config
