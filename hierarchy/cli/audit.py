"""``hierarchy audit ROOT``: duplicates, label conflicts and metadata confounders of a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from hierarchy.cli.outputs import check_output_dir, check_output_file
from hierarchy.data.audit import audit
from hierarchy.data.index import LAYOUTS
from hierarchy.fileio import write_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``audit`` sub-command."""
    parser = subparsers.add_parser("audit", help="audit a dataset for duplicates, leakage and confounders",
                                   description=__doc__)
    parser.add_argument("root", type=Path, help="dataset folder (or CSV file for --layout csv)")
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS))
    parser.add_argument("--out", type=Path, help="folder to write audit.md and audit.json into")
    parser.add_argument("--json", type=Path, dest="json_file", help="also write the JSON findings to this file")
    parser.add_argument("--no-near", action="store_true", help="skip the perceptual-hash near-duplicate search")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=func)
    return parser


def func(args: argparse.Namespace) -> int:
    """Run the audit, print the Markdown summary, write the requested files."""
    # Checked before the audit, which takes a while.
    if args.json_file is not None:
        check_output_file(args.json_file, "--json", overwrite=args.overwrite)
    if args.out is not None:
        check_output_dir(args.out, "--out")
        for name in ("audit.md", "audit.json"):
            check_output_file(args.out / name, "--out", overwrite=args.overwrite)
    report = audit(args.root, layout=args.layout, near=not args.no_near)
    print(report.to_markdown())
    if args.out is not None:
        for path in report.write(args.out, overwrite=args.overwrite):
            print(f"wrote {path}")
    if args.json_file is not None:
        write_json(args.json_file, report.to_dict())
        print(f"wrote {args.json_file}")
    return 0
