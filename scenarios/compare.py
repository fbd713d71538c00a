"""Compare finished scenario runs: a KPI table with differences to the first, plots, a report.

``compare_runs(dirs, out)`` reads each run's ``kpis.json`` and
``results.zarr`` and writes to ``out``: ``kpis.csv`` (the table),
``fleet_flows.png`` (fleet grid exchange and battery power over time),
``daily_cost.png`` (net energy cost per day), ``battery_soc.png`` (SoC
distribution over all recorded batteries and steps), ``peak_import.png``
(peak import by site) and ``report.html``, which embeds them all.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scenarios.results import open_results
from scenarios.runner import is_complete

_MAX_POINTS = 2000  # plotted points per series; longer runs are averaged down


class CompareError(ValueError):
    """Runs that cannot be compared (the message names the folder)."""


@dataclass
class CompareReport:
    table: pd.DataFrame
    table_text: str
    html_path: Path
    plots: dict[str, Path]


def kpi_table(kpis: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """Fleet KPIs side by side, one column per run plus ``Δ name`` columns against the first."""
    rows = list(kpis[0]["fleet"].keys())
    data = {name: [k["fleet"].get(r) for r in rows] for name, k in zip(names, kpis, strict=True)}
    table = pd.DataFrame(data, index=pd.Index(rows, name="kpi"))
    base = pd.to_numeric(table[names[0]], errors="coerce")
    for name in names[1:]:
        table[f"Δ {name}"] = pd.to_numeric(table[name], errors="coerce") - base
    return table


def format_table(table: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, int | np.integer) and not isinstance(v, bool):
            return f"{v:,d}"
        if isinstance(v, float | np.floating):
            return f"{v:,.3f}" if abs(float(v)) < 1000 else f"{v:,.0f}"
        return str(v)

    cells = [[str(i)] + [fmt(v) for v in row] for i, row in zip(table.index, table.to_numpy(),
                                                                strict=True)]
    header = ["kpi", *map(str, table.columns)]
    widths = [max(len(r[c]) for r in [header, *cells]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) if c == 0 else h.rjust(w)
                       for c, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(v.ljust(w) if c == 0 else v.rjust(w)
                               for c, (v, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def _names(dirs: list[Path]) -> list[str]:
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    return names


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> CompareReport:
    """Write the comparison of finished runs to ``out_dir`` (see the module docstring)."""
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not d.is_dir():
            raise CompareError(f"{d}: no such run folder")
        if not is_complete(d):
            raise CompareError(f"{d}: the run is incomplete (INCOMPLETE mark or no run.json); "
                               "re-run it before comparing")
    names = _names(dirs)
    kpis = [json.loads((d / "kpis.json").read_text()) for d in dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = kpi_table(kpis, names)
    table.to_csv(out / "kpis.csv")
    datasets = [open_results(d) for d in dirs]
    plots = {
        "fleet_flows": _plot_flows(datasets, names, out / "fleet_flows.png"),
        "daily_cost": _plot_daily_cost(datasets, names, out / "daily_cost.png"),
        "battery_soc": _plot_soc(datasets, names, out / "battery_soc.png"),
        "peak_import": _plot_peaks(kpis, names, out / "peak_import.png"),
    }
    text = format_table(table)
    html_path = out / "report.html"
    html_path.write_text(_html(table, names, plots))
    return CompareReport(table, text, html_path, plots)


def _fleet_series(ds: Any, name: str) -> pd.Series:
    values = ds[name].sum("site").values.astype(np.float64) / 1000.0  # MW
    series = pd.Series(values, index=pd.DatetimeIndex(ds["time"].values))
    if len(series) > _MAX_POINTS:
        every = int(np.ceil(len(series) / _MAX_POINTS))
        series = series.groupby(np.arange(len(series)) // every).mean()
        series.index = pd.DatetimeIndex(ds["time"].values[::every][:len(series)])
    return series


def _plot_flows(datasets: list[Any], names: list[str], path: Path) -> Path:
    fig = Figure(figsize=(11, 6), layout="constrained")
    ax_net, ax_bat = fig.subplots(2, 1, sharex=True)
    for ds, name in zip(datasets, names, strict=True):
        ax_net.plot(_fleet_series(ds, "net_kw"), lw=0.8, label=name)
        ax_bat.plot(_fleet_series(ds, "battery_kw"), lw=0.8, label=name)
    ax_net.set_ylabel("grid exchange [MW]\n(+ export)")
    ax_bat.set_ylabel("battery [MW]\n(+ discharge)")
    ax_net.legend(loc="upper right", fontsize="small")
    ax_net.set_title("Fleet flows")
    fig.savefig(path, dpi=90)
    return path


def daily_cost_eur(ds: Any) -> pd.Series:
    """Net energy cost of the fleet per UTC day [EUR] from a results dataset."""
    step_h = float(ds.attrs.get("step_s", 900.0)) / 3600.0
    imp = ds["import_kw"].sum("site").values.astype(np.float64)
    exp = ds["export_kw"].sum("site").values.astype(np.float64)
    cost = (imp * ds["price_eur_per_mwh"].values - exp * ds["feed_in_eur_per_mwh"].values)
    series = pd.Series(cost * step_h / 1000.0, index=pd.DatetimeIndex(ds["time"].values))
    return series.resample("1D").sum()


def _plot_daily_cost(datasets: list[Any], names: list[str], path: Path) -> Path:
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    for ds, name in zip(datasets, names, strict=True):
        cost = daily_cost_eur(ds)
        ax.step(cost.index, cost.to_numpy() / 1000.0, where="post", label=name)
    ax.set_ylabel("net energy cost [kEUR/day]")
    ax.set_title("Daily cost (import cost minus export revenue)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=90)
    return path


def _plot_soc(datasets: list[Any], names: list[str], path: Path) -> Path:
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 41)
    for ds, name in zip(datasets, names, strict=True):
        if "device_soc" not in ds:
            continue
        soc = ds["device_soc"].values.ravel()
        soc = soc[np.isfinite(soc)]
        if soc.size:
            ax.hist(soc, bins=bins, histtype="step", density=True, label=name)
    ax.set_xlabel("state of charge")
    ax.set_ylabel("density")
    ax.set_title("Battery SoC distribution (all batteries, all steps)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=90)
    return path


def _plot_peaks(kpis: list[dict[str, Any]], names: list[str], path: Path) -> Path:
    base = kpis[0]["sites"]
    top = sorted(base, key=lambda s: -(base[s]["peak_import_kw"] or 0.0))[:25]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(kpis)
    x = np.arange(len(top))
    for j, (k, name) in enumerate(zip(kpis, names, strict=True)):
        vals = [(k["sites"].get(s, {}).get("peak_import_kw") or 0.0) / 1000.0 for s in top]
        ax.bar(x + j * width, vals, width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, top, rotation=90, fontsize="x-small")
    ax.set_ylabel("peak import [MW]")
    ax.set_title("Peak import by site (the 25 largest in the first run)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=90)
    return path


def _html(table: pd.DataFrame, names: list[str], plots: dict[str, Path]) -> str:
    def img(path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'

    body = table.to_html(na_rep="-", float_format=lambda v: f"{v:,.3f}", border=0)
    figures = "\n".join(f"<h2>{html.escape(k.replace('_', ' '))}</h2>\n{img(p)}"
                        for k, p in plots.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Scenario comparison: {html.escape(', '.join(names))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{padding:3px 8px;text-align:right}}
tr:nth-child(even){{background:#f3f3f3}}img{{max-width:100%}}</style></head>
<body><h1>Scenario comparison</h1>
<p>Runs: {html.escape(', '.join(names))}. Differences (Δ) are against the first run.</p>
{body}
{figures}
</body></html>
"""
