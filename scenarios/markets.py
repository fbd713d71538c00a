"""Import price, feed-in price and grid carbon intensity series.

Synthetic day-ahead prices: a daily shape in local time (morning and evening
peaks, a midday solar dip, cheaper weekends) plus hourly AR(1) noise from a
seeded stream, held constant over each hour as on a day-ahead market. Or a
day-ahead curve from a CSV (``time``, ``price_eur_per_mwh``), each value held
until the next. Carbon intensity: a daily profile lowest at midday, or a CSV
(``time``, ``co2_kg_per_mwh``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from scenarios.weather import hold_values, read_time_csv


def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def price_shape(local_hour: np.ndarray) -> np.ndarray:
    """Dimensionless daily price shape, about -1..1, by local hour (0..24)."""
    return (0.7 * _bump(local_hour, 8.0, 1.5) + 1.0 * _bump(local_hour, 19.0, 2.0)
            - 0.8 * _bump(local_hour, 13.5, 2.5) - 0.15)


def local_hours(unix_s: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local hour of day (0..24, fractional) and weekday (0 = Monday) of UTC times."""
    unix_s = np.asarray(unix_s, dtype=np.float64)
    if len(unix_s) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    zone = ZoneInfo(timezone)
    offsets = [datetime.fromtimestamp(float(t), tz=zone).utcoffset() for t in
               (unix_s[0], unix_s[-1])]
    if offsets[0] != offsets[1] or offsets[0] is None:  # a clock change inside: ask pandas
        idx = pd.DatetimeIndex(pd.to_datetime(unix_s, unit="s", utc=True)).tz_convert(timezone)
        hour = (idx.hour + idx.minute / 60.0 + idx.second / 3600.0).to_numpy(np.float64)
        return hour, idx.day_of_week.to_numpy()
    local = unix_s + offsets[0].total_seconds()
    hour = (local % 86400.0) / 3600.0
    weekday = ((np.floor(local / 86400.0).astype(np.int64) + 3) % 7)  # 1970-01-01: Thursday
    return hour, weekday


class SyntheticPrices:
    """Seeded synthetic day-ahead import prices [EUR/MWh].

    Parameters
    ----------
    start_s : float
        Unix time of the period start [s] (hour 0 of the noise series).
    timezone : str
        Market time zone for the daily shape.
    rng : numpy.random.Generator
        Random stream.
    mean_eur_per_mwh, daily_amplitude_eur_per_mwh, noise_eur_per_mwh : float
        Level, daily swing and noise standard deviation [EUR/MWh].
    weekend_factor : float
        Multiplies the price on Saturdays and Sundays.
    """

    def __init__(self, start_s: float, timezone: str, rng: np.random.Generator,
                 mean_eur_per_mwh: float = 90.0, daily_amplitude_eur_per_mwh: float = 45.0,
                 noise_eur_per_mwh: float = 8.0, weekend_factor: float = 0.85):
        self.start_s = start_s
        self.timezone = timezone
        self.rng = rng
        self.mean = mean_eur_per_mwh
        self.amplitude = daily_amplitude_eur_per_mwh
        self.noise_sd = noise_eur_per_mwh
        self.weekend_factor = weekend_factor
        self._noise = np.zeros(0)  # hourly AR(1) noise generated so far

    def _hourly_noise(self, upto: int) -> np.ndarray:
        n_old = len(self._noise)
        if upto > n_old:
            z = self.rng.standard_normal(upto - n_old)
            new = np.empty(upto - n_old)
            prev = self._noise[-1] if n_old else 0.0
            for i, zi in enumerate(z):
                prev = 0.8 * prev + 0.6 * zi  # stationary, unit variance
                new[i] = prev
            self._noise = np.concatenate([self._noise, new])
        return self._noise

    def generate(self, unix_s: np.ndarray) -> np.ndarray:
        """Price at each step time [EUR/MWh], constant within each hour."""
        unix_s = np.asarray(unix_s, dtype=np.float64)
        hour_start = np.floor(unix_s / 3600.0) * 3600.0
        hour_idx = ((hour_start - np.floor(self.start_s / 3600.0) * 3600.0) / 3600.0).astype(int)
        noise = self._hourly_noise(int(hour_idx.max()) + 1)[hour_idx]
        hour, weekday = local_hours(hour_start, self.timezone)
        factor = np.where(weekday >= 5, self.weekend_factor, 1.0)
        return (self.mean + self.amplitude * price_shape(hour)) * factor + self.noise_sd * noise


class CsvSeries:
    """A series from a CSV ``time`` column and one value column, held between rows."""

    def __init__(self, path: str, column: str, start_s: float, end_s: float):
        self.frame = read_time_csv(path, (column,))
        self.column = column
        self.source = str(path)
        idx = self.frame.index.to_numpy()
        if idx[0] > start_s:
            hold_values(self.frame, column, np.array([start_s]), self.source)  # raises
        if idx[-1] < end_s - 86400.0:
            raise ValueError(f"{path}: ends at {pd.Timestamp(idx[-1], unit='s', tz='UTC')}, "
                             "more than a day before the period end")

    def generate(self, unix_s: np.ndarray) -> np.ndarray:
        return hold_values(self.frame, self.column, np.asarray(unix_s, dtype=np.float64),
                           self.source)


class CarbonProfile:
    """Grid carbon intensity [kg/MWh]: a mean with a dip around 13:00 local time."""

    def __init__(self, timezone: str, mean_kg_per_mwh: float = 350.0,
                 midday_dip_kg_per_mwh: float = 120.0):
        self.timezone = timezone
        self.mean = mean_kg_per_mwh
        self.dip = midday_dip_kg_per_mwh

    def generate(self, unix_s: np.ndarray) -> np.ndarray:
        hour, _ = local_hours(unix_s, self.timezone)
        return np.maximum(self.mean - self.dip * (_bump(hour, 13.0, 3.0) - 0.25), 0.0)
