"""Which pasted tumours does a disease-ablation arm miss, and why?

    python experiments/diagnose_paste_in.py --data ../shared/data/brisc2025 \
        --work reports/benchmarks/disease_ablation/work --set router.train.epochs=4 \
        --arm all_three_paste_half_mask3_evidence_8ep_sham_fills_anchored \
        --out reports/benchmarks/disease_ablation/paste_in.json

The paste-in and background-swap shortcut tests put a validation tumour into a validation no-tumour image of
the same plane, built exactly as the tests build them (:func:`hierarchy.experiment.shortcut_tests.build_cases`,
``--n`` per test). This script breaks each test's rate down by the donor tumour's class, plane and size (the
mask's share of the donor's head box, in terciles), by whether the unedited donor image is itself classified
right (a model that misses the original cannot be asked to find its paste), and counts what the misses are
called. A miss called "no tumour" means the recipient's context won over the tumour; a miss called another
tumour class means the tumour was seen but read as another. The same cases built from training rows (tumours
and normals the arm trained on, pasted as its training pastes were) tell memorised donors from a context
effect: a model that learned what a pasted tumour looks like finds new ones about as often as its own. The arm's trained checkpoints must be in ``--work``
(run ``experiments/ablation_disease.py`` first); nothing is trained here (a missing arm is refused).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierarchy.data import load_image
from hierarchy.data.counterfactual import crop, head_box
from hierarchy.data.masks import read_mask
from hierarchy.experiment.arm_diagnostics import (
    arm_diagnostic_parser,
    diagnostic_record,
    study_rows,
    trained_arms,
)
from hierarchy.experiment.shortcut_tests import build_cases, rate_with_ci
from hierarchy.fileio import write_json
from hierarchy.labels import NO_TUMOR
from hierarchy.logs import configure_logging

ROUTES = ("flat", "hierarchical", "ensemble")
TESTS = ("paste_in", "background_swap")
SIZES = ("small", "medium", "large")


def donor_table(frame: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    """Per donor id: label, plane and the tumour mask's share of the donor image's head box."""
    rows = frame.set_index("id").loc[sorted(set(ids))].reset_index()
    shares = []
    for row in rows.itertuples():
        image, mask = np.asarray(load_image(row.path)), read_mask(row.mask_path)
        box = head_box(image)
        shares.append(float(crop(mask, box).mean()))
    return rows[["id", "path", "label", "plane"]].assign(mask_share=shares)


def breakdown(cases: pd.DataFrame) -> dict[str, Any]:
    """The share of ``cases`` called their donor's class, overall and by group, and what the misses are called."""
    def rates(column: str) -> dict[str, Any]:
        return {str(key): rate_with_ci(int(group["hit"].sum()), len(group))
                for key, group in cases.groupby(column, sort=True, observed=True)}

    misses = cases[~cases["hit"]]
    return {"all": rate_with_ci(int(cases["hit"].sum()), len(cases)),
            "by_class": rates("donor_label"), "by_plane": rates("plane"), "by_size": rates("size"),
            "by_donor_right": rates("donor_right"),
            "misses_called": {"no tumour": int((misses["pred_label"] == NO_TUMOR).sum()),
                              "another tumour class": int((misses["pred_label"] != NO_TUMOR).sum())}}


def diagnose(router: Any, frame: pd.DataFrame, n: int) -> dict[str, Any]:
    """Per test and route, :func:`breakdown` of the paste-in and background-swap cases built from ``frame``."""
    cases = build_cases(frame, n=n, seed=0, tests=TESTS)
    donors = donor_table(frame, [c.source_id for c in cases])
    terciles = np.quantile(donors["mask_share"], [1 / 3, 2 / 3])
    donors["size"] = pd.Categorical(np.asarray(SIZES)[np.searchsorted(terciles, donors["mask_share"])], SIZES)
    edited = router.predict_routes([c.image for c in cases], ROUTES)
    originals = router.predict_routes(donors[["id", "path", "label", "plane"]], ROUTES)
    result: dict[str, Any] = {"size_terciles": [float(t) for t in terciles]}
    for route in ROUTES:
        right = originals[originals["route"] == route].set_index("id")["pred_label"]
        frame = pd.DataFrame({"test": [c.test for c in cases], "id": [c.source_id for c in cases],
                              "pred_label": edited.loc[edited["route"] == route, "pred_label"].to_numpy()})
        frame = frame.merge(donors.rename(columns={"label": "donor_label"}), on="id", how="left")
        frame["hit"] = frame["pred_label"] == frame["donor_label"]
        frame["donor_right"] = np.where(right.loc[frame["id"]].to_numpy() == frame["donor_label"].to_numpy(),
                                        "donor image right", "donor image wrong")
        for test in TESTS:
            result.setdefault(test, {})[route] = breakdown(frame[frame["test"] == test])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = arm_diagnostic_parser(__doc__, data_help="BRISC 2025 root (the study's validation and training rows)",
                                   n_default=300, n_help="cases per test")
    args = parser.parse_args(argv)
    configure_logging()
    train, val = study_rows(args)
    results, configs = {}, {}
    for arm, configs[arm], router in trained_arms(parser, args, train, val):
        results[arm] = {"validation": diagnose(router, val, args.n), "training": diagnose(router, train, args.n)}
        for split, test, route in itertools.product(results[arm], TESTS, ROUTES):
            entry = results[arm][split][test][route]
            print(f"{arm} {split} {test} {route}: {entry['all']['rate']:.1%}; by class "
                  + ", ".join(f"{k} {v['rate']:.0%}" for k, v in entry["by_class"].items())
                  + "; by size " + ", ".join(f"{k} {v['rate']:.0%}" for k, v in entry["by_size"].items())
                  + f"; misses {entry['misses_called']}", flush=True)
    if args.out:
        record = diagnostic_record("experiments/diagnose_paste_in.py", args, configs, {"train": train, "val": val},
                                   argv)
        write_json(Path(args.out), {"n_per_test": args.n, "splits": ["validation", "training"], "tests": list(TESTS),
                                    "routes": list(ROUTES), "arms": results, "record": record})
    return 0


if __name__ == "__main__":
    sys.exit(main())
