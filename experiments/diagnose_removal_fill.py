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

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hierarchy.data import load_image
from hierarchy.data.counterfactual_augment import training_fill
from hierarchy.data.masks import read_mask
from hierarchy.experiment.arm_diagnostics import (
    arm_diagnostic_parser,
    diagnostic_record,
    study_rows,
    trained_arms,
)
from hierarchy.experiment.disease_study import SHORTCUT_IMAGES
from hierarchy.experiment.shortcut_tests import balanced_tumours, without_tumour
from hierarchy.fileio import write_json
from hierarchy.labels import NO_TUMOR
from hierarchy.logs import configure_logging

ROUTES = ("flat", "hierarchical", "ensemble")
FILLS = ("biharmonic", "diffusion", "smooth", "training")


def main(argv: Sequence[str] | None = None) -> int:
    parser = arm_diagnostic_parser(__doc__, data_help="BRISC 2025 root (the study's validation rows are used)",
                                   n_default=SHORTCUT_IMAGES, n_help="validation tumours")
    args = parser.parse_args(argv)
    configure_logging()
    train, val = study_rows(args)
    tumours = balanced_tumours(val, args.n, seed=0)
    images: dict[str, list[np.ndarray]] = {fill: [] for fill in FILLS}
    for row in tumours.itertuples():
        image, mask = np.asarray(load_image(row.path)), read_mask(row.mask_path)
        for fill in FILLS:
            images[fill].append(without_tumour(image, mask, method=training_fill(row.plane) if fill == "training"
                                               else fill))
    results, configs = {}, {}
    for arm, configs[arm], router in trained_arms(parser, args, train, val):
        rates = {}
        for fill, batch in images.items():
            table = router.predict_routes(batch, ROUTES)
            rates[fill] = {route: float((table.loc[table["route"] == route, "pred_label"] == NO_TUMOR).mean())
                           for route in ROUTES}
            print(f"{arm} {fill}: " + ", ".join(f"{r} {v:.1%}" for r, v in rates[fill].items()), flush=True)
        results[arm] = rates
    if args.out:
        record = diagnostic_record("experiments/diagnose_removal_fill.py", args, configs,
                                   {"train": train, "val": val, "tumours": tumours}, argv)
        write_json(Path(args.out), {"n": len(tumours), "split": "validation", "fills": list(FILLS),
                                    "called_no_tumour": results, "record": record})
    return 0


if __name__ == "__main__":
    sys.exit(main())
