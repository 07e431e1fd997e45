"""End-to-end supervised training with early stopping, per-epoch logs and exactly reproducible resume.

Runs in one process, or data-parallel under ``torchrun`` (see :mod:`hierarchy.training.distributed`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from hierarchy.progress import progress_bar
from hierarchy.training.checkpoint import load_checkpoint, save_checkpoint
from hierarchy.training.config import MONITORS, TrainConfig
from hierarchy.training.distributed import (
    DistContext,
    EpochBatchShardSampler,
    ShardSampler,
    init_distributed,
)
from hierarchy.training.features import feature_cache_key
from hierarchy.training.joint import JointModel
from hierarchy.training.losses import (
    class_balanced_weights,
    dataset_targets,
    masks_on_grid,
    neutrality,
    with_tumour,
)
from hierarchy.training.runtime import Runtime, resolve_runtime
from hierarchy.training.schedule import warmup_cosine_scheduler
from hierarchy.training.seeding import epoch_generator, rng_state, seed_everything, set_rng_state

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
               "val_balanced_accuracy", "lr", "seconds")
# Added to the log of joint training: the auxiliary target's held-out loss and accuracy (known rows only).
AUX_LOG_COLUMNS = ("val_aux_loss", "val_aux_accuracy")


@dataclass
class TrainResult:
    """What :func:`train` leaves behind; the model itself already holds the best epoch's weights."""

    history: pd.DataFrame
    best_epoch: int
    best_metric: float
    best_checkpoint: Path
    last_checkpoint: Path


@dataclass
class JointTrainResult(TrainResult):
    """What :func:`train_joint` leaves behind: :class:`TrainResult` plus the trained auxiliary head."""

    aux_head: nn.Linear


def _num_classes(model: nn.Module) -> int:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        num_classes = getattr(model.get_classifier(), "out_features", None)
    if not num_classes:
        raise ValueError(f"cannot tell how many classes {type(model).__name__} predicts")
    return int(num_classes)


def _batches(loader: DataLoader, steps: int, runtime: Runtime, desc: str, progress: bool,
             size: int | None = None) -> Iterable[list[torch.Tensor]]:
    """Batches as ``[x, y]`` or ``[x, y, aux]`` on the runtime's device, ``x`` resized to ``size`` if given."""
    for x, *targets in progress_bar(islice(loader, steps), enabled=progress, total=steps, desc=desc, leave=False):
        if size is not None and x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        yield [runtime.batch(x), *(t.to(runtime.device, non_blocking=True) for t in targets)]


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``model``'s outputs in fp32 by name (``logits``; a :class:`JointModel`'s ``output_names`` besides; DDP and
    EMA wrappers are looked through)."""
    out = model(x)
    out = out if isinstance(out, tuple) else (out,)
    names = getattr(getattr(model, "module", model), "output_names", ("logits",))
    return {name: o.float() for name, o in zip(names, out, strict=True)}


def mask_loss(seg_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of (n, 1, h, w) tumour logits against (n, S, S) masks (values in [0, 1]; a mask
    of -1 is unknown and left out), each mask area-averaged down to the logits' grid (soft targets)."""
    known, grid = masks_on_grid(masks, seg_logits.shape[-2:])
    if not known.any():
        return seg_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(seg_logits[known], grid[known, None])


