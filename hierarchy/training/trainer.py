"""End-to-end supervised training with early stopping, per-epoch logs and exactly reproducible resume."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hierarchy.training.checkpoint import load_checkpoint, save_checkpoint
from hierarchy.training.config import MONITORS, TrainConfig
from hierarchy.training.features import feature_cache_key
from hierarchy.training.losses import class_balanced_weights, dataset_targets
from hierarchy.training.schedule import warmup_cosine_scheduler
from hierarchy.training.seeding import epoch_generator, rng_state, seed_everything, set_rng_state

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
               "val_balanced_accuracy", "lr", "seconds")


@dataclass
class TrainResult:
    """What :func:`train` leaves behind; the model itself already holds the best epoch's weights."""

    history: pd.DataFrame
    best_epoch: int
    best_metric: float
    best_checkpoint: Path
    last_checkpoint: Path


@dataclass
class _Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format


def _runtime(config: TrainConfig, device: str | torch.device | None) -> _Runtime:
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if config.amp == "fp16" and not cuda:
        raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use 'bf16' or 'off'")
    if config.amp == "auto":
        amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    else:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[config.amp]
    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and cuda)
    return _Runtime(device, amp_dtype, torch.channels_last if channels_last else torch.contiguous_format)


def _num_classes(model: nn.Module) -> int:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        num_classes = getattr(model.get_classifier(), "out_features", None)
    if not num_classes:
        raise ValueError(f"cannot tell how many classes {type(model).__name__} predicts")
    return int(num_classes)


def _batches(loader: DataLoader, steps: int, runtime: _Runtime, desc: str,
             progress: bool) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in tqdm(islice(loader, steps), total=steps, desc=desc, disable=not progress, leave=False):
        yield (x.to(runtime.device, non_blocking=True, memory_format=runtime.memory_format),
               y.to(runtime.device, non_blocking=True))


def _train_one_epoch(model: nn.Module, loader: DataLoader, steps: int, criterion: nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                     scaler: torch.amp.GradScaler, config: TrainConfig, runtime: _Runtime,
                     desc: str, progress: bool) -> dict[str, float]:
    model.train()
    loss_sum, correct, seen, lr = 0.0, 0, 0, float("nan")
    for x, y in _batches(loader, steps, runtime, desc, progress):
        with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None):
            logits = model(x)
        loss = criterion(logits.float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} ({desc}); lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen, "lr": lr}


@torch.inference_mode()
def _validate(model: nn.Module, loader: DataLoader, runtime: _Runtime, desc: str,
              progress: bool) -> dict[str, float]:
    """Validation loss is the plain (unweighted, unsmoothed) cross-entropy: the held-out NLL."""
    model.eval()
    loss_sum, preds, targets = 0.0, [], []
    for x, y in _batches(loader, len(loader), runtime, desc, progress):
        with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
        targets.append(y.cpu())
    pred, true = torch.cat(preds).numpy(), torch.cat(targets).numpy()
    return {"val_loss": loss_sum / len(true), "val_accuracy": float(np.mean(pred == true)),
            "val_balanced_accuracy": float(balanced_accuracy_score(true, pred))}


