"""The ``ecogrid`` command line.

Each package contributes its own sub-commands through a module with a
``register(subparsers)`` function (listed in :data:`COMMANDS`); this module
only assembles them and runs the chosen one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from adapters import cli as adapters_cli
from api.cli import demo, ingest, report, serve, users
from scenarios import cli as scenarios_cli

# Modules that add sub-commands; each defines register(subparsers).
COMMANDS: tuple[ModuleType, ...] = (demo, serve, users, adapters_cli, ingest, scenarios_cli,
                                    report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecogrid", description="EcoGrid twin: digital twin, "
                                     "dispatch and live operation of a renewable fleet")
    parser.add_argument("--log-level", default=os.environ.get("ECOGRID_LOG_LEVEL", "WARNING"),
                        help="logging level (DEBUG, INFO, WARNING, ERROR; default "
                        "ECOGRID_LOG_LEVEL, else WARNING)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
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
