"""Images per second of each route, decoding and preprocessing included, at 224 px on CPU.

Setups (weights are random: speed does not depend on their values):

- ``separate``: plane model, experts and flat model each with their own weights, as after fine-tuning
  (hard routing runs the plane model, then only the chosen expert on each image);
- ``shared``: every component on the flat model's trunk (``mode="shared"``, or ``"frozen"`` on one
  pretrained backbone): one trunk pass per image, then the linear heads;
- ``default``: the library defaults, a lite0 hierarchy against an inception_resnet_v2 flat model.

Each number is the median of ``--runs`` timed runs over ``--images`` BRISC test images (one warm-up run
first). Writes ``reports/benchmarks/routing_speed.md``.

    python experiments/benchmark_routing.py BRISC_ROOT [--images 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

import torch

from hierarchy.data import PreprocessConfig, index_dataset
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line
from hierarchy.routing import ImageClassifier, Router, Task, route_throughput
from hierarchy.training import TrainConfig, resolve_runtime

SETUPS = {  # name: (plane backbone, expert backbone, flat backbone, one shared trunk?)
    "separate": ("tf_efficientnet_lite0", "tf_efficientnet_lite0", "tf_efficientnet_lite0", False),
    "shared": ("tf_efficientnet_lite0", "tf_efficientnet_lite0", "tf_efficientnet_lite0", True),
    "default": ("tf_efficientnet_lite0", "tf_efficientnet_lite0", "inception_resnet_v2", False),
}
ROUTES = ("flat", "hierarchical", "soft", "ensemble")


def untrained_router(plane: str, expert: str, flat: str, shared: bool) -> Router:
    """A Router whose components hold freshly built networks; with ``shared`` the plane model and the
    experts take the flat model's trunk (as ``Router(mode="shared").fit`` does)."""
    preprocess = PreprocessConfig(image_size=224)
    flat_model = ImageClassifier(flat, Task("label", TUMOR_CLASSES), weights=None, preprocess=preprocess,
                                 train_config=TrainConfig(seed=5))
    flat_model.model_ = flat_model.build_model().eval()
    source = {"init_from": flat_model} if shared else {}
    plane_model = ImageClassifier(plane, Task("plane", PLANES), weights=None, preprocess=preprocess,
                                  train_config=TrainConfig(seed=1), **source)
    experts = {p: ImageClassifier(expert, Task("label", TUMOR_CLASSES, column="plane", value=p), weights=None,
                                  preprocess=preprocess, train_config=TrainConfig(seed=2 + i), **source)
               for i, p in enumerate(PLANES)}
    for component in (plane_model, *experts.values()):
        component.model_ = component.build_model().eval()
    router = Router(plane=plane, experts=expert, flat=flat)
    router._set_fitted(TUMOR_CLASSES, PLANES, plane_model, experts, flat_model)  # untrained: timing only
    router.ensemble_weight_ = 0.5
    return router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--setups", nargs="+", choices=sorted(SETUPS), default=list(SETUPS))
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES),
                        help="routes to time (flat and hierarchical are always timed)")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/routing_speed.md"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    routes = [r for r in ROUTES if r in {"flat", "hierarchical", *args.routes}]
    configure_logging(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    frame = index_dataset(args.root)
    paths = frame[frame["split"] == "test"].sample(args.images, random_state=0)["path"].tolist()
    lines = ["# Routing speed", "",
             f"{args.images} BRISC 2025 test images, decoded and preprocessed to 224 px inside the timing, "
             f"batch 32, median of {args.runs} runs after a warm-up; {platform.machine()} CPU, "
             f"{args.threads} torch threads, runtime {resolve_runtime(device='cpu').describe()} (the library "
             f"default here), load average {load_before:.2f} when it started (above about 0.5 on 2 cores: other "
             "jobs were running). Random weights (speed does not depend on them).", "",
             "    " + command_line(["PYTHONPATH=.", "python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "",
             "| setup | plane / expert / flat | shared trunk | " + " | ".join(routes) + " | hard / flat time |",
             "|---|---|---|" + "---|" * len(routes) + "---|"]
    for name in args.setups:
        plane, expert, flat, shared = SETUPS[name]
        router = untrained_router(plane, expert, flat, shared)
        speeds = route_throughput(router, paths, routes, repeats=args.runs)
        print(name, ", ".join(f"{r} {v:.1f} img/s" for r, v in speeds.items()), flush=True)
        ratio = speeds["flat"] / speeds["hierarchical"]
        lines.append(f"| {name} | {plane} / {expert} / {flat} | {'yes' if len(set(router._trunks.values())) == 1 else 'no'} | "
                     + " | ".join(f"{speeds[r]:.1f}" for r in routes) + f" | {ratio:.2f}x |")
    lines += ["", "Columns under the routes are images/s. \"hard / flat time\" is the time of the hierarchical "
              "(hard) route divided by the flat route's time on the same images."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
