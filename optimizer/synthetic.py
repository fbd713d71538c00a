"""A plausible, deterministic forecast for examples, tests and benchmarks.

Clear-sky PV from the twin's physics, daily load shapes per profile class,
a day-ahead-like price with a midday dip and an evening peak (the feed-in
tariff follows it and can go negative), a carbon intensity curve, and EV
sessions: about half the chargers have a car at the start and more arrive
during the horizon.
"""

from __future__ import annotations

import numpy as np

from optimizer.forecast import clear_sky_pv_forecast, load_forecast
from optimizer.types import EvSessions, Forecast
from twin.fleet import Fleet
from twin.profiles import load_shapes, weekday_of


def day_ahead_import_price(t_s: np.ndarray) -> np.ndarray:
    """A day-ahead-like import price [EUR/MWh] at UTC times ``t_s`` [Unix s]: a midday dip
    and an evening peak."""
    hour = (np.asarray(t_s, dtype=np.float64) % 86400.0) / 3600.0
    return (70.0 - 45.0 * np.exp(-((hour - 13.0) / 2.5) ** 2)
            + 60.0 * np.exp(-((hour - 19.5) / 1.5) ** 2))


def day_ahead_export_price(t_s: np.ndarray) -> np.ndarray:
    """The feed-in (export) price that follows :func:`day_ahead_import_price` and can go
    negative [EUR/MWh]."""
    return 0.8 * day_ahead_import_price(t_s) - 15.0


def day_ahead_co2(t_s: np.ndarray) -> np.ndarray:
    """A grid carbon intensity curve [kg/MWh], lowest around solar noon (UTC)."""
    hour = (np.asarray(t_s, dtype=np.float64) % 86400.0) / 3600.0
    return 320.0 - 120.0 * np.exp(-((hour - 13.0) / 3.0) ** 2)


def synthetic_inputs(fleet: Fleet, n_steps: int = 96, t0_s: float = 1_717_200_000.0,
                     dt_s: float = 900.0, seed: int = 0) -> Forecast:
    """A forecast of ``n_steps`` steps from ``t0_s`` [Unix s] for ``fleet``."""
    rng = np.random.default_rng(seed)
    times = t0_s + dt_s * np.arange(n_steps)
    pv_site, pv_dev = clear_sky_pv_forecast(fleet, times)
    hour = (times % 86400.0) / 3600.0
    frac = load_shapes(hour, weekday_of(times))  # (t, profiles), UTC clock
    noise = rng.uniform(0.9, 1.1, (n_steps, fleet.n_sites, 1))
    load = load_forecast(fleet, frac[:, None, :] * noise)
    return Forecast(pv_kw=pv_site, load_kw=load,
                    import_price_eur_per_mwh=day_ahead_import_price(times),
                    feed_in_eur_per_mwh=day_ahead_export_price(times),
                    co2_kg_per_mwh=day_ahead_co2(times),
                    ev_sessions=_sessions(fleet, t0_s, n_steps * dt_s, rng),
                    pv_device_kw=pv_dev)


def _sessions(fleet: Fleet, t0_s: float, horizon_s: float,
              rng: np.random.Generator) -> EvSessions:
    chargers = fleet.rows_of_type("ev_charger")
    now = chargers[rng.random(len(chargers)) < 0.5]
    later = chargers[rng.random(len(chargers)) < 0.4]
    rows = np.concatenate([now, later])
    arrival = np.concatenate([np.full(len(now), t0_s),
                              t0_s + rng.uniform(0.1, 0.7, len(later)) * horizon_s])
    stay_s = rng.uniform(1.0, 10.0, len(rows)) * 3600.0
    rate = fleet.ev_max_kw[rows]
    need = np.minimum(rng.uniform(10.0, 60.0, len(rows)), 0.7 * rate * stay_s / 3600.0)
    return EvSessions(charger_row=rows.astype(np.int64), arrival_s=arrival,
                      departure_s=arrival + stay_s, need_kwh=need)
