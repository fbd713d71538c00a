"""The ``ecogrid`` command line: :func:`main` assembles the sub-commands (:mod:`api.cli.main.main`)."""

from api.cli.main.main import main

__all__ = ["main"]
