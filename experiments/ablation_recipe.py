"""Ablation of the fine-tuning recipe of the ``cpu`` profile: what each choice buys, chosen on BRISC validation.

    python experiments/ablation_recipe.py --data ../shared/data/brisc2025 \
        --external ../shared/data/figshare_br35h --out reports/benchmarks/recipe_ablation

Every arm is the profile's Router (by default ``cpu``: EfficientNet-Lite0 trained jointly on the tumour label
and the plane) with one group of settings changed: resolution, epochs, learning rate, EMA of weights, label
smoothing, mixup/cutmix, progressive resizing, augmentation preset, test-time augmentation or bf16 autocast; one arm,
``plain``, changes several at once (light augmentation, 192 px, 3 epochs). All arms train
on the same BRISC training rows with seed 0; one is *chosen* on BRISC validation rows alone
(``hierarchy.experiment.ablation.selection_score``), and test, perturbed and external columns are reported
for every arm but never used to choose. ``--set`` changes the base of every arm (``--set
router.train.num_workers=8`` on a GPU machine). Re-running with the same ``--out`` skips finished arms and
resumes an interrupted one. Each arm fine-tunes a network: about 25 minutes on 2 CPU cores, a few on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hierarchy.experiment.ablation import run_study
from hierarchy.experiment.profiles import PROFILES
from hierarchy.experiment.recipe_arms import ARMS, profile_router, study_setup
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (train split used; test only evaluated)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT", help="external test set")
    parser.add_argument("--out", required=True, help="folder for ablation.md/json; work/ inside is git-ignored")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="the base of every arm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="experiment setting for every arm (router.train.num_workers=8); repeatable")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv)
    configure_logging()
    base = profile_router(args.profile, args.overrides)
    setup = study_setup(args.profile, base, args.overrides, args.data)
    print(run_study(base, ARMS, args.arms, data=args.data, externals=args.external, out=Path(args.out),
                    settings={"profile": args.profile, "base": base.to_dict(), "arms": args.arms},
                    command=command_line(["python", "experiments/ablation_recipe.py", *(sys.argv[1:] if argv is None else argv)]),
                    title=f"Training recipe of the {args.profile} profile: ablation", setup=setup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
