"""Per-image cost of the train/eval transforms, and loader speed with and without the decode-once cache.

Writes the section "Augmentation cost and decode-once cache" to
reports/benchmarks/augment_speed.md.

Usage: python experiments/benchmark_augment.py BRISC_ROOT [--images 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from hierarchy.data import (
    ImageDataset,
    PreprocessConfig,
    index_dataset,
    make_loader,
    train_transform,
)

SECTION = "## Augmentation cost and decode-once cache"
TRANSFORMS = {
    "eval (no augmentation)": dict(augment="none"),
    "train, light preset": dict(augment="light"),
    "train, robust preset": dict(augment="robust"),
    "train, robust + head percentiles + CLAHE": dict(augment="robust", intensity_scaling="head", clahe=True),
}


def _median_ms(seconds: list[float], n: int) -> str:
    return f"{1000 * statistics.median(seconds) / n:.1f}"


def transform_costs(paths: list[str], runs: int) -> list[str]:
    """Milliseconds per image of decode (decode+crop) and finish (the rest) for each transform."""
    rows = ["| transform | decode + crop, ms/img | augment + standardise + resize, ms/img | total |",
            "|---|---|---|---|"]
    for name, settings in TRANSFORMS.items():
        transform = train_transform(PreprocessConfig(image_size=224, **settings), "axial")
        decode, finish = [], []
        for _ in range(runs):
            start = time.perf_counter()
            bases = [transform.decode(p) for p in paths]
            decode.append(time.perf_counter() - start)
            start = time.perf_counter()
            for i, base in enumerate(bases):
                transform.finish(base, seed=i)
            finish.append(time.perf_counter() - start)
        total = [d + f for d, f in zip(decode, finish, strict=True)]
        rows.append(f"| {name} | {_median_ms(decode, len(paths))} | {_median_ms(finish, len(paths))} | "
                    f"{_median_ms(total, len(paths))} |")
    return rows


def epoch_rates(frame, runs: int) -> list[str]:
    """Images/s of one loader epoch (batch 32), without and with the cache."""
    rows = ["| pipeline | workers | cache | images/s (median) | runs |", "|---|---|---|---|---|"]
    for name, train, augment, workers in (("eval", False, "none", 0), ("train, light", True, "light", 0),
                                          ("train, robust", True, "robust", 0),
                                          ("train, robust", True, "robust", 2)):
        cfg = PreprocessConfig(image_size=224, augment=augment)
        for cache in (False, True):
            dataset = ImageDataset(frame, cfg, target=None, train=train, seed=0, cache=cache)
            if cache:
                start = time.perf_counter()
                dataset.prefill()
                prefill = len(frame) / (time.perf_counter() - start)
            rates = []
            for epoch in range(runs):
                dataset.set_epoch(epoch)
                start = time.perf_counter()
                for _ in make_loader(dataset, 32, num_workers=workers):
                    pass
                rates.append(len(frame) / (time.perf_counter() - start))
            label = f"on (filled at {prefill:.0f} img/s)" if cache else "off"
            rows.append(f"| {name} | {workers} | {label} | {statistics.median(rates):.0f} | "
                        f"{', '.join(f'{r:.0f}' for r in rates)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/augment_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = index_dataset(args.root)
    frame = frame[frame.split == "train"].sample(args.images, random_state=0)
    lines = [SECTION, "",
             f"{args.images} BRISC 2025 train images, 224 px, median of {args.runs} runs, "
             f"1 torch thread per process; {platform.processor() or platform.machine()}. The 2-core machine was shared "
             "with other developers' jobs while this ran, so treat the figures as rough.", "",
             "Per image (`Preprocess.decode` is what the cache stores; `Preprocess.finish` runs every epoch):", "",
             *transform_costs(list(frame.path), args.runs), "",
             "One epoch through `make_loader` (batch 32). With the cache, `prefill()` decodes every image "
             "once first, in the main process; the epochs then only run `finish`. With workers, the "
             "prefilled cache reaches them by fork (copy-on-write, nothing pickled); without prefilling, "
             "each worker would fill its own cache and lose it when the epoch's workers exit:", "",
             *epoch_rates(frame, args.runs), ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
