"""The ``ecogrid`` command line: :func:`main` assembles the sub-commands (:mod:`api.cli.main`)."""

from api.cli.main import main

__all__ = ["main"]
