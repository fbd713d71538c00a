"""Energy analytics from the zarr telemetry history: per site and fleet, per hour/day/month.

Method (docs/analytics.md):

* each history snapshot's power holds until the next snapshot, for at most
  ``max_gap_s`` (a longer gap counts as missing data, not as energy); the
  last snapshot of a range counts for nothing;
* generation = PV output; consumption = load and EV charging; the site's grid
  exchange is the sum of all its devices' powers (positive = export), split
  into export and import; self-consumption = generation - export (not below 0);
* cost = import x import price; revenue = export x export price [EUR];
* CO2 avoided = generation x grid carbon intensity [kg], the intensity being a
  constant or a time series (CSV ``time,co2_kg_per_mwh``), held per snapshot.

Energies in kWh, money in EUR, CO2 in kg. :func:`energy_steps` is the pure
array function; :func:`aggregate` groups with xarray; :func:`to_csv` and
:func:`to_parquet` export a table.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from twin.fleet import EV_CHARGER, LOAD, PV, Fleet

QUANTITIES: tuple[str, ...] = ("generation_kwh", "consumption_kwh", "import_kwh", "export_kwh",
                               "self_consumption_kwh", "cost_eur", "revenue_eur",
                               "co2_avoided_kg")
FREQ: dict[str, str] = {"hour": "1h", "day": "1D", "month": "1MS"}


class AnalyticsError(ValueError):
    """A bad analytics request (range, resolution, site, carbon file); names what is wrong."""


@dataclass(frozen=True)
class Tariff:
    """Prices and carbon intensity.

    Parameters
    ----------
    import_eur_per_mwh : float
        Price of imported energy [EUR/MWh].
    export_eur_per_mwh : float
        Price paid for exported energy [EUR/MWh].
    co2_kg_per_mwh : float or pandas.Series
        Grid carbon intensity [kg/MWh]: a constant or a series indexed by UTC time.
    """

    import_eur_per_mwh: float = 250.0
    export_eur_per_mwh: float = 90.0
    co2_kg_per_mwh: float | pd.Series = 300.0

    def intensity_at(self, t_s: np.ndarray) -> np.ndarray:
        """Carbon intensity at each time [kg/MWh] (a series is held from each of its times)."""
        if not isinstance(self.co2_kg_per_mwh, pd.Series):
            return np.full(len(t_s), float(self.co2_kg_per_mwh))
        s = self.co2_kg_per_mwh.sort_index()
        idx = np.asarray((s.index - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1),
                         dtype=np.float64)
        pos = np.searchsorted(idx, t_s, side="right") - 1
        return np.asarray(s.to_numpy(dtype=np.float64))[np.clip(pos, 0, len(s) - 1)]


def read_carbon_csv(path: str | Path) -> pd.Series:
    """Carbon intensity from a CSV with columns ``time`` (ISO 8601 or Unix s) and
    ``co2_kg_per_mwh``."""
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
    return pd.Series(df["co2_kg_per_mwh"].to_numpy(dtype=float), index=idx)


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


def energy_steps(fleet: Fleet, t_s: np.ndarray, p_kw: np.ndarray, tariff: Tariff,
                 max_gap_s: float = 60.0) -> dict[str, np.ndarray]:
    """Per-snapshot, per-site energy, money and CO2 (see the module docstring).

    Parameters
    ----------
    fleet : Fleet
        Device types and sites (device rows = columns of ``p_kw``).
    t_s : (n_times,) array
        Snapshot times [Unix s], increasing.
    p_kw : (n_times, n_devices) array
        Device powers [kW] (NaN: no value, counts as 0).
    tariff : Tariff
        Prices and carbon intensity.
    max_gap_s : float
        Longest time a snapshot's power is held [s].

    Returns
    -------
    dict of (n_times, n_sites) arrays
        One per name of :data:`QUANTITIES`.
    """
    t = np.asarray(t_s, dtype=np.float64)
    p = np.nan_to_num(np.asarray(p_kw, dtype=np.float64))
    dt_h = np.zeros(len(t))
    if len(t) > 1:
        dt_h[:-1] = np.minimum(np.diff(t), max_gap_s) / 3600.0
    e = p * dt_h[:, None]  # kWh per device and step, signed
    types = fleet.device_type
    site = fleet.device_site
    n_sites = fleet.n_sites

    def by_site(x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], n_sites))
        np.add.at(out.T, site, x.T)
        return out

    gen = by_site(np.where(types == PV, e.clip(min=0), 0.0))
    use = by_site(np.where((types == LOAD) | (types == EV_CHARGER), (-e).clip(min=0), 0.0))
    net = by_site(e)
    export, imp = net.clip(min=0), (-net).clip(min=0)
    co2 = tariff.intensity_at(t)[:, None]
    return {"generation_kwh": gen, "consumption_kwh": use, "import_kwh": imp,
            "export_kwh": export, "self_consumption_kwh": (gen - export).clip(min=0),
            "cost_eur": imp * tariff.import_eur_per_mwh / 1000.0,
            "revenue_eur": export * tariff.export_eur_per_mwh / 1000.0,
            "co2_avoided_kg": gen * co2 / 1000.0}


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
