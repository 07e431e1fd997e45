"""The settings of one training run, as a dataclass that round-trips through plain dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hierarchy.data.counterfactual import check_removal_fills
from hierarchy.settings import Settings
from hierarchy.training.runtime import AMP_MODES, CHANNELS_LAST_MODES

MONITORS = {"val_balanced_accuracy": "max", "val_accuracy": "max", "val_loss": "min"}


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Hyper-parameters of :func:`hierarchy.training.train`.

    ``amp``: ``auto`` (CUDA: bf16, or fp16 with loss scaling; CPU: fp32 in training, bf16 inference where
    the CPU runs it natively), ``bf16``, ``fp16`` (CUDA only) or ``off`` (fp32). ``channels_last``:
    ``auto`` (on CUDA and oneDNN CPUs), ``on`` or ``off``; see :func:`hierarchy.training.runtime.resolve_runtime`.
    ``early_stopping_patience``: epochs without improvement of ``monitor`` before stopping (None: never).

    Recipe switches (all off by default): ``aux_weight`` weighs the auxiliary loss of joint training
    (:func:`hierarchy.training.train_joint`). ``ema_decay``: keep an exponential moving average of the
    weights (timm ``ModelEmaV3`` with warm-up); validation, checkpoints and the returned model use it.
    ``mixup_alpha`` / ``cutmix_alpha``: timm ``Mixup`` (per batch, either one when both are set) with
    ``label_smoothing``; needs an even per-process batch and excludes ``class_balanced``.
    ``progressive_sizes``: image size of epochs 1, 2, ... (batches are resized on the fly); later epochs
    and validation use the data's own size. Under ``torchrun`` with several processes, BatchNorm layers
    always become ``SyncBatchNorm``, so the result does not depend on the number of processes.

    Switches that make a model look at the tumour (all off by default; they need tumour masks, a
    ``mask_path`` column, for the tumour rows): ``mask_weight`` weighs a segmentation loss (joint mode): a
    1x1-convolution decoder on the trunk's last feature map is trained to predict the tumour mask (empty
    for no-tumour images), so the features the classifier pools must localise the tumour.
    ``evidence_weight`` weighs :func:`hierarchy.training.trainer.outside_evidence_loss` (joint mode): the share
    of the true class's positive evidence (the classifier applied at each position of the last feature map)
    that lies outside a tumour image's mask, so that the class must come from the tumour. ``neutral_weight``
    weighs :func:`hierarchy.training.trainer.outside_neutrality_loss` (joint mode): outside a tumour image's
    mask, each position's evidence must favour no class, so that tissue around a tumour (and, with paste-in,
    a normal brain's tissue) carries no class evidence and only a tumour can move the decision. ``paste_p``,
    ``removal_p``, ``style_swap_p``: the probabilities of the counterfactual augmentations of
    :mod:`hierarchy.data.counterfactual_augment` (tumours pasted into normal brains, tumours removed, and
    class-independent style swaps); ``sham_edits`` adds the same edits where they change no label (a removal
    fill over healthy tissue of tumour images, a normal brain's tissue pasted into no-tumour images), so that
    the traces of an edit cannot stand in for the tumour's presence or absence. ``removal_fills`` draws each
    removal's fill (real or sham) from these fills instead of the plane's one training fill, so that no one
    fill's texture can stand for "no tumour" either.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.0
    class_balanced: bool = False
    grad_clip: float | None = 1.0
    amp: str = "auto"
    channels_last: str = "auto"
    early_stopping_patience: int | None = 5
    monitor: str = "val_balanced_accuracy"
    seed: int = 0
    num_workers: int = 0
    aux_weight: float = 1.0
    ema_decay: float | None = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    progressive_sizes: tuple[int, ...] = ()
    mask_weight: float = 0.0
    evidence_weight: float = 0.0
    neutral_weight: float = 0.0
    paste_p: float = 0.0
    removal_p: float = 0.0
    style_swap_p: float = 0.0
    sham_edits: bool = False
    removal_fills: tuple[str, ...] = ()
    # removed settings that nothing set, at the value the trainer now always uses (see Settings.RETIRED)
    RETIRED: ClassVar[dict[str, Any]] = {"max_steps_per_epoch": None, "compile": False, "persistent_workers": False,
                                         "prefetch_factor": None, "sync_batchnorm": True}

    def __post_init__(self) -> None:
        object.__setattr__(self, "progressive_sizes", tuple(self.progressive_sizes))  # a JSON list round-trips
        object.__setattr__(self, "removal_fills", tuple(self.removal_fills))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.channels_last not in CHANNELS_LAST_MODES:
            raise ValueError(f"channels_last must be one of {CHANNELS_LAST_MODES}, got {self.channels_last!r}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be >= 1 or None, got {self.early_stopping_patience}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {sorted(MONITORS)}, got {self.monitor!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha} and {self.cutmix_alpha}")
        if self.mixing and self.class_balanced:
            raise ValueError("mixup/cutmix and class_balanced cannot be combined (soft targets have no class weights)")
        if self.mixing and self.batch_size % 2:
            raise ValueError(f"mixup/cutmix pair each image with another: batch_size must be even, got {self.batch_size}")
        if len(self.progressive_sizes) > self.epochs or any(int(s) < 8 for s in self.progressive_sizes):
            raise ValueError(f"progressive_sizes must give at most epochs={self.epochs} sizes of >= 8 pixels, "
                             f"got {list(self.progressive_sizes)}")
        for name in ("mask_weight", "evidence_weight", "neutral_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.needs_masks and self.mixing:
            raise ValueError("mask_weight, evidence_weight and neutral_weight cannot be combined with mixup/cutmix "
                             "(a mixed image has no one mask)")
        for name in ("paste_p", "removal_p", "style_swap_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.sham_edits and not (self.paste_p or self.removal_p):
            raise ValueError("sham_edits hide the traces of paste-in and removal; set paste_p or removal_p")
        check_removal_fills(self.removal_fills)
        if self.removal_fills and not self.removal_p:
            raise ValueError("removal_fills choose the fills of removals; set removal_p")

    @property
    def counterfactual(self) -> bool:
        """Whether any counterfactual or style-swap augmentation is on."""
        return self.paste_p > 0 or self.removal_p > 0 or self.style_swap_p > 0

    @property
    def counterfactual_switches(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~hierarchy.data.counterfactual_augment.CounterfactualAugment`."""
        switches: dict[str, Any] = {"paste_p": self.paste_p, "removal_p": self.removal_p,
                                    "style_swap_p": self.style_swap_p}
        if self.sham_edits:  # only when on, so that the feature caches of earlier runs keep their keys
            switches["sham_edits"] = True
        if self.removal_fills:
            switches["removal_fills"] = self.removal_fills
        return switches

    @property
    def needs_masks(self) -> bool:
        """Whether a loss reads the tumour masks (``mask_weight``, ``evidence_weight`` or ``neutral_weight``)."""
        return self.mask_weight > 0 or self.needs_evidence

    @property
    def needs_evidence(self) -> bool:
        """Whether a loss reads the per-position evidence (``evidence_weight`` or ``neutral_weight``)."""
        return self.evidence_weight > 0 or self.neutral_weight > 0

    @property
    def mixing(self) -> bool:
        """Whether mixup or cutmix is on."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def image_size(self, epoch: int) -> int | None:
        """The training image size of epoch ``epoch`` (1-based) under ``progressive_sizes`` (None: the data's)."""
        return int(self.progressive_sizes[epoch - 1]) if epoch <= len(self.progressive_sizes) else None
