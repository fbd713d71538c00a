"""Energy analytics and power history of the fleet, from the one telemetry store.

The definitions (generation = PV, consumption = load + EV, grid exchange split
into import and export, cost = import x import price, revenue = export x
export price, CO2 avoided = generation x intensity) and the per-snapshot
arithmetic (:func:`twin.kpis.energy_steps`: each value held until the next for
at most ``max_gap_s``) are :mod:`twin.kpis`'s. This module reads the store
(:class:`adapters.history.History`) block by block, so memory stays bounded for
any range and fleet, from the tier the range calls for (:func:`read_plan`):
raw snapshots while the range is short and inside raw retention, 5-minute or
hourly means beyond. A bucket mean is energy-exact (a mean power times the
bucket length); the import/export split of a bucket uses the bucket's mean net
power, so flows that change sign inside a bucket net out there.

Energies in kWh, money in EUR, CO2 in kg. :func:`energy_table` aggregates per
period (and site); :func:`power_flows` gives ``/history``'s series;
:func:`to_csv` and :func:`to_parquet` export a table.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr

from adapters.history import History
from adapters.registry import RegistryError
from adapters.storage import MAX_POINTS, bucket_means, check_range
from twin.fleet import Fleet
from twin.kpis import QUANTITIES, Tariff, device_flows, energy_steps

FREQ: dict[str, str] = {"hour": "1h", "day": "1D", "month": "1MS"}
FLOWS: tuple[str, ...] = ("generation_kw", "consumption_kw", "battery_kw", "grid_kw")
TIERS_S: dict[str, float] = {"5m": 300.0, "1h": 3600.0}  # the store's rollups [s]
BLOCK_ROWS = 512  # rows read at once (x devices: the memory bound)
MAX_RANGE_S = 400 * 86400.0


class AnalyticsError(ValueError):
    """A bad analytics request (range, resolution, site); names what is wrong."""


@dataclass(frozen=True)
class ReadPlan:
    """How a range is read: the store's tier (``raw``, ``5m``, ``1h``), the bucket length
    asked of it (None: raw snapshots), the resolution of what comes back [s], and the
    longest time a value holds [s]."""

    tier: str
    every_s: float | None
    resolution_s: float
    max_gap_s: float

    @property
    def last_s(self) -> float:
        """How long the last value of a range holds [s]: a bucket mean for its bucket, a
        raw snapshot not at all (nothing says how long it held)."""
        return 0.0 if self.every_s is None else self.resolution_s


def read_plan(start_s: float, end_s: float, now_s: float, *, raw_step_s: float,
              raw_days: float, every_s: float | None = None,
              max_rows: int = MAX_POINTS) -> ReadPlan:
    """The tier a range is read from.

    Raw snapshots (``raw_step_s`` apart) while the range starts inside raw retention
    (``raw_days``), ``every_s`` is unset or finer than the first rollup, and the
    snapshots fit ``max_rows``; else the finest rollup not finer than ``every_s``
    (when given) that fits ``max_rows`` rows.
    """
    span = end_s - start_s
    in_raw = start_s >= now_s - raw_days * 86400.0
    if in_raw and (every_s is None or every_s < TIERS_S["5m"]) and span / raw_step_s <= max_rows:
        return ReadPlan("raw", None, raw_step_s, 3.0 * raw_step_s)
    if every_s is None or every_s < TIERS_S["1h"]:
        res = max(TIERS_S["5m"], every_s or 0.0)
        if span / res <= max_rows:
            return ReadPlan("5m", res, res, res)
    res = max(TIERS_S["1h"], every_s or 0.0)
    return ReadPlan("1h", res, res, res)


def power_blocks(history: History, fleet: Fleet, start_s: float, end_s: float,
                 plan: ReadPlan, devices: list[str] | None = None, *, now_s: float
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """``p_kw`` of ``devices`` (default: the fleet's, in row order) over ``[start_s, end_s)``,
    block by block: yields ``(t_s (n,), p_kw (n, n_devices), block_end_s)`` [Unix s, kW]
    with NaN for a device without a value. A block holds the rows before
    ``block_end_s`` and one row after (so a held value knows when the next one came);
    callers count only the rows before ``block_end_s``."""
    ids = devices if devices is not None else fleet.device_id.tolist()
    step = plan.resolution_s * BLOCK_ROWS
    t0 = start_s
    if plan.every_s is not None:  # whole buckets of the store's (UTC-aligned) grid
        t0 = math.floor(start_s / plan.resolution_s) * plan.resolution_s
    while t0 < end_s:
        t1 = min(end_s, t0 + step)
        ahead = min(end_s, t1 + plan.resolution_s)
        got = history.read(t0, ahead, "p_kw", devices=ids, every_s=plan.every_s,
                           missing="nan", now_s=now_s)
        yield got.t_s, got.values, t1
        t0 = t1


def _devices_of(fleet: Fleet, site_id: str | None) -> tuple[list[str], np.ndarray]:
    """The ids and types of the fleet's devices, or of one site's."""
    if site_id is None:
        return fleet.device_id.tolist(), fleet.device_type
    srow = fleet.site_row.get(site_id)
    if srow is None:
        raise RegistryError(f"no site {site_id!r}")
    rows = np.flatnonzero(fleet.device_site == srow)
    return fleet.device_id[rows].tolist(), fleet.device_type[rows]


def power_flows(history: History, fleet: Fleet, start_s: float, end_s: float, *,
                now_s: float, raw_step_s: float, raw_days: float,
                every_s: float | None = None, site_id: str | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], ReadPlan]:
    """Generation, consumption, battery and grid power [kW] of the fleet or one site.

    Per snapshot or bucket, from the devices' ``p_kw`` (a device without a value
    counts as 0; a row where no device of the selection has a value gives NaN), as
    :func:`twin.kpis.device_flows` defines them. With ``every_s`` the flows are
    averaged over buckets of that length (times are the bucket starts; empty buckets
    are left out). Returns the times [Unix s], the four series and the read plan
    (its ``resolution_s`` is what the answer states: the bucket length when raw snapshots
    were averaged into ``every_s`` buckets).

    Raises
    ------
    RegistryError
        For an unknown site (HTTP 404).
    adapters.history.HistoryError
        For a bad range (HTTP 400).
    """
    check_range(start_s, end_s, every_s)
    ids, types = _devices_of(fleet, site_id)
    plan = read_plan(start_s, end_s, now_s, raw_step_s=raw_step_s, raw_days=raw_days,
                     every_s=every_s)
    one_site = np.zeros(len(types), dtype=np.int64)  # the selection summed as one site
    times, parts = [], []
    if ids:
        for t, p, block_end in power_blocks(history, fleet, start_s, end_s, plan, ids,
                                            now_s=now_s):
            keep = t < block_end
            t, p = t[keep], p[keep]
            f = device_flows(p, types, one_site, 1)
            flows = np.stack([f[k][:, 0] for k in FLOWS])
            flows[:, np.isnan(p).all(axis=1)] = np.nan
            times.append(t)
            parts.append(flows)
    t_all = np.concatenate(times) if times else np.zeros(0)
    series = list(np.concatenate(parts, axis=1)) if parts else [np.zeros(0)] * len(FLOWS)
    if every_s is not None and plan.every_s is None:  # raw snapshots: their flows averaged
        t_all, series = bucket_means(t_all, series, start_s, every_s)
        plan = replace(plan, resolution_s=float(every_s))
    return t_all, dict(zip(FLOWS, series, strict=True)), plan


def _table(steps: dict[str, np.ndarray], t_s: np.ndarray, fleet: Fleet, every: str,
           scope: str, site_id: str | None) -> pd.DataFrame:
    """Per-snapshot site energies (:func:`twin.kpis.energy_steps`) summed per period."""
    sites = fleet.site_id.tolist()
    ds = xr.Dataset({k: (("time", "site"), v) for k, v in steps.items()},
                    coords={"time": pd.to_datetime(np.asarray(t_s), unit="s"), "site": sites})
    if site_id is not None:
        ds = ds.sel(site=[site_id])
    if scope == "fleet":
        ds = ds.sum("site")
    cols = ["period", *(["site_id"] if scope == "site" else []), *QUANTITIES]
    if ds.sizes["time"] == 0:
        return pd.DataFrame(columns=cols)
    counts = ds["generation_kwh"].resample(time=FREQ[every]).count()
    agg = ds.resample(time=FREQ[every]).sum()
    df = agg.to_dataframe().reset_index()
    cnt = counts.to_dataframe(name="n").reset_index()
    df = df[cnt["n"].to_numpy() > 0]
    df = df.rename(columns={"time": "period", "site": "site_id"})
    df["period"] = pd.to_datetime(df["period"]).dt.tz_localize("UTC")
    return df[cols].reset_index(drop=True)


def _check(every: str, scope: str, fleet: Fleet, site_id: str | None) -> None:
    if every not in FREQ:
        raise AnalyticsError(f"every must be one of {list(FREQ)}, got {every!r}")
    if scope not in ("fleet", "site"):
        raise AnalyticsError(f"scope must be 'fleet' or 'site', got {scope!r}")
    if site_id is not None and site_id not in fleet.site_row:
        raise RegistryError(f"no site {site_id!r}")


def aggregate(fleet: Fleet, t_s: np.ndarray, p_kw: np.ndarray, tariff: Tariff,
              every: str = "day", scope: str = "fleet", site_id: str | None = None,
              max_gap_s: float = 60.0) -> pd.DataFrame:
    """Aggregates of device powers ``p_kw`` (n_times, n_devices) at times ``t_s`` per
    period (and per site with ``scope="site"``).

    Parameters
    ----------
    every : {"hour", "day", "month"}
        Period (UTC boundaries).
    scope : {"fleet", "site"}
        Sum over the fleet, or one row per site and period.
    site_id : str, optional
        Only this site.

    Returns
    -------
    pandas.DataFrame
        Columns ``period`` (UTC start), ``site_id`` (scope "site"), then
        :data:`twin.kpis.QUANTITIES`; periods without data are left out.
    """
    _check(every, scope, fleet, site_id)
    steps = energy_steps(fleet, t_s, p_kw, tariff, max_gap_s)
    return _table(steps, t_s, fleet, every, scope, site_id)


def energy_table(history: History, fleet: Fleet, start_s: float, end_s: float,
                 tariff: Tariff, *, now_s: float, raw_step_s: float, raw_days: float,
                 every: str = "day", scope: str = "fleet", site_id: str | None = None
                 ) -> tuple[pd.DataFrame, ReadPlan]:
    """:func:`aggregate` over ``[start_s, end_s)`` of the store, read block by block from
    the tier the range calls for (finer than an hour for hourly periods)."""
    _check(every, scope, fleet, site_id)
    if not end_s > start_s:
        raise AnalyticsError(f"end_s ({end_s}) must be after start_s ({start_s})")
    if end_s - start_s > MAX_RANGE_S:
        raise AnalyticsError(f"a range is at most {MAX_RANGE_S / 86400:.0f} days")
    plan = read_plan(start_s, end_s, now_s, raw_step_s=raw_step_s, raw_days=raw_days,
                     max_rows=math.inf if every == "hour" else MAX_POINTS)
    tables = []
    for t, p, block_end in power_blocks(history, fleet, start_s, end_s, plan, now_s=now_s):
        if len(t) == 0:
            continue
        steps = energy_steps(fleet, t, p, tariff, plan.max_gap_s, plan.last_s)
        keep = t < block_end  # the look-ahead row counts in the next block
        tables.append(_table({k: v[keep] for k, v in steps.items()}, t[keep], fleet, every,
                             scope, site_id))
    keys = ["period", *(["site_id"] if scope == "site" else [])]
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=[*keys, *QUANTITIES]), plan
    df = pd.concat(tables).groupby(keys, as_index=False)[list(QUANTITIES)].sum()
    return df.sort_values(keys).reset_index(drop=True), plan


def to_csv(df: pd.DataFrame) -> bytes:
    """The table as CSV (periods in ISO 8601 UTC)."""
    out = df.copy()
    if "period" in out:
        out["period"] = out["period"].map(lambda x: x.isoformat())
    return out.to_csv(index=False).encode()


def to_parquet(df: pd.DataFrame) -> bytes:
    """The table as Parquet (pyarrow)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def records(df: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready rows (periods as ISO 8601, numbers rounded to 6 decimals)."""
    out = []
    for row in df.to_dict(orient="records"):
        rec: dict[str, object] = {}
        for k, v in row.items():
            if k == "period":
                rec[k] = pd.Timestamp(v).isoformat()
            elif isinstance(v, float | np.floating):
                rec[k] = round(float(v), 6)
            else:
                rec[k] = v
        out.append(rec)
    return out
