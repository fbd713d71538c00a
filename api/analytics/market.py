"""The prices and carbon intensity the service plans and counts with.

One :class:`Market` per service, from the settings: a constant import price,
export price or carbon intensity where one is set
(``ECOGRID_IMPORT_PRICE_EUR_PER_MWH``, ``ECOGRID_EXPORT_PRICE_EUR_PER_MWH``,
``ECOGRID_CO2_KG_PER_MWH``), a carbon intensity series from
``ECOGRID_CARBON_INTENSITY_FILE``, else the day-ahead-like curves of
:mod:`optimizer.synthetic`. The planner's forecast takes its values at the plan
steps; the live KPI ledger, the analytics and the reports value energy with its
:class:`~twin.kpis.Tariff`: one set of numbers, so a plan's expected revenue and
the revenue counted afterwards are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from api.settings import Settings
from optimizer.synthetic import day_ahead_co2, day_ahead_export_price, day_ahead_import_price
from twin.kpis import Tariff


class MarketError(ValueError):
    """A price or carbon intensity input that cannot be used (names the file and why)."""


@dataclass(frozen=True)
class Market:
    """The service's tariff.

    Parameters
    ----------
    tariff : Tariff
        Import price, export price [EUR/MWh] and grid carbon intensity [kg/MWh].
    """

    tariff: Tariff

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Import price, export price [EUR/MWh] and carbon intensity [kg/MWh] at ``t_s``."""
        return self.tariff.at(np.asarray(t_s, dtype=np.float64))


def read_carbon_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Carbon intensity from a CSV with columns ``time`` (ISO 8601 or Unix s) and
    ``co2_kg_per_mwh``, as the step series a :class:`twin.kpis.Tariff` takes:
    (times [Unix s], intensities [kg/MWh])."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise MarketError(f"cannot read the carbon intensity file {path}: {exc}") from None
    missing = {"time", "co2_kg_per_mwh"} - set(df.columns)
    if missing:
        raise MarketError(f"carbon intensity file {path} lacks column(s) {sorted(missing)}")
    t = df["time"]
    try:
        idx = pd.to_datetime(t, unit="s", utc=True) if pd.api.types.is_numeric_dtype(t) \
            else pd.to_datetime(t, utc=True)
    except (ValueError, TypeError) as exc:
        raise MarketError(f"carbon intensity file {path}: bad time column ({exc})") from None
    t_s = np.asarray((idx - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=float)
    co2 = pd.to_numeric(df["co2_kg_per_mwh"], errors="coerce").to_numpy(dtype=float)
    if len(co2) == 0 or not np.all(np.isfinite(co2)) or not np.all(np.isfinite(t_s)):
        raise MarketError(f"carbon intensity file {path}: needs at least one row, each "
                          "with a time and a number co2_kg_per_mwh")
    if np.any(co2 < 0):
        raise MarketError(f"carbon intensity file {path}: co2_kg_per_mwh must not be "
                          "negative")
    return t_s, co2


def service_market(settings: Settings) -> Market:
    """The market of a service with these settings (see the module docstring)."""
    imp = settings.import_price_eur_per_mwh
    exp = settings.export_price_eur_per_mwh
    co2 = (read_carbon_csv(settings.carbon_intensity_file) if settings.carbon_intensity_file
           else settings.co2_kg_per_mwh)
    return Market(Tariff(import_price_eur_per_mwh=day_ahead_import_price if imp is None else imp,
                         export_price_eur_per_mwh=day_ahead_export_price if exp is None else exp,
                         co2_kg_per_mwh=day_ahead_co2 if co2 is None else co2))
