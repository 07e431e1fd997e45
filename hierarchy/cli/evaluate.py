"""``hierarchy evaluate``: every route's predictions on one split of a dataset, as a CSV for ``hierarchy report``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hierarchy.cli.outputs import check_output_file
from hierarchy.csv_io import write_csv

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="write all routes' predictions for a dataset split",
                                   description=__doc__)
    parser.add_argument("--model", required=True, help="run folder written by 'hierarchy train'")
    parser.add_argument("--trust", action="append", default=[], metavar="NAME",
                        help="allow loading to import and call NAME (a module factory 'package.module:qualname' "
                             "or a scikit-learn type) that the model folder names; repeatable. Without it such "
                             "a folder is refused, naming what would have run")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--out", required=True, help="prediction table to write (CSV)")
    parser.add_argument("--split", default="test", help="which split to predict (default: test)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hierarchy.data import index_dataset
    from hierarchy.routing import Router

    out = Path(args.out)
    check_output_file(out, "--out", overwrite=args.overwrite)
    router = Router.load(args.model, trusted=args.trust)
    frame = index_dataset(args.data)
    frame = frame[frame["split"] == args.split].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"{args.data} has no images in split {args.split!r}")
    routes = router.available_routes(frame)
    if "oracle" not in routes:
        logger.warning("some images have no known %s: leaving out the oracle route", router.parent)
    table = router.predict_routes(frame, routes, progress=sys.stderr.isatty())
    write_csv(table, out)  # atomic: a failed write (a full disk) keeps the previous file whole
    for route, rows in table.groupby("route", sort=False):
        logger.info("%-12s accuracy %.4f on %d images", route, (rows["pred_label"] == rows["true_label"]).mean(),
                    len(rows))
    print(out)
    return 0
