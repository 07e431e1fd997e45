"""The arms of the recipe ablation (``experiments/ablation_recipe.py``): each changes one group of settings of
a profile's Router; ``plain`` changes several at once. The refit control reads them too, so both studies fit
the same models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from hierarchy.experiment.ablation import Arm
from hierarchy.experiment.profiles import resolve_config
from hierarchy.experiment.weights_plan import plan_weights
from hierarchy.routing import RouterConfig
from hierarchy.settings import parse_override

ARMS = {arm.name: arm for arm in (
    Arm("base", "the profile as it is"),
    Arm("light_augment", "light augmentation preset instead of the profile's",
        {"preprocess.augment": "light"}),
    Arm("robust_augment", "domain-robust augmentation preset instead of the profile's",
        {"preprocess.augment": "robust"}),
    Arm("size_256", "256 px", {"preprocess.image_size": 256}),
    Arm("size_288", "288 px", {"preprocess.image_size": 288}),
    Arm("epochs_x2", "twice the epochs", {"train.epochs": 8}),
    Arm("lr_3e-4", "learning rate 3e-4", {"train.lr": 3e-4}),
    Arm("ema", "EMA of weights (decay 0.999) evaluated", {"train.ema_decay": 0.999}),
    Arm("no_label_smoothing", "label smoothing 0", {"train.label_smoothing": 0.0}),
    Arm("mixup_cutmix", "mixup (alpha 0.2) and cutmix (alpha 1.0)",
        {"train.mixup_alpha": 0.2, "train.cutmix_alpha": 1.0}),
    Arm("progressive", "progressive resizing: 160, 192 px, then full size", {"train.progressive_sizes": [160, 192]}),
    Arm("tta", "test-time augmentation (identity + horizontal flip)", {"tta": "identity,hflip"}),
    Arm("bf16_training", "bf16 autocast in training (evaluated in fp32)", {"train.amp": "bf16"}),
    Arm("plain", "a plainer recipe: light augmentation, 192 px, 3 epochs",
        {"preprocess.augment": "light", "preprocess.image_size": 192, "train.epochs": 3}),
)}


def profile_router(profile: str, overrides: Sequence[str] = ()) -> RouterConfig:
    """The Router settings of ``profile`` with ``KEY=VALUE`` experiment overrides, seed 0: every arm's base."""
    config = resolve_config(profile, overrides=dict(parse_override(text) for text in overrides))
    return config.router_config(0, plan_weights(config)["flat_backbone"])


def study_setup(profile: str, base: RouterConfig, overrides: Sequence[str], data: str) -> str:
    """The sentence an ablation report opens with: the profile's Router every arm starts from."""
    return (f"The `{profile}` profile's Router ({base.mode} mode, flat `{base.flat}`, "
            f"{base.preprocess.image_size} px, {base.train.epochs} epochs"
            f"{'; ' + ', '.join(overrides) if overrides else ''}), one seed, each arm changing one group "
            f"of settings; every arm trained on the same {PurePath(data).name} training rows.")
