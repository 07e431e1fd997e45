"""Training and inference speed of one backbone on the CPU per runtime option, and bf16-vs-fp32 agreement.

Options: fp32; fp32 + channels-last; bf16 autocast + channels-last (the CPU default where the CPU runs bf16
natively, see ``hierarchy.training.runtime``); the same under ``torch.compile``; and bf16 + channels-last at
a smaller image size (what progressive resizing's early epochs cost). Each number is images/s from the
median of ``--steps`` timed steps after ``--warmup`` untimed ones, on a fixed random batch (model alone):
training = autocast forward + cross-entropy + backward + gradient clipping + AdamW step (the trainer's
step); inference = ``trunk_features`` + ``head_proba`` (the routing path). ``--data`` adds the decode cost:
training images/s through the augmenting ``ImageDataset`` pipeline per number of DataLoader workers
(``--workers``), and with its in-memory cache when ``hierarchy.data`` offers one. ``--agreement-images``
fits a linear head on fp32 features of BRISC training images and compares fp32 with bf16 + channels-last
predictions on that many test images (argmax agreement, largest probability difference, accuracy of each; no choice is tuned on them).
``--router DIR`` compares the two on a trained Router instead, every route, on the first
``--agreement-images`` test images: agreement, accuracy and ECE under each (the bar for making bf16 the CPU
default is 99.5% agreement with accuracy and calibration unchanged).

    python experiments/benchmark_training_speed.py --data ../shared/data/brisc2025 --steps 6
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from hierarchy.data import ImageDataset, index_dataset
from hierarchy.data.preprocess import PreprocessConfig
from hierarchy.labels import TUMOR_CLASSES
from hierarchy.logs import configure_logging
from hierarchy.metrics import expected_calibration_error
from hierarchy.metrics.evaluate import labels_and_probabilities
from hierarchy.models import create
from hierarchy.provenance import command_line, software_versions
from hierarchy.routing import Router
from hierarchy.routing.trunk import head_proba, trunk_features
from hierarchy.training import fit_linear_head
from hierarchy.training.runtime import AMP_ENV, Runtime, cpu_has_fast_bf16, resolve_runtime

NUM_CLASSES = 4
# name -> (amp, channels_last, compile, image size or None for --image-size)
OPTIONS = {
    "fp32": ("off", "off", False, None),
    "fp32 + channels_last": ("off", "on", False, None),
    "bf16 + channels_last": ("bf16", "on", False, None),
    "bf16 + channels_last + compile": ("bf16", "on", True, None),
    "bf16 + channels_last at 160 px": ("bf16", "on", False, 160),
}


def _median_rate(step: Callable[[], None], batch_size: int, steps: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    rates = [batch_size / t for t in times]
    return batch_size / statistics.median(times), rates


def _train_step(model: nn.Module, runtime: Runtime, compiled: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The trainer's step on one batch (already on the runtime's device and layout)."""
    model.train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with runtime.autocast():
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


def _infer_step(model: nn.Module, runtime: Runtime, compiled: bool, x: torch.Tensor) -> Callable[[], None]:
    model.eval()
    if compiled:  # trunk_features calls these two, so compile them (instance attributes shadow the methods)
        model.forward_features = torch.compile(model.forward_features)
        model.forward_head = torch.compile(model.forward_head)
    return lambda: head_proba(model, trunk_features(model, x, runtime=runtime))


