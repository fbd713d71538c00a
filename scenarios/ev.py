"""EV sessions: seeded arrivals at the chargers and plugging them into the twin.

Arrivals are a Poisson process per connector whose rate follows a daily bell
around ``arrival_hour_mean`` (local time of the scenario). Each session wants
a normally distributed energy (clipped to 2..120 kWh) and stays an
exponentially distributed time (at least 15 minutes). Sessions that find
every connector of their charger busy are turned away.

:func:`plug_in_batch` plugs a whole batch in one compiled pass on the twin's
state arrays (the same kernel as :meth:`twin.model.Twin.plug_in`).
"""

from __future__ import annotations

import numpy as np

from scenarios.markets import local_hours
from twin.kernels import plug_in_sessions


class EvArrivals:
    """Seeded EV arrivals at the chargers of a fleet.

    Parameters
    ----------
    charger_rows : (n_chargers,) array
        Device rows of the EV chargers.
    connectors : (n_chargers,) array
        Connectors of each charger.
    timezone : str
        Time zone of the daily arrival pattern.
    dt_s : float
        Step [s].
    rng : numpy.random.Generator
        Random stream.
    sessions_per_connector_per_day, growth, arrival_hour_mean, arrival_hour_sd,
    dwell_h_mean, energy_kwh_mean, energy_kwh_sd : float
        Behaviour, see ``scenarios.schema.EvSpec``.
    """

    def __init__(self, charger_rows: np.ndarray, connectors: np.ndarray, timezone: str,
                 dt_s: float, rng: np.random.Generator, sessions_per_connector_per_day: float,
                 growth: float, arrival_hour_mean: float, arrival_hour_sd: float,
                 dwell_h_mean: float, energy_kwh_mean: float, energy_kwh_sd: float):
        self.charger_rows = np.asarray(charger_rows, dtype=np.int64)
        weights = np.asarray(connectors, dtype=np.float64)
        self.cum_weight = np.cumsum(weights) / weights.sum() if weights.sum() > 0 else weights
        self.total_connectors = float(weights.sum())
        self.timezone = timezone
        self.dt_h = dt_s / 3600.0
        self.rng = rng
        self.rate_per_day = sessions_per_connector_per_day * growth
        self.hour_mean = arrival_hour_mean
        self.hour_sd = max(arrival_hour_sd, 0.25)
        self.dwell_h_mean = dwell_h_mean
        self.energy_mean = energy_kwh_mean
        self.energy_sd = energy_kwh_sd

    def generate(self, unix_s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sessions arriving in the given steps.

        Returns ``(step, charger_row, need_kwh, departure_s)``, sorted by step
        (index into ``unix_s``).
        """
        unix_s = np.asarray(unix_s, dtype=np.float64)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0),
                 np.zeros(0))
        if len(self.charger_rows) == 0 or self.rate_per_day <= 0:
            return empty
        hour, _ = local_hours(unix_s, self.timezone)
        d = (hour - self.hour_mean + 12.0) % 24.0 - 12.0
        density = np.exp(-0.5 * (d / self.hour_sd) ** 2) / (self.hour_sd * np.sqrt(2 * np.pi))
        lam = self.rate_per_day * self.total_connectors * density * self.dt_h
        counts = self.rng.poisson(lam)
        step = np.repeat(np.arange(len(unix_s)), counts)
        n = len(step)
        if n == 0:
            return empty
        which = np.searchsorted(self.cum_weight, self.rng.random(n), side="right")
        which = np.minimum(which, len(self.charger_rows) - 1)
        need = np.clip(self.energy_mean + self.energy_sd * self.rng.standard_normal(n), 2.0, 120.0)
        dwell_h = np.maximum(self.rng.exponential(self.dwell_h_mean, n), 0.25)
        return step, self.charger_rows[which], need, unix_s[step] + dwell_h * 3600.0


def plug_in_batch(conn_start: np.ndarray, conn_stop: np.ndarray, conn_need_kwh: np.ndarray,
                  conn_departure_s: np.ndarray, charger_rows: np.ndarray, need_kwh: np.ndarray,
                  departure_s: np.ndarray) -> int:
    """Put sessions on the first free connector of their charger; returns how many fit.

    The compiled :func:`twin.kernels.plug_in_sessions` (what
    :meth:`twin.model.Twin.plug_in` uses), on the twin's state arrays in place.
    """
    taken = np.zeros(len(charger_rows), dtype=np.bool_)
    return plug_in_sessions(conn_start, conn_stop, conn_need_kwh, conn_departure_s,
                            charger_rows, need_kwh, departure_s, taken)
