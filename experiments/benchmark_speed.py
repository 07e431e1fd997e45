"""Images per second of each backbone for inference and training, with and without data loading.

"excluded": the model alone on a pre-made random batch. "included": JPEG/PNG files from ``--data``
decoded and preprocessed by ``hierarchy.data`` (the training pipeline, augmentation included, for
training) through a DataLoader. Inference runs in eval mode without gradients; training is
forward + backward + AdamW step. Each number is the median over ``--repeats`` runs of ``--batches``
timed batches after one warm-up batch. Writes ``reports/benchmarks/speed_<device>.md`` and ``.csv``.

    python experiments/benchmark_speed.py --data /path/to/brisc2025/classification_task/train \
        --models tf_efficientnet_lite0 resnet50 --batch-size 16 --batches 4
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hierarchy.data.preprocess import PreprocessConfig, eval_transform, train_transform
from hierarchy.logs import configure_logging
from hierarchy.models import build_architecture
from hierarchy.provenance import software_versions

DEFAULT_MODELS = ("tf_efficientnet_lite0", "resnet50", "inception_resnet_v2", "simple_cnn")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
NUM_CLASSES = 4


class ImageFiles(Dataset):
    """Image files through a preprocessing transform, with a dummy label (speed only)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Path], torch.Tensor]) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.paths[index]), index % NUM_CLASSES


def image_paths(folder: Path, count: int) -> list[Path]:
    """The first ``count`` images under ``folder`` (sorted, recursive), cycling if there are fewer."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return [paths[i % len(paths)] for i in range(count)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: nn.Module, training: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    if not training:
        model.eval()

        def infer(images: torch.Tensor, labels: torch.Tensor) -> None:
            with torch.no_grad():
                model(images)
        return infer

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
    return train_step


def time_batches(step: Callable, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], n_batches: int,
                 device: torch.device) -> float:
    """Images/s over ``n_batches`` batches after one untimed warm-up batch (fetching included)."""
    images, labels = next(batches)
    step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
    _sync(device)
    n_images, start = 0, time.perf_counter()
    for _ in range(n_batches):
        images, labels = next(batches)
        step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        n_images += len(images)
    _sync(device)
    return n_images / (time.perf_counter() - start)


def _repeat_batch(images: torch.Tensor, labels: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield images, labels


def benchmark_model(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """One row per (mode, data) for backbone ``name``."""
    model = build_architecture(name, NUM_CLASSES, in_chans=1).to(device)
    preprocess = PreprocessConfig(image_size=args.image_size)
    rows = []
    for mode in ("inference", "training"):
        step = _step_fn(model, training=mode == "training")
        settings = {"excluded": None}
        if args.data is not None:
            settings["included"] = (train_transform if mode == "training" else eval_transform)(preprocess)
        for data, transform in settings.items():
            runs = []
            for _ in range(args.repeats):
                if transform is None:
                    images = torch.randn(args.batch_size, 1, args.image_size, args.image_size)
                    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,))
                    batches = _repeat_batch(images, labels)
                else:
                    files = ImageFiles(image_paths(args.data, (args.batches + 1) * args.batch_size), transform)
                    batches = iter(DataLoader(files, batch_size=args.batch_size, num_workers=args.workers,
                                              pin_memory=device.type == "cuda"))
                runs.append(time_batches(step, batches, args.batches, device))
            rows.append({"model": name, "mode": mode, "data": data,
                         "images_per_s": round(statistics.median(runs), 2),
                         "runs": ";".join(f"{r:.2f}" for r in runs),
                         "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)})
            logging.info("%s %s (data %s): %.2f images/s", name, mode, data, rows[-1]["images_per_s"])
    return rows


def _markdown(frame: pd.DataFrame, args: argparse.Namespace, device: torch.device) -> str:
    table = frame.pivot_table(index=["model", "params_m"], columns=["mode", "data"], values="images_per_s",
                              sort=False)
    columns = [f"{mode} {data} data loading" for mode, data in table.columns]
    lines = ["| model | params (M) | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for (model, params), values in table.iterrows():
        lines.append(f"| {model} | {params} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    versions = software_versions()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    return "\n".join([
        f"# Speed benchmark ({device.type})", "",
        f"Images per second, median of {args.repeats} runs of {args.batches} batches of {args.batch_size} "
        f"images ({args.image_size} px, 1 channel), after one warm-up batch.", "",
        f"- device: {device_name}",
        f"- data loading included: {args.data.name if args.data else 'not measured (no --data)'}, "
        f"DataLoader with {args.workers} worker(s); training uses the augmenting pipeline",
        f"- software: torch {versions['torch']}, timm {versions['timm']}, Python {versions['python']}",
        f"- measured {datetime.now(timezone.utc).date().isoformat()}" + (f"; {args.note}" if args.note else ""),
        "", *lines, "",
    ])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--data", type=Path, help="folder of JPEG/PNG images for the 'included' columns")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for data loading")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "reports" / "benchmarks")
    parser.add_argument("--note", default="", help="free text for the table, e.g. what else ran on the machine")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(fmt="%(message)s")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    csv_path, md_path = args.out / f"speed_{device.type}.csv", args.out / f"speed_{device.type}.md"
    existing = [str(p) for p in (csv_path, md_path) if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --overwrite to replace them")
    if args.data is not None and not args.data.is_dir():
        raise FileNotFoundError(f"--data {args.data} is not a folder")
    torch.manual_seed(0)
    rows = [row for name in args.models for row in benchmark_model(name, args, device)]
    frame = pd.DataFrame(rows).assign(device=device.type, image_size=args.image_size, batch_size=args.batch_size,
                                      batches=args.batches, repeats=args.repeats, workers=args.workers,
                                      threads=torch.get_num_threads())
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    md_path.write_text(_markdown(frame, args, device))
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
