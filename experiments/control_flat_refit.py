"""Refit control of the joint-mode Router: the flat head, a linear head refitted over every row, the hierarchy.

    python experiments/control_flat_refit.py --data ../shared/data/brisc2025 \
        --external ../shared/data/figshare_br35h --study reports/benchmarks/recipe_ablation_round2 \
        --arms base ema size_256 --out reports/benchmarks/flat_refit_control

In ``joint`` mode the experts are linear heads refitted on the jointly trained trunk while the flat head was
trained with the network, so "hierarchical beats flat" mixes two effects: the refit and the per-plane split.
For each model this refits one linear head over every training row on the same trunk, exactly as the experts
are fitted (``hierarchy.experiment.refit_control``), and compares the three routes on the BRISC test split and
each external set, paired (McNemar). The models are arms of the recipe ablation
(``experiments/ablation_recipe.py``, same profile and ``--set``): each is resumed from ``<study>/work/<arm>``
(fitted there first when that folder holds none), so nothing is trained twice. Nothing is tuned here: the
control's settings are the experts'.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hierarchy.data import index_dataset
from hierarchy.experiment.ablation import arm_config, study_frames
from hierarchy.experiment.profiles import PROFILES
from hierarchy.experiment.recipe_arms import ARMS, profile_router
from hierarchy.experiment.refit_control import refit_comparison, refit_flat_head, refit_markdown
from hierarchy.fileio import write_json
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line, run_record
from hierarchy.routing import Router
from hierarchy.training import resolve_runtime

logger = logging.getLogger("control_flat_refit")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (train split used; test only evaluated)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT", help="external test set")
    parser.add_argument("--study", required=True, help="the recipe ablation's --out (its work/ holds the models)")
    parser.add_argument("--out", required=True, help="folder for refit_control.md/json")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="the ablation's profile")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="the ablation's experiment settings; repeatable")
    parser.add_argument("--arms", nargs="+", default=["base"], choices=list(ARMS))
    args = parser.parse_args(argv)
    configure_logging()
    base = profile_router(args.profile, args.overrides)
    train, val, test = study_frames(args.data, base.val_fraction)
    sets = {f"{Path(args.data).name} test": test,
            **{f"{Path(root).name} (external)": index_dataset(root) for root in args.external}}
    work = Path(args.study) / "work"
    results = {}
    for name in args.arms:
        logger.info("model %s: %s", name, ARMS[name].description)
        router = Router.from_config(arm_config(base, ARMS[name])).fit(train, val, out_dir=work / name, resume=True)
        control = refit_flat_head(router, train, val, work=work / name / "training")
        results[name] = {label: refit_comparison(router, control, frame) for label, frame in sets.items()}
    command = command_line(["python", "experiments/control_flat_refit.py",
                            *(sys.argv[1:] if argv is None else argv)])
    setup = (f"Models: arms of the `{args.profile}` profile's recipe ablation ({base.mode} mode, flat `{base.flat}`; "
             + "; ".join(f"`{n}`: {ARMS[n].description}" for n in args.arms) + "), seed 0, trained on "
             f"{Path(args.data).name} training rows. Flat: the jointly trained tumour head. Flat refit: one linear "
             "head over every training row on the same frozen trunk, fitted exactly as each expert is over its "
             "plane's rows. Hierarchical: plane head, then that plane's expert. Nothing was tuned on these sets.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = run_record({"profile": args.profile, "overrides": args.overrides, "arms": args.arms},
                        runtime=resolve_runtime().describe(), seed=0, frames={"train": train, "val": val, **sets})
    record["command"] = command
    write_json(out / "refit_control.json", {"results": results, "record": record})
    text = refit_markdown(results, title="Refit control: flat head, refitted flat head and hierarchy on one trunk",
                          setup=setup, command=command)
    (out / "refit_control.md").write_text(text)
    print(out / "refit_control.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