def speed_rows(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in args.options:
        amp, channels_last, compiled, size = OPTIONS[name]
        size = size or args.image_size
        runtime = resolve_runtime(amp, channels_last, "cpu")
        torch.manual_seed(0)
        x = torch.randn(args.batch_size, 1, size, size)
        y = torch.randint(0, NUM_CLASSES, (args.batch_size,))
        row = {"option": name, "image_size": size}
        for mode in ("inference", "training"):
            model = runtime.prepare(create(args.model, NUM_CLASSES))
            if mode == "training":
                train_step, batch = _train_step(model, runtime, compiled), runtime.batch(x)
                step = lambda: train_step(batch, y)  # noqa: E731, B023 (used within this iteration)
            else:
                step = _infer_step(model, runtime, compiled, x)
            warmup = args.warmup + (2 if compiled else 0)  # compilation happens in the first calls
            row[mode], runs = _median_rate(step, args.batch_size, args.steps, warmup)
            logging.info("%s %s: %.1f images/s (runs %s)", name, mode, row[mode], ", ".join(f"{r:.1f}" for r in runs))
        rows.append(row)
    return rows


def _has_image_cache() -> bool:
    return "cache" in inspect.signature(ImageDataset).parameters


def loading_rows(args: argparse.Namespace, frame) -> list[dict]:
    """Training images/s (bf16 + channels-last) with decoding and augmentation in the loop: per number of
    DataLoader workers, and with the in-memory cache (in-process; a worker's cache would die with it)."""
    runtime = resolve_runtime("bf16", "on", "cpu")
    rows_frame = frame[frame["split"] == "train"].head(args.batch_size * (args.steps + args.warmup)).reset_index(drop=True)
    preprocess = PreprocessConfig(image_size=args.image_size)
    settings = {f"decode every epoch, {w} DataLoader worker(s)": ({}, w) for w in args.workers}
    if _has_image_cache():
        settings["in-memory cache (second epoch), 0 DataLoader workers"] = ({"cache": True}, 0)
    rows = []
    for name, (kwargs, workers) in settings.items():
        dataset = ImageDataset(rows_frame, preprocess, classes=TUMOR_CLASSES, train=True, **kwargs)
        if kwargs:  # fill the cache with one pass, as the first epoch would
            for i in range(len(dataset)):
                dataset[i]
        model = runtime.prepare(create(args.model, NUM_CLASSES))
        loader = iter(DataLoader(dataset, batch_size=args.batch_size, num_workers=workers))
        train_step = _train_step(model, runtime, False)

        def step() -> None:
            images, labels = next(loader)  # noqa: B023 (used within this iteration)
            train_step(runtime.batch(images), labels)  # noqa: B023
        rate, _ = _median_rate(step, args.batch_size, args.steps, args.warmup)
        rows.append({"option": f"bf16 + channels_last, data loading included, {name}", "training": rate})
        logging.info("%s: %.1f images/s", name, rate)
    return rows


def agreement(args: argparse.Namespace, frame) -> dict:
    """fp32 vs bf16 + channels-last on test images, through a linear head fitted on training images."""
    preprocess = PreprocessConfig(image_size=args.image_size)
    model = create(args.model, NUM_CLASSES, weights="imagenet").eval()
    fp32 = resolve_runtime("off", "off", "cpu")
    bf16 = resolve_runtime("bf16", "on", "cpu")
    rng = np.random.default_rng(0)

    def features(split: str, n: int, runtime: Runtime) -> tuple[np.ndarray, np.ndarray]:
        rows = frame[frame["split"] == split]
        rows = rows.iloc[np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))] if split == "train" \
            else rows.iloc[:n]
        dataset = ImageDataset(rows.reset_index(drop=True), preprocess, classes=TUMOR_CLASSES)
        parts = [trunk_features(model, x, runtime=runtime) for x, _ in DataLoader(dataset, batch_size=args.batch_size)]
        return torch.cat(parts).numpy(), dataset.targets

    train_x, train_y = features("train", args.head_images, fp32)
    head = fit_linear_head(train_x, train_y, NUM_CLASSES)
    model.reset_classifier(NUM_CLASSES)
    model.get_classifier().load_state_dict(head.state_dict())
    test32, y = features("test", args.agreement_images, fp32)
    test16, _ = features("test", args.agreement_images, bf16)
    p32 = head_proba(model, torch.from_numpy(test32))
    p16 = head_proba(model, torch.from_numpy(test16))
    return {"n": len(y), "agreement": float(np.mean(p32.argmax(1) == p16.argmax(1))),
            "max_prob_diff": float(np.abs(p32 - p16).max()), "accuracy_fp32": float(np.mean(p32.argmax(1) == y)),
            "accuracy_bf16": float(np.mean(p16.argmax(1) == y)), "head_images": len(train_y)}


def router_agreement(args: argparse.Namespace, frame) -> dict:
    """fp32 vs bf16 autocast (channels-last both) predictions of a trained Router, per route, on test images."""
    router = Router.load(args.router)
    rows = frame[frame["split"] == "test"].iloc[:args.agreement_images].reset_index(drop=True)
    tables, seconds = {}, {}
    saved = os.environ.get(AMP_ENV)
    try:
        for amp in ("off", "bf16"):
            os.environ[AMP_ENV] = amp
            start = time.perf_counter()
            tables[amp] = router.predict_routes(rows)
            seconds[amp] = time.perf_counter() - start
    finally:
        if saved is None:
            del os.environ[AMP_ENV]
        else:
            os.environ[AMP_ENV] = saved
    result = {"n": len(rows), "seconds": seconds, "routes": {}}
    for route in dict.fromkeys(tables["off"]["route"]):
        (y, p32), (_, p16) = (labels_and_probabilities(t[t["route"] == route], router.classes_)
                              for t in (tables["off"], tables["bf16"]))
        result["routes"][route] = {
            "agreement": float(np.mean(p32.argmax(1) == p16.argmax(1))), "max_prob_diff": float(np.abs(p32 - p16).max()),
            "accuracy_fp32": float(np.mean(p32.argmax(1) == y)), "accuracy_bf16": float(np.mean(p16.argmax(1) == y)),
            "ece_fp32": expected_calibration_error(y, p32), "ece_bf16": expected_calibration_error(y, p16)}
    return result


