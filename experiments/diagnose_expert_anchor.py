"""How far must the experts be pulled towards the flat head before they look at the tumour?

    python experiments/diagnose_expert_anchor.py --data ../shared/data/brisc2025 \
        --work reports/brisc2025_cpu/work --fold 0 --out reports/benchmarks/disease_ablation/expert_anchor.json

A joint-mode Router's experts are linear heads refitted on its frozen trunk. This script takes one fold's Router
of a cross-validated experiment (``compare_flat_vs_hierarchical.py --cv``; its checkpoints and feature cache in
``--work``), refits the experts on the same rows and features with each ``expert_anchor_weight`` (0: the
library's decay towards zero, chosen on validation) and reports, on the fold's validation rows only: the
hierarchical route's accuracy, and its Grad-CAM inside the tumour mask and pointing game on up to ``--n``
validation tumours (classes shared equally, as the shortcut tests pick them). Nothing is trained but the heads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from hierarchy.data import index_dataset
from hierarchy.experiment.model_runs import saved_fold_run
from hierarchy.experiment.shortcut_tests import attribution_scores
from hierarchy.fileio import write_json
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line, run_record
from hierarchy.routing import ImageClassifier, Router, Task
from hierarchy.routing.fitting import fit_components
from hierarchy.training import resolve_runtime

WEIGHTS = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0)


def refit_experts(router: Router, train, val, work: Path, weight: float) -> None:
    """Replace ``router``'s experts by heads refitted on its trunk with ``expert_anchor_weight`` ``weight``."""
    experts = {plane: ImageClassifier(expert.backbone, Task("label", router.classes_, column=router.parent, value=plane),
                                      preprocess=expert.preprocess_, weights=None, train_config=expert.train_config_,
                                      mode="frozen", init_from=router.flat_model_)
               for plane, expert in router.experts_.items()}
    fit_components(experts, train, val, work, feature_views=router.feature_views,
                   head_neutral_weight=router.head_neutral_weight, expert_anchor_weight=weight,
                   anchor=router.flat_model_)
    router.experts_.update(experts)
    router.components_.update(experts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root")
    parser.add_argument("--work", required=True, help="a cross-validated experiment's work folder")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--n", type=int, default=100, help="validation tumours for the attribution")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    configure_logging()
    work = Path(args.work)
    run = saved_fold_run(index_dataset(args.data), work / "folds.csv", args.fold)
    fold = work / f"cv_r0_f{args.fold}"
    router = Router.load(fold / "router")
    flat = router.flat_model_.check_fitted().get_classifier().weight.detach().flatten()
    flat_table = router.predict_routes(run.val, ("flat",))
    record = run_record({"router": router.config.to_dict(), "fold": args.fold, "n": args.n},
                        runtime=resolve_runtime().describe(), seed=0, frames={"train": run.train, "val": run.val})
    record["command"] = command_line(["python", "experiments/diagnose_expert_anchor.py",
                                      *(sys.argv[1:] if argv is None else argv)])
    result = {"fold": args.fold, "split": "validation", "n_val": int(len(run.val)),
              "flat_val_accuracy": float((flat_table["pred_label"] == flat_table["true_label"]).mean()),
              "weights": [], "record": record}
    for weight in args.weights:
        refit_experts(router, run.train, run.val, fold / "training", weight)
        table = router.predict_routes(run.val, ("hierarchical",))
        attribution = attribution_scores(router, run.val, n=args.n, routes=("hierarchical",),
                                         methods=("gradcam",))["methods"]["gradcam"]["hierarchical"]
        cosine = [torch.nn.functional.cosine_similarity(e.check_fitted().get_classifier().weight.detach().flatten(),
                                                        flat, dim=0).item() for e in router.experts_.values()]
        result["weights"].append({"expert_anchor_weight": weight,
                     "val_accuracy": float((table["pred_label"] == table["true_label"]).mean()),
                     "gradcam_inside_fraction": attribution["inside_fraction"],
                     "pointing_game": attribution["pointing_game"],
                     "cosine_to_flat_head": sum(cosine) / len(cosine)})
        print(result["weights"][-1], flush=True)
        write_json(Path(args.out), result)  # after each weight, so that a stopped run keeps what it measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
