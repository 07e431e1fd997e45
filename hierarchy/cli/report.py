"""``hierarchy report``: figures, tables, metrics.json and report.md from a saved prediction table."""

from __future__ import annotations

import argparse
from pathlib import Path

from hierarchy.cli import error_line
from hierarchy.cli.outputs import check_output_dir


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated names, got {text!r}")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write a paper-ready report from predictions",
                                   description=__doc__)
    parser.add_argument("--predictions", required=True, type=Path,
                        help="prediction table (CSV) written by 'hierarchy evaluate'")
    parser.add_argument("--out", required=True, type=Path, help="report folder to write")
    parser.add_argument("--n-bootstrap", type=int, default=1000,
                        help="bootstrap resamples for confidence intervals (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--run-record", type=Path,
                        help="run.json of the run that made the predictions (data hashes, config)")
    parser.add_argument("--training-log", type=_named_path, action="append", default=[],
                        metavar="NAME=LOG.CSV", help="a training log to plot; repeat for several")
    parser.add_argument("--classes", type=_names, metavar="A,B,C",
                        help="tumour classes in order (default: the table's prob_<class> columns)")
    parser.add_argument("--planes", type=_names, metavar="X,Y",
                        help="planes (parent groups) in order (default: the table's plane_prob_<plane> columns)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report in a non-empty --out folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hierarchy.csv_io import read_csv
    from hierarchy.fileio import read_json
    from hierarchy.reports import build_report

    if args.n_bootstrap < 1:
        raise ValueError(f"--n-bootstrap must be at least 1, got {args.n_bootstrap}")
    if args.predictions.is_dir():
        raise IsADirectoryError(f"--predictions {args.predictions} is a folder; give the prediction table (CSV) "
                                "that 'hierarchy evaluate --out' wrote")
    if not args.predictions.is_file():
        raise FileNotFoundError(f"--predictions {args.predictions} does not exist")
    check_output_dir(args.out, "--out")
    for _, log in args.training_log:
        if not log.is_file():
            raise FileNotFoundError(f"--training-log {log} does not exist")
    run_record = None
    if args.run_record is not None:
        run_record = read_json(args.run_record, what="--run-record")
        if not isinstance(run_record, dict):
            raise ValueError(f"--run-record {args.run_record}: expected a JSON object (the run.json or "
                             f"run_record.json of a run), found a JSON {type(run_record).__name__}")
    predictions = read_csv(args.predictions, "prediction table", required={"id", "route", "pred_label"})
    try:
        report = build_report(predictions, args.out, run_record=run_record,
                              training_logs=dict(args.training_log) or None,
                              n_bootstrap=args.n_bootstrap, seed=args.seed,
                              overwrite=args.overwrite, classes=args.classes, planes=args.planes)
    except (KeyError, ValueError) as err:  # what is wrong with the table, said about its file
        raise ValueError(f"{args.predictions}: {error_line(err)}") from err
    print(report)
    return 0
