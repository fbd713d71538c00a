"""Sweeps: every combination of field values, run in parallel on a Dask cluster.

``run_sweep(file, {"battery_scale": [0.5, 1, 2], "price_file": ["a.csv", "b.csv"]}, out)``
validates every combination first (nothing runs if one is invalid), then runs
each as an ordinary scenario run in its own folder under ``out`` on a Dask
``LocalCluster`` of worker processes, or on an existing cluster when a
scheduler address is given (the workers must see the same files). It writes
``summary.csv``: one row per combination with its values, status, folder and
fleet KPIs.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from dask.distributed import Client, LocalCluster

from scenarios.runner import run_scenario
from scenarios.schema import load_scenario


class SweepError(ValueError):
    """A sweep that cannot run (bad grid or output folder)."""


@dataclass
class SweepSummary:
    table: pd.DataFrame
    table_text: str
    csv_path: Path
    all_ok: bool


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the grid's order."""
    if not grid:
        raise SweepError("a sweep needs at least one --set FIELD=V1,V2,...")
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def combination_name(index: int, combo: dict[str, Any]) -> str:
    """A folder name such as ``003_battery_scale-2_price_file-b``."""
    parts = []
    for key, value in combo.items():
        text = Path(value).stem if isinstance(value, str) and ("/" in value or "." in value) \
            else str(value)
        parts.append(f"{key.split('.')[-1]}-{text}")
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{index:03d}_" + "_".join(parts))[:120]


def run_one(file: str, overrides: dict[str, Any], out_dir: str,
            overwrite: bool) -> dict[str, Any]:
    """Run one combination (on a worker); returns its status and fleet KPIs, never raises."""
    try:
        scenario = load_scenario(file, overrides)
        result = run_scenario(scenario, out_dir, source=file, overwrite=overwrite)
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "complete", "steps": result.steps, "wall_s": round(result.wall_s, 3),
            **result.kpis["fleet"]}


def run_sweep(file: str | Path, grid: dict[str, list[Any]], out_dir: str | Path, *,
              scheduler: str | None = None, n_workers: int = 2,
              overwrite: bool = False) -> SweepSummary:
    """Run every combination of ``grid`` over the scenario ``file``.

    Parameters
    ----------
    file : str or Path
        Scenario YAML.
    grid : dict
        Field (dotted path or alias) to a list of values.
    out_dir : str or Path
        Folder for one sub-folder per combination and ``summary.csv``.
    scheduler : str, optional
        Address of a running Dask scheduler; default: a local cluster.
    n_workers : int
        Worker processes of the local cluster.
    """
    file = str(Path(file).resolve())
    combos = combinations(grid)
    for combo in combos:
        load_scenario(file, _absolute(combo))  # refuse the sweep before anything runs
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [combination_name(i, c) for i, c in enumerate(combos)]
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=max(1, n_workers), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(run_one, file, _absolute(c), str(out / n), overwrite,
                                 key=f"scenario-{n}", pure=False)
                   for c, n in zip(combos, names, strict=True)]
        results = client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    rows = []
    for combo, name, res in zip(combos, names, results, strict=True):
        rows.append({**{k: v for k, v in combo.items()}, "run": name, **res})
    table = pd.DataFrame(rows)
    csv_path = out / "summary.csv"
    table.to_csv(csv_path, index=False)
    (out / "sweep.json").write_text(json.dumps({"file": file, "grid": grid, "runs": names},
                                               indent=1, default=str))
    shown = [c for c in (*grid.keys(), "status", "net_cost_eur", "imported_mwh",
                         "exported_mwh", "self_sufficiency", "peak_import_mw", "error")
             if c in table.columns]
    return SweepSummary(table, table[shown].to_string(index=False), csv_path,
                        bool((table["status"] == "complete").all()))


def _absolute(combo: dict[str, Any]) -> dict[str, Any]:
    # File values are taken from the current folder, before workers (elsewhere) see them.
    return {k: (str(Path(v).resolve()) if isinstance(v, str) and k.endswith("file") else v)
            for k, v in combo.items()}
