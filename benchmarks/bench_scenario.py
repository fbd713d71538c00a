"""Scenario run speed on the reference fleet.

    python benchmarks/run.py scenario --days 365 --strategy rule
    python benchmarks/run.py scenario --days 7 --strategy optimizer

Runs a generated scenario (reference fleet by default, 15-minute steps,
results streamed to zarr in a temporary folder) and reports steps, wall
time, speed and peak memory; with the optimizer also its solves and median
solve time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml


def scenario_yaml(days: int, strategy: str, sites: int, step: str, start: str) -> str:
    begin = date.fromisoformat(start)
    data: dict[str, Any] = {
        "name": f"bench-{strategy}-{days}d",
        "seed": 1,
        "fleet": {"generator": {"n_sites": sites, "seed": 0}},
        "period": {"start": begin.isoformat(), "end": (begin + timedelta(days=days)).isoformat(),
                   "step": step, "timezone": "UTC"},
        "strategy": {"kind": strategy, "cadence": "1h", "horizon": "24h"},
        "outputs": {"device_variables": ["p_kw", "soc"], "device_types": ["battery"],
                    "time_chunk_steps": 2016},
    }
    return yaml.safe_dump(data, sort_keys=False)


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench_scenario", description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--strategy", choices=("none", "rule", "optimizer"), default="rule")
    parser.add_argument("--sites", type=int, default=342)
    parser.add_argument("--step", default="15min")
    parser.add_argument("--start", default="2025-01-01")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the run here (default: a temporary folder)")
    args = parser.parse_args(argv)

    from scenarios.runner import prepare_run, run_scenario
    from scenarios.schema import parse_scenario

    scenario = parse_scenario(scenario_yaml(args.days, args.strategy, args.sites, args.step,
                                            args.start))
    with tempfile.TemporaryDirectory(prefix="bench-scenario-") as tmp:
        out = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        prepared = prepare_run(scenario)
        setup_s = time.perf_counter() - t0
        result = run_scenario(scenario, out, prepared=prepared, overwrite=True)
        wall_s = time.perf_counter() - t0
        zarr_mb = sum(p.stat().st_size for p in (out / "results.zarr").rglob("*")
                      if p.is_file()) / 1e6
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fleet = result.kpis["fleet"]
    out_dict: dict[str, Any] = {
        "benchmark": "scenario",
        "strategy": args.strategy,
        "days": args.days,
        "sites": prepared.fleet.n_sites,
        "devices": prepared.fleet.n_devices,
        "steps": result.steps,
        "wall_s": round(wall_s, 2),
        "setup_s": round(setup_s, 2),
        "loop_s": round(result.wall_s, 2),
        "steps_per_s": round(result.steps / wall_s, 1),
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "results_zarr_mb": round(zarr_mb, 1),
        "net_cost_eur": fleet["net_cost_eur"],
    }
    if args.strategy == "optimizer":
        out_dict["solves"] = fleet["optimizer_solves"]
        out_dict["solve_s_median"] = fleet["optimizer_solve_s_median"]
        out_dict["solve_s_total"] = fleet["optimizer_solve_s_total"]
        out_dict["fallbacks"] = fleet["optimizer_fallbacks"]
    return out_dict


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:])))
