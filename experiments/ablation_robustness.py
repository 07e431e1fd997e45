"""Ablation of the domain-robust recipe: what each part does on BRISC, an external set and re-encodings.

    python experiments/ablation_robustness.py --data ../shared/data/brisc2025 \
        --external ../shared/data/figshare_br35h --out reports/benchmarks/robustness_ablation

Every arm is a frozen-feature Router (EfficientNet-Lite0 with offline ImageNet weights, linear heads)
trained on the same BRISC training rows, differing only in its preprocessing, augmentation and number of
augmented feature views. The arm is *chosen* on BRISC validation rows alone
(``hierarchy.experiment.ablation.selection_score``); test, external and perturbation columns are reported
for every arm but never used to choose. Re-running with the same ``--out`` skips finished arms.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hierarchy.data import PreprocessConfig
from hierarchy.experiment.ablation import Arm, run_study
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line
from hierarchy.routing import RouterConfig
from hierarchy.training import TrainConfig

ARMS = {arm.name: arm for arm in (
    Arm("light", "previous recipe: light augmentation, per-image intensity scaling", {"preprocess.augment": "light"}),
    Arm("robust", "+ scanner/archive shifts, intensity remapping, dihedral flips", {"preprocess.augment": "robust"}),
    Arm("robust_head", "+ intensity percentiles inside the head mask",
        {"preprocess.augment": "robust", "preprocess.intensity_scaling": "head"}),
    Arm("robust_head_clahe", "+ CLAHE", {"preprocess.augment": "robust", "preprocess.intensity_scaling": "head",
                                         "preprocess.clahe": True}),
    Arm("robust_head_views4", "robust_head with 4 feature views instead of 2",
        {"preprocess.augment": "robust", "preprocess.intensity_scaling": "head", "feature_views": 4}),
)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (train split used; test only evaluated)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT", help="external test set")
    parser.add_argument("--out", required=True, help="folder for ablation.md/json; work/ inside is git-ignored")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    configure_logging()
    base = RouterConfig(mode="frozen", feature_views=2, preprocess=PreprocessConfig(image_size=args.image_size),
                        train=TrainConfig(seed=0))
    setup = (f"Frozen EfficientNet-Lite0 (offline ImageNet weights), linear heads, {args.image_size} px, one seed; "
             f"every arm trained on the same {Path(args.data).name} training rows.")
    print(run_study(base, ARMS, args.arms, data=args.data, externals=args.external, out=Path(args.out),
                    settings={"arms": args.arms, "image_size": args.image_size},
                    command=command_line(["python", "experiments/ablation_robustness.py",
                                      *(sys.argv[1:] if argv is None else argv)]),
                    title="Domain-robust recipe: ablation", setup=setup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
