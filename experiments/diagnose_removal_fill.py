"""Does a disease-ablation arm recognise a removed tumour, or the fill that removed it?

    python experiments/diagnose_removal_fill.py --data ../shared/data/brisc2025 \
        --work reports/benchmarks/disease_ablation/work --set router.train.epochs=4 \
        --arm all_three_paste_half_mask3_evidence_8ep --out reports/benchmarks/disease_ablation/removal_fill.json

The removal shortcut test fills a removed tumour by biharmonic inpainting, a fill training never uses. This
script removes the same validation tumours (balanced over the classes, as the shortcut tests pick them) with
each fill, the plane's default training fill included (``training``:
:func:`hierarchy.data.counterfactual_augment.training_fill`), and
reports the share called no tumour per route. A model that learned the tumour's absence calls them alike; one
that learned its training fill calls only its own fill no tumour. The arm's trained checkpoints must be in
``--work`` (run ``experiments/ablation_disease.py`` first); nothing is trained here (a missing arm is refused).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hierarchy.data import load_image
from hierarchy.data.counterfactual_augment import training_fill
from hierarchy.data.masks import read_mask
from hierarchy.experiment.ablation import arm_config, study_frames
from hierarchy.experiment.disease_study import ARMS, SHORTCUT_IMAGES
from hierarchy.experiment.recipe_arms import profile_router
from hierarchy.experiment.shortcut_tests import balanced_tumours, without_tumour
from hierarchy.fileio import write_json
from hierarchy.labels import NO_TUMOR
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line, run_record
from hierarchy.routing import Router
from hierarchy.training import resolve_runtime

ROUTES = ("flat", "hierarchical", "ensemble")
FILLS = ("biharmonic", "diffusion", "smooth", "training")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (the study's validation rows are used)")
    parser.add_argument("--work", required=True, help="the disease ablation's work folder")
    parser.add_argument("--arm", action="append", required=True, choices=list(ARMS), help="repeatable")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="the study's --set (router.train.epochs=4 for the cpu study)")
    parser.add_argument("--n", type=int, default=SHORTCUT_IMAGES, help="validation tumours")
    parser.add_argument("--out", help="JSON file for the rates")
    args = parser.parse_args(argv)
    configure_logging()
    base = profile_router(args.profile, args.overrides)
    train, val, _ = study_frames(args.data, base.val_fraction)
    tumours = balanced_tumours(val, args.n, seed=0)
    images: dict[str, list[np.ndarray]] = {fill: [] for fill in FILLS}
    for row in tumours.itertuples():
        image, mask = np.asarray(load_image(row.path)), read_mask(row.mask_path)
        for fill in FILLS:
            images[fill].append(without_tumour(image, mask, method=training_fill(row.plane) if fill == "training"
                                               else fill))
    results, configs = {}, {}
    for arm in args.arm:
        checkpoint = Path(args.work) / arm / "training"
        if not checkpoint.is_dir():
            parser.error(f"{checkpoint} is missing: run experiments/ablation_disease.py --arms {arm} first")
        config = arm_config(base, ARMS[arm])
        configs[arm] = config.to_dict()
        router = Router.from_config(config).fit(train, val, out_dir=Path(args.work) / arm, resume=True)
        rates = {}
        for fill, batch in images.items():
            table = router.predict_routes(batch, ROUTES)
            rates[fill] = {route: float((table.loc[table["route"] == route, "pred_label"] == NO_TUMOR).mean())
                           for route in ROUTES}
            print(f"{arm} {fill}: " + ", ".join(f"{r} {v:.1%}" for r, v in rates[fill].items()), flush=True)
        results[arm] = rates
    if args.out:
        record = run_record({"profile": args.profile, "arms": configs}, runtime=resolve_runtime().describe(), seed=0,
                            frames={"train": train, "val": val, "tumours": tumours})
        record["command"] = command_line(["python", "experiments/diagnose_removal_fill.py",
                                          *(sys.argv[1:] if argv is None else argv)])
        write_json(Path(args.out), {"n": len(tumours), "split": "validation", "fills": list(FILLS),
                                    "called_no_tumour": results, "record": record})
    return 0


if __name__ == "__main__":
    sys.exit(main())