def _improved(metric: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return metric > best if mode == "max" else metric < best


def _append_logs(out_dir: Path, rows: list[dict[str, Any]], *, rewrite: bool = False) -> None:
    csv_path, jsonl_path = out_dir / LOG_CSV, out_dir / LOG_JSONL
    write_header = rewrite or not csv_path.exists()
    mode = "w" if rewrite else "a"
    with open(csv_path, mode, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if write_header:
            writer.writeheader()
        writer.writerows(rows)
    with open(jsonl_path, mode) as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def _check_resumable(checkpoint: dict[str, Any], config: TrainConfig, data: dict[str, Any],
                     path: Path) -> None:
    saved, current = checkpoint.get("config") or {}, config.to_dict()
    diff = {k: (saved.get(k), current.get(k)) for k in sorted(saved.keys() | current.keys())
            if saved.get(k) != current.get(k)}
    if diff:
        raise ValueError(f"{path} was written with a different TrainConfig; (checkpoint, current) values "
                         f"differ in {diff}; use a new out_dir or the original settings")
    if checkpoint.get("data") != data:
        raise ValueError(f"{path} was trained on other data ({checkpoint.get('data')}) than this run "
                         f"({data}); use a new out_dir")


def train(model: nn.Module, train_dataset: Dataset, val_dataset: Dataset, config: TrainConfig,
          out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          device: str | torch.device | None = None, data_key: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` (any timm-API classifier) on ``(x, y)`` items; the model ends with its best weights.

    AdamW (no decay on norms and biases), linear warm-up then per-step cosine decay, gradient clipping,
    optional label smoothing and inverse-frequency class weights, early stopping on ``config.monitor``.
    Each epoch appends a row to ``out_dir/log.csv`` and ``log.jsonl`` and rewrites ``checkpoint_last.pt``
    (and ``checkpoint_best.pt`` when the monitored metric improved). ``resume=True`` continues from the last
    completed epoch and reproduces the uninterrupted run; without it an ``out_dir`` holding a run is refused.
    ``device`` defaults to CUDA when available. ``data_key`` (JSON values, e.g. the data fingerprints of the
    train and validation frames) is hashed into the checkpoint, and resuming with another one is refused;
    without it only the dataset sizes are checked.
    """
    out_dir = Path(out_dir)
    last_path, best_path = out_dir / LAST_CHECKPOINT, out_dir / BEST_CHECKPOINT
    existing = [p.name for p in (last_path, best_path, out_dir / LOG_CSV, out_dir / LOG_JSONL) if p.exists()]
    if existing and not resume:
        raise FileExistsError(f"{out_dir} already holds a training run ({', '.join(existing)}); pass "
                              "resume=True to continue it, or choose another out_dir")
    if len(train_dataset) == 0 or len(val_dataset) == 0:
        raise ValueError(f"train and validation datasets must be non-empty, got {len(train_dataset)} "
                         f"and {len(val_dataset)} items")
    runtime = _runtime(config, device)
    seed_everything(config.seed)
    model.to(runtime.device, memory_format=runtime.memory_format)

    weights = (class_balanced_weights(dataset_targets(train_dataset), _num_classes(model)).to(runtime.device)
               if config.class_balanced else None)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    drop_last = len(train_dataset) > config.batch_size  # a lone last item would break BatchNorm
    batches = len(train_dataset) // config.batch_size if drop_last else 1
    steps = min(batches, config.max_steps_per_epoch or batches)
    optimizer = create_optimizer_v2(model, "adamw", lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=config.warmup_epochs * steps,
                                        total_steps=config.epochs * steps)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    val_loader = DataLoader(val_dataset, batch_size=config.batch_size, shuffle=False,
                            num_workers=config.num_workers, pin_memory=runtime.device.type == "cuda")
    data: dict[str, Any] = {"n_train": len(train_dataset), "n_val": len(val_dataset),
                            "key_sha256": feature_cache_key(**data_key) if data_key is not None else None}
    mode = MONITORS[config.monitor]

    history: list[dict[str, Any]] = []
    best_epoch, best_metric = 0, None
    if resume and last_path.exists():
        checkpoint = load_checkpoint(last_path)
        _check_resumable(checkpoint, config, data, last_path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"])
        history, best_epoch, best_metric = checkpoint["history"], checkpoint["best_epoch"], checkpoint["best_metric"]
        logger.info("resuming %s after epoch %d", out_dir, len(history))
    elif resume:
        logger.info("no %s in %s; starting a fresh run", LAST_CHECKPOINT, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _append_logs(out_dir, history, rewrite=True)  # drops rows of an epoch whose checkpoint was never written

    patience = config.early_stopping_patience
    for epoch in range(len(history) + 1, config.epochs + 1):
        if patience is not None and len(history) - best_epoch >= patience:
            logger.info("early stopping: no %s improvement for %d epochs", config.monitor, patience)
            break
        started = time.perf_counter()
        loader = DataLoader(train_dataset, batch_size=config.batch_size, shuffle=True, drop_last=drop_last,
                            generator=epoch_generator(config.seed, epoch), num_workers=config.num_workers,
                            pin_memory=runtime.device.type == "cuda")
        row: dict[str, Any] = {"epoch": epoch}
        row |= _train_one_epoch(model, loader, steps, criterion, optimizer, scheduler, scaler, config,
                                runtime, f"epoch {epoch}/{config.epochs} train", progress)
        row |= _validate(model, val_loader, runtime, f"epoch {epoch}/{config.epochs} val", progress)
        row["seconds"] = time.perf_counter() - started
        history.append({k: row[k] for k in LOG_COLUMNS})
        improved = _improved(row[config.monitor], best_metric, mode)
        if improved:
            best_epoch, best_metric = epoch, row[config.monitor]
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                   "step": epoch * steps, "rng": rng_state(), "history": history, "best_epoch": best_epoch,
                   "best_metric": best_metric, "config": config.to_dict(), "data": data}
        if improved:  # best before last: a crash in between leaves a last checkpoint that agrees with it
            save_checkpoint(best_path, payload)
        save_checkpoint(last_path, payload)
        _append_logs(out_dir, history[-1:])
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

    model.load_state_dict(load_checkpoint(best_path)["model"])
    return TrainResult(pd.DataFrame(history, columns=list(LOG_COLUMNS)), best_epoch, float(best_metric),
                       best_path, last_path)
