"""Typical load shapes per profile class, and the calendar they follow.

Four classes, matching ``twin.fleet.LOAD_PROFILES``: residential (morning and
evening peaks), commercial (weekday working hours), industrial (two shifts on
weekdays), flat. This is the one statement of the shapes: the scenarios, the
optimizer's synthetic forecast and the demo all use it.

The calendar helpers (:func:`weekday_of`, :func:`day_type`, :func:`time_bin`,
:func:`utc_offset_s`) bin Unix times (UTC) by local day and time of day; the
optimizer's forecasts build their profiles on them. Nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86400.0
N_DAY_TYPES = 3  # Monday-Friday, Saturday, Sunday


def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def _plateau(hour: np.ndarray, on: float, off: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-2.0 * (hour - on))) / (1.0 + np.exp(-2.0 * (off - hour)))


def load_shapes(local_hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Fraction of peak (0..1) per class, shape ``local_hour.shape + (4,)``.

    Parameters
    ----------
    local_hour : array
        Local hour of day (0..24, fractional).
    weekday : array
        Day of week, 0 = Monday.
    """
    work = weekday < 5
    residential = 0.25 + 0.25 * _bump(local_hour, 7.5, 1.5) + 0.55 * _bump(local_hour, 19.5, 2.5)
    commercial = np.where(work, 0.3 + 0.65 * _plateau(local_hour, 8.0, 18.0), 0.3)
    industrial = np.where(work, 0.45 + 0.45 * _plateau(local_hour, 6.0, 22.0), 0.5)
    flat = np.full_like(local_hour, 0.85, dtype=np.float64)
    shapes = np.stack([residential, commercial, industrial, flat], axis=-1)
    return np.minimum(shapes, 1.0)


def weekday_of(unix_s: np.ndarray) -> np.ndarray:
    """Day of week (0 = Monday) of Unix times (1970-01-01 was a Thursday)."""
    return (np.floor(np.asarray(unix_s, dtype=np.float64) / DAY_S).astype(np.int64) + 3) % 7


def day_type(times_s: np.ndarray, utc_offset_s: float = 0.0) -> np.ndarray:
    """Day type of each time: 0 Monday-Friday, 1 Saturday, 2 Sunday.

    Parameters
    ----------
    times_s : array
        Times [Unix s].
    utc_offset_s : float
        Local time minus UTC [s].
    """
    weekday = weekday_of(np.asarray(times_s, dtype=np.float64) + utc_offset_s)
    return np.where(weekday < 5, 0, weekday - 4)


def time_bin(times_s: np.ndarray, bin_s: float, utc_offset_s: float = 0.0) -> np.ndarray:
    """Index of the time-of-day bin of each time (local).

    Parameters
    ----------
    times_s : array
        Times [Unix s].
    bin_s : float
        Bin length [s].
    utc_offset_s : float
        Local time minus UTC [s].
    """
    tod = np.mod(np.asarray(times_s, dtype=np.float64) + utc_offset_s, DAY_S)
    return np.floor(tod / bin_s).astype(np.int64)


def load_fraction(unix_s: np.ndarray, utc_offset_s: np.ndarray) -> np.ndarray:
    """Fraction of peak per time, site and profile class, shape (T, S, 4).

    Parameters
    ----------
    unix_s : (T,) array
        UTC times [s].
    utc_offset_s : (S,) array
        Each site's UTC offset [s] (see :func:`utc_offset_s`).
    """
    local = np.asarray(unix_s, dtype=np.float64)[:, None] + np.asarray(utc_offset_s)[None, :]
    return load_shapes((local % DAY_S) / 3600.0, weekday_of(local))


def utc_offset_s(timezones: np.ndarray, unix_s: float) -> np.ndarray:
    """UTC offset [s] of each IANA time zone name at ``unix_s``."""
    when = datetime.fromtimestamp(unix_s, tz=UTC)
    cache: dict[str, float] = {}
    out = np.empty(len(timezones))
    for i, tz in enumerate(timezones):
        if tz not in cache:
            offset = when.astimezone(ZoneInfo(tz)).utcoffset()
            cache[tz] = offset.total_seconds() if offset is not None else 0.0
        out[i] = cache[tz]
    return out
