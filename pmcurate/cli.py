"""The ``pmcurate`` command. Thin: it parses arguments and calls stage functions.

Each command group has its own ``add_*`` function below; a group's handlers import their stage
modules lazily, so ``pmcurate --help`` stays fast and optional extras are only needed when used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pmcurate import __version__

log = logging.getLogger("pmcurate")


class UserError(Exception):
    """An error caused by the user's input or environment: printed as one line, exit status 2."""


def add_harvest(sub: argparse._SubParsersAction) -> None:
    harvest = sub.add_parser("harvest", help="fetch or read JATS articles and write the base tables")
    sources = harvest.add_subparsers(dest="source", required=True, metavar="SOURCE")
    del sources  # sources are registered by the harvest modules' CLI hooks below


def add_query(sub: argparse._SubParsersAction) -> None:
    del sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmcurate",
        description="Curated training corpora from PubMed Central Open Access.",
    )
    parser.add_argument("--version", action="version", version=f"pmcurate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_harvest(sub)
    add_query(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"pmcurate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pmcurate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
