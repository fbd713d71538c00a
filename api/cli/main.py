"""The ``ecogrid`` command line.

Each package contributes its own sub-commands through a module with a
``register(subparsers)`` function (listed in ``_COMMAND_MODULES``); this
module only assembles them and runs the chosen one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that add sub-commands; each defines register(subparsers).
_COMMAND_MODULES: tuple[str, ...] = (
    "api.cli.demo",
    "api.cli.serve",
    "adapters.cli",
    "scenarios.cli",
    "api.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecogrid", description="EcoGrid twin: digital twin, "
                                     "dispatch and live operation of a renewable fleet")
    parser.add_argument("--log-level", default="WARNING",
                        help="logging level (DEBUG, INFO, WARNING, ERROR)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part of the CLI is not built (yet)
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
