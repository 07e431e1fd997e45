"""Images per second of the evaluation loader alone (224 px) on BRISC 2025.

Usage: python experiments/benchmark_loader.py BRISC_ROOT [--out reports/benchmarks/loader_speed.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from hierarchy.data import ImageDataset, PreprocessConfig, index_dataset, make_loader


def images_per_second(dataset: ImageDataset, num_workers: int) -> float:
    start = time.perf_counter()
    for _ in make_loader(dataset, batch_size=32, num_workers=num_workers):
        pass
    return len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/loader_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = index_dataset(args.root).sample(args.images, random_state=0)
    dataset = ImageDataset(frame, PreprocessConfig(image_size=224), target=None)
    lines = ["# Evaluation loader speed", "",
             f"{args.images} BRISC images, 224 px, batch 32, median of {args.runs} runs; "
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s) "
             "in the main process, machine shared with other work.", "",
             "| workers | images/s (median) | runs |", "|---|---|---|"]
    for workers in (0, 2):
        runs = [images_per_second(dataset, workers) for _ in range(args.runs)]
        lines.append(f"| {workers} | {statistics.median(runs):.0f} | {', '.join(f'{r:.0f}' for r in runs)} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
