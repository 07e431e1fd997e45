"""The settings of one training run, as a dataclass that round-trips through plain dicts."""

from __future__ import annotations

from dataclasses import dataclass

from hierarchy.settings import Settings

AMP_MODES = ("auto", "bf16", "fp16", "off")
CHANNELS_LAST_MODES = ("auto", "on", "off")
MONITORS = {"val_balanced_accuracy": "max", "val_accuracy": "max", "val_loss": "min"}


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Hyper-parameters of :func:`hierarchy.training.train`.

    ``amp``: ``auto`` (bf16, or fp16 with loss scaling, on CUDA only; off on CPU), ``bf16``, ``fp16``
    (CUDA only) or ``off``. ``channels_last``: ``auto`` (on CUDA only), ``on`` or ``off``.
    ``early_stopping_patience``: epochs without improvement of ``monitor`` before stopping (None: never).
    ``max_steps_per_epoch``: cap on optimiser steps per epoch (None: the whole training set).
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
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
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
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")


