"""``hierarchy predict``: classify images, folders, DICOM files and folders, and NIfTI volumes with a saved Router.

DICOM and NIfTI inputs are classified slice by slice (as the file stored them); their table adds the plane from
the file's geometry (``header_plane``) beside the classifier's, a warning says where the two disagree, and a
second table gives one prediction per series (``hierarchy.predictions.series_predictions``: the mean
probability over its brain slices and the slices that drove it)."""

from __future__ import annotations

import argparse
import sys

from hierarchy.predictions import HEADER_ROUTE, ROUTES, prob_column, series_predictions

_TABLE_COLUMNS = ("id", "pred_label", "confidence", "pred_plane", "expert", "referred")
_SERIES_COLUMNS = ("series", "pred_label", "confidence", "n_used", "n_slices", "header_plane", "pred_plane",
                   "plane_agreement", "referred_fraction", "driving_slices")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="classify images with a saved Router", description=__doc__)
    parser.add_argument("--model", required=True, help="run folder written by 'hierarchy train'")
    parser.add_argument("--trust", action="append", default=[], metavar="NAME",
                        help="allow loading to import and call NAME (a module factory 'package.module:qualname' "
                             "or a scikit-learn type) that the model folder names; repeatable. Without it such "
                             "a folder is refused, naming what would have run")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--route", choices=[*(r for r in ROUTES if r != "oracle"), HEADER_ROUTE],
                        default="hierarchical",
                        help="'header' routes DICOM/NIfTI slices by the plane from their geometry")
    parser.add_argument("--reject-below", type=float, metavar="P",
                        help="refer images whose top probability is below P to a human")
    parser.add_argument("--refer-atypical", type=float, metavar="Q",
                        help="refer images whose OOD score exceeds the training images' Q-quantile")
    parser.add_argument("--tta", metavar="VIEWS",
                        help="test-time augmentation: 'default', 'none' or comma-separated views of "
                             "hierarchy.data.tta.TTA_VIEWS (default: the Router's own setting)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip images that cannot be decoded and list them on standard error "
                             "(default: stop at the first one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hierarchy.routing import Router

    router = Router.load(args.model, trusted=args.trust)
    table = router.predict(args.inputs, args.route, reject_below=args.reject_below,
                           refer_atypical=args.refer_atypical, tta=args.tta, progress=sys.stderr.isatty(),
                           skip_bad=args.skip_bad)
    skipped = table.attrs.get("skipped", [])
    if skipped:
        print(f"skipped {len(skipped)} image(s) that cannot be decoded:", file=sys.stderr)
        for item in skipped:
            print(f"  {item['error']}", file=sys.stderr)
    if table.empty:
        raise ValueError(f"none of the {len(skipped)} images could be decoded")
    warn_plane_disagreement(table)
    series = series_predictions(table, router.classes_)
    if args.json:
        print(table.to_json(orient="records", lines=True), end="")
        if not series.empty:
            print(series.assign(level="series").to_json(orient="records", lines=True), end="")
        return 0
    table["confidence"] = table[[prob_column(c) for c in router.classes_]].max(axis=1).round(3)
    extra = [c for c in ("header_plane", "brain", "ood_score", "atypical") if c in table.columns]
    print(table[[*_TABLE_COLUMNS, *extra]].to_string(index=False))
    if not series.empty:
        series["confidence"] = series[[prob_column(c) for c in router.classes_]].max(axis=1).round(3)
        print("\nseries (mean probability over the brain slices; driving_slices: the 3 most confident):")
        print(series[[c for c in _SERIES_COLUMNS if c in series.columns]].to_string(index=False))
    return 0


def warn_plane_disagreement(table) -> int:
    """Warn on standard error when the plane classifier disagrees with the DICOM/NIfTI header (slices whose
    geometry gives a plane); returns the number of such slices."""
    if "header_plane" not in table.columns or "plane_source" not in table.columns:
        return 0
    rows = table[(table["plane_source"] == "header") & table["pred_plane"].notna()].drop_duplicates("id")
    wrong = rows[rows["pred_plane"] != rows["header_plane"]]
    if len(wrong):
        first = wrong.iloc[0]
        print(f"warning: the plane classifier disagrees with the file header on {len(wrong)} of {len(rows)} "
              f"slices (e.g. {first['id']}: predicted {first['pred_plane']}, header {first['header_plane']})",
              file=sys.stderr)
    return len(wrong)
