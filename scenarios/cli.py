"""``ecogrid scenario run | compare | sweep``: what-if runs from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scenarios.compare import CompareError, compare_runs
from scenarios.runner import RunError, prepare_run, run_scenario
from scenarios.schema import ScenarioError, load_scenario
from scenarios.sweep import SweepError, run_sweep


def register(subparsers: Any) -> None:
    """Add the ``scenario`` command and its sub-commands."""
    parser = subparsers.add_parser("scenario", help="run, compare and sweep what-if scenarios",
                                   description="Run, compare and sweep what-if scenarios.")
    sub = parser.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="run one scenario file")
    run.add_argument("file", type=Path, help="scenario YAML file")
    run.add_argument("--out", type=Path, required=True, help="output folder")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a field (dotted path or alias such as battery_scale)")
    run.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    run.add_argument("--threads", type=int, default=1, help="threads of the twin's kernel")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="compare finished runs side by side")
    cmp_.add_argument("runs", type=Path, nargs="+", help="run folders (the first is the base)")
    cmp_.add_argument("--out", type=Path, default=None,
                      help="folder for the plots and report.html (default: compare/ "
                           "next to the first run)")
    cmp_.set_defaults(func=cmd_compare)

    sweep = sub.add_parser("sweep", help="run every combination of field values in parallel")
    sweep.add_argument("file", type=Path, help="scenario YAML file")
    sweep.add_argument("--set", action="append", default=[], required=True,
                       metavar="FIELD=V1,V2,...", help="values to sweep (repeat for more fields)")
    sweep.add_argument("--out", type=Path, required=True, help="output folder")
    sweep.add_argument("--scheduler", default=None,
                       help="address of an existing Dask scheduler (tcp://host:port); "
                            "default: a local cluster")
    sweep.add_argument("--workers", type=int, default=2, help="local cluster worker processes")
    sweep.add_argument("--overwrite", action="store_true", help="replace previous runs")
    sweep.set_defaults(func=cmd_sweep)


def parse_set(items: list[str], many: bool = False) -> dict[str, Any]:
    """``["a.b=1", "c=x,y"]`` into ``{"a.b": 1, "c": ["x", "y"]}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        if many:
            values = [_scalar(v) for v in value.split(",") if v.strip() != ""]
            if not values:
                raise ValueError(f"--set {item!r}: no values")
            out[key.strip()] = values
        else:
            out[key.strip()] = _scalar(value)
    return out


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.file, parse_set(args.set))
        prepared = prepare_run(scenario, str(args.file))
    except (ScenarioError, ValueError, OSError) as exc:
        return _fail(str(exc))
    try:
        if args.quiet:
            result = run_scenario(scenario, args.out, source=str(args.file), prepared=prepared,
                                  overwrite=args.overwrite, threads=args.threads)
        else:
            with _ProgressBar(scenario.name) as bar:
                result = run_scenario(scenario, args.out, source=str(args.file),
                                      prepared=prepared, overwrite=args.overwrite,
                                      threads=args.threads, progress=bar.update)
    except KeyboardInterrupt:
        return _fail(f"interrupted; {args.out} is marked INCOMPLETE", 130)
    except (RunError, ValueError, OSError) as exc:
        return _fail(f"{exc} ({args.out} is marked INCOMPLETE if it was started)")
    fleet = result.kpis["fleet"]
    print(f"{result.steps} steps in {result.wall_s:.1f} s "
          f"({result.steps / max(result.wall_s, 1e-9):.0f} steps/s) -> {result.out_dir}")
    print(f"net cost {fleet['net_cost_eur']:,.0f} EUR, imported {fleet['imported_mwh']:,.1f} MWh,"
          f" exported {fleet['exported_mwh']:,.1f} MWh, self-sufficiency "
          f"{fleet['self_sufficiency']}")
    return 0


class _ProgressBar:
    """A rich progress bar showing simulated time and speed."""

    def __init__(self, name: str):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"), TextColumn("sim {task.fields[sim]}"),
            TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), transient=False)
        self.task = self.progress.add_task(name, total=1, sim="", speed="")

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, done: int, total: int, sim_t_s: float, wall_s: float) -> None:
        sim = pd.Timestamp(sim_t_s, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
        rate = done / wall_s if wall_s > 0 else 0.0
        self.progress.update(self.task, completed=done, total=total, sim=sim,
                             speed=f"{rate:,.0f} steps/s")


def cmd_compare(args: argparse.Namespace) -> int:
    out = args.out or args.runs[0].parent / "compare"
    try:
        report = compare_runs(args.runs, out)
    except (CompareError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(report.table_text)
    print(f"\nplots and report: {report.html_path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        grid = parse_set(args.set, many=True)
        summary = run_sweep(args.file, grid, args.out, scheduler=args.scheduler,
                            n_workers=args.workers, overwrite=args.overwrite)
    except KeyboardInterrupt:
        return _fail("interrupted; unfinished runs are marked INCOMPLETE", 130)
    except (ScenarioError, SweepError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(summary.table_text)
    print(f"\nsummary: {summary.csv_path}")
    return 0 if summary.all_ok else 1
