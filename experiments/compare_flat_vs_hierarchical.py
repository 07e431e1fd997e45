"""Compare the flat baseline with the two-stage hierarchy and write a paper-ready report.

    python experiments/compare_flat_vs_hierarchical.py --data ROOT [--data ROOT ...] --out reports/NAME \
        [--profile demo|quick|cpu|full] [--seeds 0 1 2] [--config FILE.json] [--set key=value ...] \
        [--external ROOT ...] [--holdout-source NAME] [--cv K [--cv-repeats R]]

Without --data the demo profile generates synthetic phantoms. Under
``torchrun --standalone --nproc_per_node N`` the models train data-parallel on N processes (GPUs) and
rank 0 alone writes the report; the other ranks exit once training is done. Re-running with the same --out
skips finished stages and continues interrupted ones; a changed setting, code version or input (by content,
not by name) is refused there, naming what changed, unless --restart is given. Every setting, the output
folder and the inputs are checked before training; an expected failure is one line on stderr, exit status 2
(--debug shows the traceback). The experiment never replaces a file in --out that it did not write.

Settings: the profile, then --config (a JSON object, ExperimentConfig.to_dict() layout), then each
--set KEY=VALUE (value read as JSON when it parses). The Router's settings live under ``router``
(a RouterConfig, with nested ``train`` and ``preprocess``) and take dotted keys:
``--set router.train.epochs=3``, ``--set router.preprocess.augment=robust``, ``--set router.mode=frozen``;
a --config file gives them as nested objects ({"router": {"train": {"epochs": 3}}}) or dotted keys.
With several seeds the report adds the seed-ensemble routes ``<route>_seeds``
(``--set 'seed_ensemble_routes=["hierarchical"]'`` chooses them); external sets are only predicted,
never trained or tuned on (``--set conformal_alpha=0.05`` sets the conformal sets' target miscoverage).

The report opens with the declared primary endpoint (``primary_routes``, default hierarchical minus flat
accuracy, on ``primary_subset``, default the test images with no exact or near duplicate in training; intervals
resample whole duplicate groups) and the ``multiplicity``-adjusted family of flat-vs-hierarchical tests. In
``joint`` and ``shared`` mode every model also gets the ``flat_refit`` control. ``calibration_fraction`` of the
training pool is held out for the conformal sets alone. ``--cv K`` trains one model per fold of a duplicate-aware
grouped K-fold of the training pool (``--cv-repeats R`` repeats it with other shuffles) instead of one per seed,
evaluates each on the test split and every external set, and reports mean ± sd and an interval combining the
between-fold and the test-sampling variance.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hierarchy.cli import EXPECTED_ERRORS, OneLineParser, error_line
from hierarchy.cli.outputs import check_output_dir
from hierarchy.experiment import parse_override, resolve_config, run_experiment
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", metavar="ROOT",
                        help="dataset root (BRISC 2025, Kaggle layout or CSV), repeatable: several roots are "
                             "indexed together and metrics are also given per source; synthetic when omitted")
    parser.add_argument("--holdout-source", metavar="NAME",
                        help="with several --data roots: train on the others, test on this one (a root's "
                             "folder name)")
    parser.add_argument("--out", required=True, help="report folder (also holds the resumable work)")
    parser.add_argument("--profile", default="demo", help="demo, quick, cpu or full")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the profile's)")
    parser.add_argument("--config", help="JSON file of settings overriding the profile (nested objects or "
                                             "dotted keys for router settings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, dotted for nested ones (router.train.epochs=3); the value "
                             "is read as JSON when it parses; repeatable")
    parser.add_argument("--cv", type=int, metavar="K",
                        help="K-fold cross-validation of the training pool, duplicate groups kept whole: one model "
                             "per fold (in place of seeds), each evaluated on the test split and every external set")
    parser.add_argument("--cv-repeats", type=int, metavar="R",
                        help="with --cv: repeat the K-fold R times with other shuffles (default 1)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT",
                        help="external test dataset (any readable layout), repeatable")
    parser.add_argument("--restart", action="store_true",
                        help="discard the work of an earlier run in --out whose settings, code or data differ, "
                             "and run everything again (default: such a run is refused, naming what changed)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of a one-line message")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return _run(args, argv)
    except EXPECTED_ERRORS as err:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {error_line(err)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The whole run; every setting, the output folder and every input are checked before any training."""
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.seeds:
        overrides["seeds"] = args.seeds
    if args.holdout_source:
        overrides["holdout_source"] = args.holdout_source
    if args.cv_repeats is not None and args.cv is None:
        raise ValueError("--cv-repeats needs --cv K")
    if args.cv is not None:
        overrides["cv_folds"] = args.cv
    if args.cv_repeats is not None:
        overrides["cv_repeats"] = args.cv_repeats
    config = resolve_config(args.profile, config_file=args.config, overrides=overrides)
    if args.data is None and config.profile != "demo":
        raise ValueError(f"--data is required for the {config.profile} profile")
    if config.holdout_source and len(args.data or ()) < 2:
        raise ValueError("--holdout-source needs at least two --data roots")
    check_output_dir(Path(args.out), "--out")
    for flag, roots in (("--data", args.data or ()), ("--external", args.external)):
        for root in roots:
            if not Path(root).exists():
                raise FileNotFoundError(f"{flag} {root} does not exist")
    processes = os.environ.get("WORLD_SIZE", "1")
    launcher = ["torchrun", "--standalone", "--nproc_per_node", processes] if processes != "1" else ["python"]
    command = command_line([*launcher, "experiments/compare_flat_vs_hierarchical.py",
                        *(sys.argv[1:] if argv is None else argv)])
    summary = run_experiment(config, data_root=args.data, out_dir=args.out, external=args.external,
                             command=command, restart=args.restart)
    if summary is None:  # a torchrun rank other than 0: it trained, rank 0 reports
        return 0
    for route, values in summary["routes"].items():
        print(f"{route:>18}: accuracy {values['accuracy']:.4f} "
              f"[{values['accuracy_ci'][0]:.4f}, {values['accuracy_ci'][1]:.4f}]  "
              f"macro-AUC {values['macro_auc']:.4f}  tumour FNR {values['tumor_fnr']:.4f}")
    primary = summary["primary_endpoint"]
    for name, difference in primary["differences"].items():
        print(f"primary endpoint ({primary['dataset']}, {primary['models']} model(s)) {name}: "
              f"{difference['difference']:+.4f} [{difference['ci'][0]:+.4f}, {difference['ci'][1]:+.4f}] "
              f"p {difference['p_value']:.3g}")
    for name, result in summary["external"].items():
        auroc = result["ood_auroc"]
        accuracy = ", ".join(f"{route} {values['accuracy']:.4f}" for route, values in result.items()
                             if isinstance(values, dict) and "accuracy" in values)
        print(f"external {name}: {accuracy}; OOD AUROC "
              + ("n/a (no OOD score)" if auroc is None else f"{auroc['value']:.3f}"))
    print(f"report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
