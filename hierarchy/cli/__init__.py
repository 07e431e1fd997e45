"""The ``hierarchy`` command: one sub-command per module in this package.

Expected failures (bad input files, missing paths, refused overwrites) end with one line on stderr
that names the file and the problem, and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

import hierarchy
from hierarchy.logs import configure_logging

# Each module defines ``add_parser(subparsers)`` that registers its sub-command and sets
# ``func`` (taking the parsed arguments, returning an exit code) as its default.
_SUBCOMMANDS = ("audit", "train", "evaluate", "predict", "report")
# Failures that come from what the user gave (files, folders, values), not from a bug: OSError covers
# missing, existing, unreadable and unwritable paths; the library's own errors (ImageReadError,
# BundleError) are ValueErrors.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusals are one line (``prog: error: ...``, exit 2), like every other
    expected failure; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hierarchy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {hierarchy.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of a one-line message")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"hierarchy.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"hierarchy.cli.{name}":
                continue
            if not err.name or err.name.startswith("hierarchy"):
                raise
            _add_unavailable(subparsers, name, err.name.split(".")[0])
            continue
        module.add_parser(subparsers)
    return parser


def _add_unavailable(subparsers: argparse._SubParsersAction, name: str, missing: str) -> None:
    """Register sub-command ``name`` as one that says which dependency it lacks, so the commands that
    do not need it (``audit``, ``report``) still work in an environment without it."""
    # No option prefix: whatever options were given are swallowed, and the answer is the missing dependency.
    parser = subparsers.add_parser(name, help=f"(unavailable: needs {missing})", prefix_chars="+")
    parser.add_argument("ignored", nargs=argparse.REMAINDER)

    def func(args: argparse.Namespace) -> int:
        print(f"hierarchy {name}: error: needs {missing}, which is not installed (pip install {missing})",
              file=sys.stderr)
        return 2

    parser.set_defaults(func=func)


def error_line(err: BaseException) -> str:
    """``err`` as one line (KeyError's quotes dropped, line breaks folded)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, fmt="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as err:
        if args.debug:
            raise
        print(f"hierarchy {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
