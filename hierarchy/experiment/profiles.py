"""Experiment profiles: named, fully overridable configurations of the flat-vs-hierarchical run."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hierarchy.data import PERTURBATIONS, PreprocessConfig
from hierarchy.fileio import read_json
from hierarchy.metrics.multiplicity import METHODS
from hierarchy.routing.config import RouterConfig
from hierarchy.settings import Settings, merge_settings
from hierarchy.training import TrainConfig

PRIMARY_SUBSETS = {"unseen": "test images with no exact or near duplicate in the training pool",
                   "all": "the whole test split"}


@dataclass(frozen=True)
class ExperimentConfig(Settings):
    """Everything that decides what the comparison trains and measures.

    ``router`` holds every setting of the Routers trained (one per seed): ``router_config`` gives the
    ``RouterConfig`` of one seed. ``router.flat`` is the intended flat baseline; when its ImageNet
    weights cannot be found the run says so and trains ``flat_fallback_backbone`` (offline-pretrained)
    instead, plus the intended backbone from random initialisation when ``flat_random_init_too`` is set.
    The other fields are the experiment's own: seeds (or cross-validation folds), bootstrap size, perturbations,
    side evaluations, the declared primary endpoint and the multiplicity adjustment of its family of tests.
    """

    profile: str
    router: RouterConfig
    flat_fallback_backbone: str
    flat_random_init_too: bool = False
    seeds: tuple[int, ...] = (0,)
    n_bootstrap: int = 1000
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS)
    throughput_images: int = 200
    explain_images: int = 24
    shortcut_images: int = 100  # per shortcut test, and the masked test tumours whose attributions are scored
    synthetic: dict[str, Any] = field(default_factory=dict)
    # with several seeds, one route ``<route>_seeds`` per base route here: probabilities averaged over seeds
    seed_ensemble_routes: tuple[str, ...] = ("flat", "hierarchical")
    conformal_alpha: float = 0.1  # conformal sets aim at coverage 1 - alpha, calibrated on validation rows
    conformal_allow_empty: bool = True  # False: a set that would be empty holds the most probable class
    holdout_source: str | None = None  # with several dataset roots: train on the others, test on this one
    # The declared primary endpoint: accuracy of primary_routes[1] minus primary_routes[0] on primary_subset,
    # "unseen" (test images with no exact or near duplicate in the training pool) or "all" (the whole test split)
    primary_routes: tuple[str, ...] = ("flat", "hierarchical")
    primary_subset: str = "unseen"
    multiplicity: str = "holm"  # adjustment over the family of flat-vs-hierarchical tests: "holm" or "bh"
    # share of the training pool held out (duplicate groups whole) to calibrate conformal sets and nothing else;
    # 0: none, conformal sets are then calibrated on the validation rows
    calibration_fraction: float = 0.1
    cv_folds: int = 0  # K >= 2: grouped K-fold of the training pool, one model per fold in place of seeds
    cv_repeats: int = 1  # repeats of the K-fold, each with another shuffle

    def __post_init__(self) -> None:
        """Ranges, checked when the configuration is made (types are checked by ``from_dict``), so that a bad
        value stops the run before any training."""
        checks = [
            (len(self.seeds) >= 1 and all(isinstance(s, int) and s >= 0 for s in self.seeds)
             and len(set(self.seeds)) == len(self.seeds), "seeds", "a non-empty list of distinct integers >= 0"),
            (self.n_bootstrap >= 1, "n_bootstrap", "an integer >= 1"),
            (self.throughput_images >= 1, "throughput_images", "an integer >= 1"),
            (self.explain_images >= 0, "explain_images", "an integer >= 0"),
            (0.0 < self.conformal_alpha < 1.0, "conformal_alpha", "a number in (0, 1)"),
            (len(self.primary_routes) == 2 and len(set(self.primary_routes)) == 2, "primary_routes",
             "two different routes [reference, compared]"),
            (self.primary_subset in PRIMARY_SUBSETS, "primary_subset", f"one of {sorted(PRIMARY_SUBSETS)}"),
            (self.multiplicity in METHODS, "multiplicity", f"one of {sorted(METHODS)}"),
            (0.0 <= self.calibration_fraction < 0.5, "calibration_fraction", "a number in [0, 0.5)"),
            (self.cv_folds == 0 or self.cv_folds >= 2, "cv_folds", "0 (no cross-validation) or an integer >= 2"),
            (self.cv_repeats >= 1, "cv_repeats", "an integer >= 1"),
            (self.cv_folds == 0 or len(self.seeds) == 1, "seeds",
             "one seed with cv_folds (the fold models stand in for seeds)"),
        ]
        for ok, name, wanted in checks:
            if not ok:
                raise ValueError(f"experiment setting {name!r} must be {wanted}, got {getattr(self, name)!r}")

    def router_config(self, seed: int, flat_backbone: str | None) -> RouterConfig:
        """``router`` for seed ``seed`` (``seed`` and ``train.seed``), with the flat backbone the weights plan chose."""
        return replace(self.router, flat=flat_backbone, seed=seed, train=replace(self.router.train, seed=seed))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Build from ``to_dict()`` output (``router`` a nested dict; JSON lists become tuples).

        Unknown keys raise ``ValueError`` listing the known ones; a key that names a Router setting
        without its ``router.`` prefix says where that setting lives now.
        """
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if isinstance(values.get("router"), dict):
            try:
                values["router"] = RouterConfig.from_dict(values["router"])
            except ValueError as err:
                raise ValueError(f"router settings: {err}") from err
        try:
            return super().from_dict(values)
        except ValueError as err:
            known = {f.name for f in fields(cls)}
            hints = [f"{key!r} is now {_router_key(key)!r}" for key in sorted(set(values) - known)
                     if _router_key(key)]
            raise ValueError(f"{err}" + (f" ({'; '.join(hints)})" if hints else "")) from err


