"""Training: the end-to-end trainer (resume, early stopping) and the frozen-feature cache with linear heads."""

from hierarchy.training.checkpoint import load_checkpoint, save_checkpoint
from hierarchy.training.config import TrainConfig
from hierarchy.training.features import (
    backbone_fingerprint,
    extract_features,
    feature_cache_key,
    outside_mask_features,
)
from hierarchy.training.heads import attach_head, fit_linear_head
from hierarchy.training.joint import AuxTargetDataset, JointModel
from hierarchy.training.losses import class_balanced_weights, dataset_targets
from hierarchy.training.runtime import Runtime, resolve_runtime
from hierarchy.training.schedule import warmup_cosine_factor, warmup_cosine_scheduler
from hierarchy.training.seeding import epoch_generator, seed_everything
from hierarchy.training.trainer import JointTrainResult, TrainResult, train, train_joint

__all__ = [
    "AuxTargetDataset",
    "JointModel",
    "JointTrainResult",
    "Runtime",
    "TrainConfig",
    "TrainResult",
    "attach_head",
    "backbone_fingerprint",
    "class_balanced_weights",
    "dataset_targets",
    "epoch_generator",
    "extract_features",
    "outside_mask_features",
    "feature_cache_key",
    "fit_linear_head",
    "load_checkpoint",
    "resolve_runtime",
    "save_checkpoint",
    "seed_everything",
    "train",
    "train_joint",
    "warmup_cosine_factor",
    "warmup_cosine_scheduler",
]