def outside_evidence_loss(evidence: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the true class's positive evidence ((n, classes, h, w) per-position logits) that lies outside
    the tumour mask (each (S, S) mask area-averaged to the grid), averaged over the items whose mask is known
    and not empty: a tumour image's class must come from its tumour (right for the right reasons)."""
    known, grid = masks_on_grid(masks, evidence.shape[-2:])
    tumour = with_tumour(known, grid)
    if not tumour.any():
        return evidence.sum() * 0.0
    true = evidence[tumour].gather(1, labels[tumour].view(-1, 1, 1, 1).expand(-1, 1, *evidence.shape[-2:]))[:, 0]
    positive = F.relu(true).flatten(1)
    outside = (positive * (1.0 - grid[tumour].flatten(1))).sum(1)
    return (outside / positive.sum(1).clamp_min(1e-6)).mean()


def outside_neutrality_loss(evidence: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """How far the per-position evidence ((n, classes, h, w) logits) outside a tumour image's mask is from
    favouring no class: at each position, the cross-entropy of its softmax against the uniform distribution
    minus its minimum ``log(classes)`` (0 when every class has the same evidence), averaged over the positions
    weighted by their share outside the mask (masks area-averaged to the grid), then over the items whose mask
    is known and not empty. Normal tissue beside a tumour must not speak for any class, so a class can only
    come from a tumour."""
    known, grid = masks_on_grid(masks, evidence.shape[-2:])
    tumour = with_tumour(known, grid)
    if not tumour.any():
        return evidence.sum() * 0.0
    per_position = neutrality(evidence[tumour].float())
    outside = 1.0 - grid[tumour]
    return ((per_position * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp_min(1e-6)).mean()


class _Objective:
    """The training loss: main cross-entropy (weighted, smoothed, or on mixup's soft targets) plus
    ``aux_weight`` times the auxiliary cross-entropy over items with a known auxiliary target, plus
    ``mask_weight`` times :func:`mask_loss` when the model has a segmentation head (items carry masks), plus
    ``evidence_weight`` times :func:`outside_evidence_loss` and ``neutral_weight`` times
    :func:`outside_neutrality_loss` when it returns per-position evidence.

    With mixup/cutmix both targets are mixed: the image pair's label and auxiliary target, each with the same
    ``lam``; pairs where either auxiliary target is unknown are left out of the auxiliary loss.
    """

    def __init__(self, config: TrainConfig, num_classes: int, aux_classes: int | None,
                 weights: torch.Tensor | None) -> None:
        self.config, self.num_classes, self.aux_classes = config, num_classes, aux_classes
        self.criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        self.mixup = None
        if config.mixing:
            # Mixing the joint index label * aux_classes + aux gives both targets' soft labels at once:
            # its smoothed one-hot summed over one target is that of the other (same lam, same pair).
            joint_classes = num_classes * (aux_classes or 1)
            self.mixup = Mixup(mixup_alpha=config.mixup_alpha, cutmix_alpha=config.cutmix_alpha,
                               label_smoothing=config.label_smoothing, num_classes=joint_classes)

    def __call__(self, model: nn.Module, batch: list[torch.Tensor], runtime: Runtime
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, main logits) of one training batch (``batch[0]`` may be mixed in place)."""
        x, y, *extra = batch
        aux_target = extra[0] if extra and self.aux_classes else None
        if self.mixup is None:
            with runtime.autocast():
                out = _outputs(model, x)
            logits, aux_logits = out["logits"], out.get("aux_logits")
            loss = self.criterion(logits, y)
            if "seg_logits" in out:
                loss = loss + self.config.mask_weight * mask_loss(out["seg_logits"], extra[1])
            if "evidence" in out:
                loss = loss + self.config.evidence_weight * outside_evidence_loss(out["evidence"], y, extra[1])
                loss = loss + self.config.neutral_weight * outside_neutrality_loss(out["evidence"], extra[1])
            if aux_target is not None:
                known = (aux_target >= 0).sum().clamp_min(1)
                aux_loss = F.cross_entropy(aux_logits, aux_target, ignore_index=-1, reduction="sum",
                                           label_smoothing=self.config.label_smoothing) / known
                loss = loss + self.config.aux_weight * aux_loss
            return loss, logits
        joint = y * (self.aux_classes or 1) + (aux_target.clamp_min(0) if aux_target is not None else 0)
        x, soft = self.mixup(x, joint)
        soft = soft.view(len(y), self.num_classes, self.aux_classes or 1)
        with runtime.autocast():
            out = _outputs(model, x)
        logits, aux_logits = out["logits"], out.get("aux_logits")
        loss = -(soft.sum(2) * F.log_softmax(logits, 1)).sum(1).mean()
        if aux_target is not None:
            pair_known = (aux_target >= 0) & (aux_target.flip(0) >= 0)
            aux_soft = soft.sum(1)[pair_known]
            aux_loss = -(aux_soft * F.log_softmax(aux_logits[pair_known], 1)).sum() / pair_known.sum().clamp_min(1)
            loss = loss + self.config.aux_weight * aux_loss
        return loss, logits


def _train_one_epoch(model: nn.Module, state: _TrainingState, loader: DataLoader, steps: int,
                     objective: _Objective, params: list[nn.Parameter], config: TrainConfig, runtime: Runtime,
                     dist_ctx: DistContext, size: int | None, desc: str, progress: bool) -> dict[str, float]:
    """One pass of ``model`` (``state.model``, or its DDP wrapper) over ``loader``, stepping ``state``."""
    optimizer, scheduler, scaler, ema = state.optimizer, state.scheduler, state.scaler, state.ema
    model.train()
    loss_sum, correct, seen, lr = 0.0, 0, 0, float("nan")
    for batch in _batches(loader, steps, runtime, desc, progress, size):
        y = batch[1]
        loss, logits = objective(model, batch, runtime)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} ({desc}); lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            norm = nn.utils.clip_grad_norm_(params, config.grad_clip)
            if not scaler.is_enabled() and not torch.isfinite(norm):  # fp16's scaler skips such steps itself
                raise FloatingPointError(
                    f"non-finite gradients ({desc}) under {runtime.describe()}; with bf16 on a CPU, tiny feature "
                    "maps can cause this (see hierarchy.training.runtime): train in fp32 with amp='off'")
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(_unwrap(model), step=scheduler.last_epoch)
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    loss_sum, correct, seen = dist_ctx.sum([loss_sum, correct, seen], runtime.device)
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen, "lr": lr}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@torch.inference_mode()
def _validate(model: nn.Module, loader: DataLoader, runtime: Runtime, dist_ctx: DistContext, desc: str,
              progress: bool) -> dict[str, float]:
    """Validation loss is the plain (unweighted, unsmoothed) cross-entropy: the held-out NLL.

    Each rank evaluates its shard; the shards are gathered, so every rank computes the same metrics.
    """
    model.eval()
    parts: list[tuple[np.ndarray, ...]] = []
    for x, y, *aux in _batches(loader, len(loader), runtime, desc, progress):
        with runtime.autocast():
            out = _outputs(model, x)
        logits, aux_logits = out["logits"], out.get("aux_logits")
        part = (F.cross_entropy(logits, y, reduction="none").cpu().numpy(), logits.argmax(1).cpu().numpy(),
                y.cpu().numpy())
        if aux_logits is not None:
            part += (F.cross_entropy(aux_logits, aux[0], ignore_index=-1, reduction="none").cpu().numpy(),
                     aux_logits.argmax(1).cpu().numpy(), aux[0].cpu().numpy())
        parts.append(part)
    gathered = [p for rank_parts in dist_ctx.gather(parts) for p in rank_parts]
    columns = [np.concatenate(column) for column in zip(*gathered, strict=True)]
    losses, pred, true = columns[:3]
    metrics = {"val_loss": float(losses.mean()), "val_accuracy": float(np.mean(pred == true)),
               "val_balanced_accuracy": float(balanced_accuracy_score(true, pred))}
    if len(columns) > 3:
        aux_losses, aux_pred, aux_true = columns[3:]
        known = aux_true >= 0
        metrics["val_aux_loss"] = float(aux_losses[known].mean()) if known.any() else float("nan")
        metrics["val_aux_accuracy"] = float(np.mean(aux_pred[known] == aux_true[known])) if known.any() else float("nan")
    return metrics


def _improved(metric: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return metric > best if mode == "max" else metric < best


def _append_logs(out_dir: Path, rows: list[dict[str, Any]], columns: tuple[str, ...], *,
                 rewrite: bool = False) -> None:
    csv_path, jsonl_path = out_dir / LOG_CSV, out_dir / LOG_JSONL
    write_header = rewrite or not csv_path.exists()
    mode = "w" if rewrite else "a"
    with open(csv_path, mode, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if write_header:
            writer.writeheader()
        writer.writerows(rows)
    with open(jsonl_path, mode) as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def _check_resumable(checkpoint: dict[str, Any], config: TrainConfig, data: dict[str, Any], world_size: int,
                     path: Path) -> None:
    # Settings added after the checkpoint was written take their defaults.
    saved, current = {**TrainConfig().to_dict(), **(checkpoint.get("config") or {})}, config.to_dict()
    diff = {k: (saved.get(k), current.get(k)) for k in sorted(saved.keys() | current.keys())
            if saved.get(k) != current.get(k)}
    if diff:
        raise ValueError(f"{path} was written with a different TrainConfig; (checkpoint, current) values "
                         f"differ in {diff}; use a new out_dir or the original settings")
    if checkpoint.get("data") != data:
        raise ValueError(f"{path} was trained on other data ({checkpoint.get('data')}) than this run "
                         f"({data}); use a new out_dir")
    if checkpoint.get("world_size", 1) != world_size:
        raise ValueError(f"{path} was written by {checkpoint.get('world_size', 1)} processes, this run has "
                         f"{world_size}; resume with the same number of processes")


def _check_inputs(train_dataset: Dataset, val_dataset: Dataset, config: TrainConfig, out_dir: Path, *,
                  resume: bool, world: int) -> None:
    """Refuse a used ``out_dir`` (unless resuming), empty datasets and batches the processes cannot split."""
    existing = [p.name for p in (out_dir / LAST_CHECKPOINT, out_dir / BEST_CHECKPOINT, out_dir / LOG_CSV,
                                 out_dir / LOG_JSONL) if p.exists()]
    if existing and not resume:
        raise FileExistsError(f"{out_dir} already holds a training run ({', '.join(existing)}); pass "
                              "resume=True to continue it, or choose another out_dir")
    if len(train_dataset) == 0 or len(val_dataset) == 0:
        raise ValueError(f"train and validation datasets must be non-empty, got {len(train_dataset)} "
                         f"and {len(val_dataset)} items")
    if config.batch_size % world or (world > 1 and len(train_dataset) < config.batch_size):
        raise ValueError(f"with {world} processes batch_size ({config.batch_size}) must be a multiple of {world} "
                         f"and at most the training set size ({len(train_dataset)})")
    if config.mixing and (config.batch_size // world) % 2:
        raise ValueError(f"mixup/cutmix needs an even batch per process, got {config.batch_size // world}")


@dataclass
class _TrainingState:
    """What a checkpoint carries between epochs: weights, EMA, optimiser, schedule, scaler, log rows, best epoch."""

    model: nn.Module
    ema: ModelEmaV3 | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None

    @classmethod
    def create(cls, model: nn.Module, config: TrainConfig, runtime: Runtime, steps: int) -> _TrainingState:
        """A fresh state for ``model``: AdamW, warm-up cosine schedule over ``steps`` per epoch, scaler, EMA."""
        optimizer = create_optimizer_v2(model, "adamw", lr=config.lr, weight_decay=config.weight_decay)
        scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=config.warmup_epochs * steps,
                                            total_steps=config.epochs * steps)
        scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
        ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True) if config.ema_decay is not None else None
        return cls(model, ema, optimizer, scheduler, scaler)

    @property
    def eval_model(self) -> nn.Module:
        """The model that is validated and checkpointed: the EMA's copy when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def restore(self, path: Path, config: TrainConfig, data: dict[str, Any], dist_ctx: DistContext) -> None:
        """Continue from checkpoint ``path`` (refused unless resumable), with this rank's saved RNG state."""
        checkpoint = load_checkpoint(path)
        _check_resumable(checkpoint, config, data, dist_ctx.world_size, path)
        self.model.load_state_dict(checkpoint.get("train_model", checkpoint["model"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        states = checkpoint["rng"] if isinstance(checkpoint["rng"], list) else [checkpoint["rng"]]
        set_rng_state(states[dist_ctx.rank])
        self.history, self.best_epoch, self.best_metric = (checkpoint["history"], checkpoint["best_epoch"],
                                                           checkpoint["best_metric"])

    def payload(self, epoch: int, steps: int, rng_states: list[dict[str, Any]], config: TrainConfig,
                data: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint written after ``epoch``, given every rank's RNG state in rank order (one per process)."""
        world = len(rng_states)
        payload = {"model": self.eval_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": epoch,
                   "step": epoch * steps, "rng": rng_states if world > 1 else rng_states[0],
                   "history": self.history, "best_epoch": self.best_epoch, "best_metric": self.best_metric,
                   "config": config.to_dict(), "data": data, "world_size": world}
        if self.ema is not None:
            payload["train_model"] = self.model.state_dict()
        return payload


def _loader(dataset: Dataset, sampler: torch.utils.data.Sampler, batch_size: int, drop_last: bool,
            config: TrainConfig, runtime: Runtime, generator: torch.Generator | None = None) -> DataLoader:
    workers = config.num_workers
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=workers,
                      pin_memory=runtime.device.type == "cuda", generator=generator)


def train(model: nn.Module, train_dataset: Dataset, val_dataset: Dataset, config: TrainConfig,
          out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          device: str | torch.device | None = None, data_key: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` (any timm-API classifier) on ``(x, y)`` items; the model ends with its best weights.

    AdamW (no decay on norms and biases), linear warm-up then per-step cosine decay, gradient clipping,
    optional label smoothing and inverse-frequency class weights, early stopping on ``config.monitor``, and
    the recipe switches of :class:`TrainConfig` (EMA, mixup/cutmix, progressive resizing).
    A :class:`~hierarchy.training.JointModel` trains on ``(x, y, aux)`` items instead (see :func:`train_joint`).
    Each epoch appends a row to ``out_dir/log.csv`` and ``log.jsonl`` and rewrites ``checkpoint_last.pt``
    (and ``checkpoint_best.pt`` when the monitored metric improved); a checkpoint's ``model`` holds the
    evaluated weights (the EMA's when ``ema_decay`` is set). ``resume=True`` continues from the last
    completed epoch and reproduces the uninterrupted run; without it an ``out_dir`` holding a run is refused.
    ``device`` defaults to CUDA when available (under ``torchrun``: this rank's ``LOCAL_RANK`` GPU).
    ``data_key`` (JSON values, e.g. the data fingerprints of the train and validation frames) is hashed into
    the checkpoint, and resuming with another one is refused; without it only the dataset sizes are checked.

    Under ``torchrun --nproc_per_node N`` the same call trains data-parallel (see
    :mod:`hierarchy.training.distributed`); rank 0 alone writes files.
    """
    runtime = resolve_runtime(config.amp, config.channels_last, device, training=True)
    dist_ctx = init_distributed(runtime.device)
    try:
        if dist_ctx.distributed and runtime.device.type == "cuda":
            runtime = Runtime(torch.device("cuda", dist_ctx.local_rank), runtime.amp_dtype, runtime.memory_format)
        return _train(model, train_dataset, val_dataset, config, Path(out_dir), resume=resume,
                      progress=progress and dist_ctx.is_main, runtime=runtime, dist_ctx=dist_ctx, data_key=data_key)
    finally:
        dist_ctx.close()


def _train(model: nn.Module, train_dataset: Dataset, val_dataset: Dataset, config: TrainConfig, out_dir: Path, *,
           resume: bool, progress: bool, runtime: Runtime, dist_ctx: DistContext,
           data_key: dict[str, Any] | None) -> TrainResult:
    """:func:`train` on this process's runtime and place in the job."""
    world = dist_ctx.world_size
    _check_inputs(train_dataset, val_dataset, config, out_dir, resume=resume, world=world)
    last_path, best_path = out_dir / LAST_CHECKPOINT, out_dir / BEST_CHECKPOINT
    seed_everything(config.seed + dist_ctx.rank)
    aux_classes = model.aux_classes if isinstance(model, JointModel) else None
    if aux_classes and len(train_dataset[0]) < 3:
        raise ValueError("joint training needs (x, label_index, aux_index) items; wrap the dataset in "
                         "AuxTargetDataset")
    if world > 1:  # BatchNorm statistics over every process: the result does not depend on their number
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    runtime.prepare(model)
    columns = LOG_COLUMNS + (AUX_LOG_COLUMNS if aux_classes else ())

    weights = (class_balanced_weights(dataset_targets(train_dataset), _num_classes(model)).to(runtime.device)
               if config.class_balanced else None)
    objective = _Objective(config, _num_classes(model), aux_classes, weights)
    drop_last = len(train_dataset) > config.batch_size  # a lone last item would break BatchNorm
    steps = len(train_dataset) // config.batch_size if drop_last else 1
    state = _TrainingState.create(model, config, runtime, steps)
    step_model: nn.Module = model
    if world > 1:
        step_model = DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    params = list(model.parameters())
    val_loader = _loader(val_dataset, ShardSampler(len(val_dataset), rank=dist_ctx.rank, world_size=world),
                         config.batch_size, False, config, runtime)
    sampler = EpochBatchShardSampler(len(train_dataset), config.batch_size, seed=config.seed, rank=dist_ctx.rank,
                                     world_size=world, drop_last=drop_last)
    data: dict[str, Any] = {"n_train": len(train_dataset), "n_val": len(val_dataset),
                            "key_sha256": feature_cache_key(**data_key) if data_key is not None else None}
    mode = MONITORS[config.monitor]

    if resume and last_path.exists():
        state.restore(last_path, config, data, dist_ctx)
        logger.info("resuming %s after epoch %d", out_dir, len(state.history))
    elif resume:
        logger.info("no %s in %s; starting a fresh run", LAST_CHECKPOINT, out_dir)
    dist_ctx.barrier()  # every rank has checked out_dir before rank 0 writes to it
    if dist_ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # drops rows of an epoch whose checkpoint was never written
        _append_logs(out_dir, state.history, columns, rewrite=True)

    patience = config.early_stopping_patience
    for epoch in range(len(state.history) + 1, config.epochs + 1):
        if patience is not None and len(state.history) - state.best_epoch >= patience:
            logger.info("early stopping: no %s improvement for %d epochs", config.monitor, patience)
            break
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        loader = _loader(train_dataset, sampler, config.batch_size // world, drop_last, config, runtime,
                         epoch_generator(config.seed, epoch, stream=dist_ctx.rank))
        row: dict[str, Any] = {"epoch": epoch}
        row |= _train_one_epoch(step_model, state, loader, steps, objective, params, config, runtime, dist_ctx,
                                config.image_size(epoch), f"epoch {epoch}/{config.epochs} train", progress)
        row |= _validate(state.eval_model, val_loader, runtime, dist_ctx, f"epoch {epoch}/{config.epochs} val",
                         progress)
        row["seconds"] = time.perf_counter() - started
        state.history.append({k: row[k] for k in columns})
        improved = _improved(row[config.monitor], state.best_metric, mode)
        if improved:
            state.best_epoch, state.best_metric = epoch, row[config.monitor]
        states = dist_ctx.gather(rng_state())
        if dist_ctx.is_main:
            payload = state.payload(epoch, steps, states, config, data)
            if improved:  # best before last: a crash in between leaves a last checkpoint that agrees with it
                save_checkpoint(best_path, payload)
            save_checkpoint(last_path, payload)
            _append_logs(out_dir, state.history[-1:], columns)
        dist_ctx.barrier()
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

    model.load_state_dict(load_checkpoint(best_path)["model"])
    return TrainResult(pd.DataFrame(state.history, columns=list(columns)), state.best_epoch,
                       float(state.best_metric), best_path, last_path)


def train_joint(model: nn.Module, train_dataset: Dataset, val_dataset: Dataset, config: TrainConfig,
                out_dir: str | Path, *, aux_classes: int, **kwargs: Any) -> JointTrainResult:
    """Train ``model`` on its label and an auxiliary target at once; ``model`` ends with its best weights.

    Items are ``(x, label_index, aux_index)`` (see :class:`~hierarchy.training.AuxTargetDataset`; -1: no
    auxiliary target, such items contribute the label loss only), with a fourth element, the tumour mask,
    when ``config.needs_masks``. The loss is ``label_loss + config.aux_weight * aux_loss`` (``+
    config.mask_weight * mask_loss + config.evidence_weight * outside_evidence_loss + config.neutral_weight *
    outside_neutrality_loss``); ``config.monitor`` watches the label; the log adds ``val_aux_loss`` and
    ``val_aux_accuracy``. The auxiliary head, an ``nn.Linear`` on ``model``'s pre-logit features, is
    returned in the result (use it with :func:`~hierarchy.training.attach_head` on a copy of ``model``).
    Checkpoints hold the :class:`~hierarchy.training.JointModel` (keys ``backbone.*`` and ``aux_head.*``).
    ``kwargs`` go to :func:`train`.
    """
    joint = JointModel(model, aux_classes, seed=config.seed, segmentation=config.mask_weight > 0,
                       evidence=config.needs_evidence)
    result = train(joint, train_dataset, val_dataset, config, out_dir, **kwargs)
    return JointTrainResult(**vars(result), aux_head=joint.aux_head)