def _router_markdown(args: argparse.Namespace, agree: dict) -> list[str]:
    lines = ["", "## bf16 + channels-last against fp32 on a trained Router", "",
             f"Router `{args.router.name}` (its `router.json` records the training run), first {agree['n']} BRISC "
             f"test images, every route; prediction time {agree['seconds']['off']:.0f} s in fp32 and "
             f"{agree['seconds']['bf16']:.0f} s in bf16 (decoding included). Both run channels-last.", "",
             "| route | predictions agreeing | largest probability difference | accuracy fp32 | accuracy bf16 "
             "| ECE fp32 | ECE bf16 |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {route} | {r['agreement']:.2%} | {r['max_prob_diff']:.4f} | {r['accuracy_fp32']:.2%} | "
              f"{r['accuracy_bf16']:.2%} | {r['ece_fp32']:.4f} | {r['ece_bf16']:.4f} |"
              for route, r in agree["routes"].items()]
    return lines


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}; {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads; "
            f"oneDNN bf16: {cpu_has_fast_bf16()}; CPU capability {torch.backends.cpu.get_cpu_capability()}")


def markdown(args: argparse.Namespace, speed: list[dict], loading: list[dict], agree: dict | None) -> str:
    versions = software_versions()
    lines = [
        "# Training and inference speed on the CPU (runtime options)", "",
        f"`{args.model}`, {args.image_size} px, batch {args.batch_size}, 1 channel; images/s from the median of "
        f"{args.steps} timed steps after {args.warmup} warm-up step(s) on a fixed random batch (model alone, "
        "no data loading) unless the row says otherwise.", "",
        "    " + command_line(["PYTHONPATH=.", "python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "",
        f"- machine: {_machine()}",
        f"- software: torch {versions.get('torch')}, timm {versions.get('timm')}, Python {platform.python_version()}",
        f"- measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average when it started "
        f"{args.load_before:.2f} (1 minute; above about 0.5 on these cores means other jobs were running and "
        "absolute numbers are noisy: compare rows of one run only)", "",
        "| option | image size | inference images/s | training images/s |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['option']} | {r['image_size']} | {r['inference']:.1f} | {r['training']:.1f} |" for r in speed]
    if loading:
        lines += ["", "| data loading | training images/s |", "|---|---:|"]
        lines += [f"| {r['option']} | {r['training']:.1f} |" for r in loading]
        if not _has_image_cache():
            lines += ["", "`hierarchy.data.ImageDataset` has no in-memory cache in this checkout; not measured."]
    if agree is not None and "routes" in agree:
        lines += _router_markdown(args, agree)
    elif agree is not None:
        lines += ["", "## bf16 + channels-last against fp32", "",
                  f"Pretrained `{args.model}` trunk, linear head fitted on fp32 features of {agree['head_images']} "
                  f"BRISC training images, first {agree['n']} BRISC test images:", "",
                  "| predictions agreeing | largest probability difference | accuracy fp32 | accuracy bf16 |",
                  "|---:|---:|---:|---:|",
                  f"| {agree['agreement']:.2%} | {agree['max_prob_diff']:.4f} | {agree['accuracy_fp32']:.2%} | "
                  f"{agree['accuracy_bf16']:.2%} |", "",
                  "A head on frozen ImageNet features from few images is weak (many images near a decision "
                  "boundary), the hard case for agreement; fine-tuned models are compared on the full test split "
                  "by the experiment."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--data", type=Path, help="BRISC 2025 root: adds data-loading rows and the agreement check")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to compare")
    parser.add_argument("--agreement-images", type=int, default=200)
    parser.add_argument("--head-images", type=int, default=400)
    parser.add_argument("--router", type=Path, help="a saved Router: check bf16 agreement on it (needs --data)")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/training_speed.md"))
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    configure_logging(fmt="%(message)s")
    speed = speed_rows(args)
    loading, agree = [], None
    if args.data is not None:
        frame = index_dataset(args.data)
        loading = loading_rows(args, frame)
        if args.agreement_images:
            agree = router_agreement(args, frame) if args.router else agreement(args, frame)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(args, speed, loading, agree))
    logging.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
