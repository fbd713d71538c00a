"""Energy analytics from the zarr telemetry history: per site and fleet, per hour/day/month.

The definitions (generation = PV, consumption = load + EV, grid exchange split
into import and export, cost = import x import price, revenue = export x
export price, CO2 avoided = generation x intensity) and the per-snapshot
arithmetic (:func:`twin.kpis.energy_steps`: each snapshot's power held until
the next for at most ``max_gap_s``) live in :mod:`twin.kpis`; this module
reads the history and a carbon intensity CSV and groups with xarray.

Energies in kWh, money in EUR, CO2 in kg. :func:`aggregate` groups;
:func:`to_csv` and :func:`to_parquet` export a table.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from twin.fleet import Fleet
from twin.kpis import QUANTITIES, Tariff, energy_steps

FREQ: dict[str, str] = {"hour": "1h", "day": "1D", "month": "1MS"}


class AnalyticsError(ValueError):
    """A bad analytics request (range, resolution, site, carbon file); names what is wrong."""


def read_carbon_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Carbon intensity from a CSV with columns ``time`` (ISO 8601 or Unix s) and
    ``co2_kg_per_mwh``, as the step series a :class:`twin.kpis.Tariff` takes:
    (times [Unix s], intensities [kg/MWh])."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise AnalyticsError(f"cannot read the carbon intensity file {path}: {exc}") from None
    missing = {"time", "co2_kg_per_mwh"} - set(df.columns)
    if missing:
        raise AnalyticsError(f"carbon intensity file {path} lacks column(s) {sorted(missing)}")
    t = df["time"]
    try:
        idx = pd.to_datetime(t, unit="s", utc=True) if pd.api.types.is_numeric_dtype(t) \
            else pd.to_datetime(t, utc=True)
    except (ValueError, TypeError) as exc:
        raise AnalyticsError(f"carbon intensity file {path}: bad time column ({exc})") from None
    t_s = np.asarray((idx - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=float)
    co2 = pd.to_numeric(df["co2_kg_per_mwh"], errors="coerce").to_numpy(dtype=float)
    if len(co2) == 0 or not np.all(np.isfinite(co2)) or not np.all(np.isfinite(t_s)):
        raise AnalyticsError(f"carbon intensity file {path}: needs at least one row, each "
                             "with a time and a number co2_kg_per_mwh")
    return t_s, co2


def read_history(path: str | Path, start_s: float, end_s: float
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Snapshot times [s], ``p_kw`` (n_times, n_devices) and device ids of a history range
    ``start_s <= t < end_s``."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise AnalyticsError(f"no telemetry history at {path}")
    g = zarr.open_group(str(path), mode="r")
    t = np.asarray(g["t_s"][:], dtype=np.float64)
    i0, i1 = np.searchsorted(t, start_s, "left"), np.searchsorted(t, end_s, "left")
    p = np.asarray(g["p_kw"][i0:i1], dtype=np.float64)
    return t[i0:i1], p, list(g.attrs["device_ids"])


def aggregate(fleet: Fleet, t_s: np.ndarray, p_kw: np.ndarray, tariff: Tariff,
              every: str = "day", scope: str = "fleet", site_id: str | None = None,
              max_gap_s: float = 60.0) -> pd.DataFrame:
    """Aggregates per period (and per site with ``scope="site"``).

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
        :data:`QUANTITIES`; periods without data are left out.
    """
    if every not in FREQ:
        raise AnalyticsError(f"every must be one of {list(FREQ)}, got {every!r}")
    if scope not in ("fleet", "site"):
        raise AnalyticsError(f"scope must be 'fleet' or 'site', got {scope!r}")
    steps = energy_steps(fleet, t_s, p_kw, tariff, max_gap_s)
    sites = fleet.site_id.tolist()
    ds = xr.Dataset({k: (("time", "site"), v) for k, v in steps.items()},
                    coords={"time": pd.to_datetime(np.asarray(t_s), unit="s"), "site": sites})
    if site_id is not None:
        if site_id not in fleet.site_row:
            raise AnalyticsError(f"no site {site_id!r}")
        ds = ds.sel(site=[site_id])
    if scope == "fleet":
        ds = ds.sum("site")
    if ds.sizes["time"] == 0:
        cols = ["period", *(["site_id"] if scope == "site" else []), *QUANTITIES]
        return pd.DataFrame(columns=cols)
    counts = ds["generation_kwh"].resample(time=FREQ[every]).count()
    agg = ds.resample(time=FREQ[every]).sum()
    df = agg.to_dataframe().reset_index()
    cnt = counts.to_dataframe(name="n").reset_index()
    df = df[cnt["n"].to_numpy() > 0]
    df = df.rename(columns={"time": "period", "site": "site_id"})
    df["period"] = pd.to_datetime(df["period"]).dt.tz_localize("UTC")
    keep = ["period", *(["site_id"] if scope == "site" else []), *QUANTITIES]
    return df[keep].reset_index(drop=True)


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