_RENAMED = {"plane_backbone": "router.plane", "expert_backbone": "router.experts", "flat_backbone": "router.flat"}


def _router_key(key: str) -> str | None:
    """The dotted key of a Router setting given without its prefix (``epochs``: ``router.train.epochs``)."""
    if key in _RENAMED:
        return _RENAMED[key]
    for prefix, kind in (("router", RouterConfig), ("router.train", TrainConfig),
                         ("router.preprocess", PreprocessConfig)):
        if key != "router" and key in {f.name for f in fields(kind)}:
            return f"{prefix}.{key}"
    return None


PROFILES: dict[str, ExperimentConfig] = {
    # Synthetic phantoms, frozen offline-pretrained EfficientNet-Lite0 at 96 px: a few minutes on a laptop CPU.
    "demo": ExperimentConfig(
        profile="demo",
        router=RouterConfig(plane="tf_efficientnet_lite0", experts="tf_efficientnet_lite0",
                            flat="inception_resnet_v2", mode="frozen", preprocess=PreprocessConfig(image_size=96),
                            train=TrainConfig(epochs=5, label_smoothing=0.1, num_workers=0), feature_views=2),
        flat_fallback_backbone="tf_efficientnet_lite0", n_bootstrap=500, throughput_images=32, explain_images=8, shortcut_images=12,
        synthetic={"n_per_cell_train": 24, "n_per_cell_test": 10, "image_size": 128},
    ),
    # Frozen offline-pretrained EfficientNet-Lite0, features cached once, linear heads only. The augmented
    # feature views use the light preset: on BRISC validation it beat the domain-robust one for frozen
    # features (reports/benchmarks/robustness_ablation), and carry counterfactual images (tumours pasted in and
    # removed), the arm the disease ablation's rule chose for this profile on validation rows
    # (reports/benchmarks/disease_ablation_quick).
    "quick": ExperimentConfig(
        profile="quick",
        router=RouterConfig(plane="tf_efficientnet_lite0", experts="tf_efficientnet_lite0",
                            flat="inception_resnet_v2", mode="frozen",
                            preprocess=PreprocessConfig(image_size=224, augment="light"),
                            train=TrainConfig(epochs=5, label_smoothing=0.1, num_workers=2,
                                              paste_p=0.25, removal_p=0.25),
                            feature_views=2),
        flat_fallback_backbone="tf_efficientnet_lite0",
    ),
    # EfficientNet-Lite0 fine-tuned end to end at 224 px (light augmentation: the recipe ablation chose it over
    # the robust preset on validation, reports/benchmarks/recipe_ablation) on the tumour label and
    # the plane at once (mode "joint", one backbone name for all three): its plane head is the plane classifier
    # and the expert heads are fitted on its frozen trunk, so every route costs one trunk pass. The trunk must
    # look at the tumour: mask supervision (loss weight 3), a loss on class evidence outside the tumour mask,
    # counterfactual paste-in (p 0.5) and removal (p 0.25) with sham edits (the same edits where they change no label,
    # so that their traces carry none), each removal filled by the mirror, a noisy or a smooth fill (so that no fill's
    # texture carries a label), and class-independent style swaps, trained 12 epochs (at 8 the trunk had not fitted
    # its own counterfactuals); the experts are pulled towards the flat head (expert_anchor_weight 10), so that they
    # read the trunk as the mask losses taught the flat head to: the recipe the disease ablation's declared rule
    # chose on validation rows (all_three_paste_half_mask3_evidence_12ep_sham_fills_anchored,
    # reports/benchmarks/disease_ablation). About 65 minutes of training per Router on 2 CPU cores (5.3 min per epoch).
    "cpu": ExperimentConfig(
        profile="cpu",
        router=RouterConfig(plane="tf_efficientnet_lite0", experts="tf_efficientnet_lite0",
                            flat="tf_efficientnet_lite0", mode="joint",
                            preprocess=PreprocessConfig(image_size=224, augment="light"),
                            train=TrainConfig(epochs=12, lr=1e-3, batch_size=32, label_smoothing=0.1, num_workers=2,
                                              mask_weight=3.0, evidence_weight=1.0, paste_p=0.5, removal_p=0.25,
                                              style_swap_p=0.5, sham_edits=True,
                                              removal_fills=("contralateral", "diffusion", "smooth")),
                            feature_views=2, expert_anchor_weight=10.0),
        flat_fallback_backbone="tf_efficientnet_lite0",
    ),
    # The published recipe: InceptionResNetV2 flat baseline at 299 px; meant for a GPU. The experts are
    # EfficientNet-Lite2 from offline ImageNet weights: they cannot start from the flat model's trunk
    # (expert_init="flat") when that is InceptionResNetV2, a different backbone.
    "full": ExperimentConfig(
        profile="full",
        router=RouterConfig(plane="tf_efficientnet_lite0", experts="tf_efficientnet_lite2",
                            flat="inception_resnet_v2", mode="finetune", expert_init="imagenet",
                            preprocess=PreprocessConfig(image_size=299),
                            train=TrainConfig(epochs=30, lr=3e-4, batch_size=32, label_smoothing=0.1, num_workers=8),
                            plane_epochs=10, expert_epochs=15),
        flat_fallback_backbone="tf_efficientnet_lite2", flat_random_init_too=True, seeds=(0, 1, 2),
    ),
}


def resolve_config(profile: str, *, config_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """A profile, then the settings of ``config_file`` (JSON), then command-line overrides.

    ``config_file`` and ``overrides`` give Router settings under ``router``, as nested dicts
    (``{"router": {"train": {"epochs": 3}}}``) or dotted keys (``{"router.train.epochs": 3}``);
    unknown keys raise ``ValueError`` listing the known ones.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    values = PROFILES[profile].to_dict()
    if config_file is not None:
        settings = read_json(config_file, what="experiment config")
        if not isinstance(settings, dict):
            raise ValueError(f"{config_file}: an experiment config is a JSON object of settings, "
                             f"got {type(settings).__name__}")
        values = merge_settings(ExperimentConfig, values, settings)
    values = merge_settings(ExperimentConfig, values, overrides or {})
    config = ExperimentConfig.from_dict(values)
    unknown = sorted(set(config.perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; known: {sorted(PERTURBATIONS)}")
    return config
