"""Typical load shapes per profile class, as a fraction of the load's peak.

Hourly shapes (local clock time) for workdays and weekends, interpolated
linearly between hours. They give the twin's ``load_frac`` input when no
measured load is at hand (demo, scenarios, forecasts' prior).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from twin.fleet import LOAD_PROFILES

# Fraction of peak at local hours 0..23: (workday, weekend), per class in LOAD_PROFILES order.
_SHAPES: dict[str, tuple[list[float], list[float]]] = {
    "residential": (
        [0.30, 0.25, 0.22, 0.21, 0.21, 0.25, 0.45, 0.65, 0.55, 0.40, 0.35, 0.35,
         0.38, 0.35, 0.33, 0.35, 0.45, 0.65, 0.85, 1.00, 0.95, 0.80, 0.60, 0.40],
        [0.35, 0.28, 0.24, 0.22, 0.22, 0.24, 0.30, 0.42, 0.58, 0.65, 0.66, 0.68,
         0.70, 0.62, 0.55, 0.55, 0.60, 0.72, 0.88, 1.00, 0.95, 0.82, 0.65, 0.45],
    ),
    "commercial": (
        [0.25, 0.24, 0.24, 0.24, 0.25, 0.30, 0.45, 0.70, 0.90, 0.98, 1.00, 1.00,
         0.97, 0.98, 0.98, 0.95, 0.90, 0.78, 0.55, 0.40, 0.33, 0.30, 0.28, 0.26],
        [0.24, 0.23, 0.23, 0.23, 0.23, 0.24, 0.26, 0.30, 0.36, 0.40, 0.42, 0.42,
         0.41, 0.40, 0.38, 0.36, 0.34, 0.32, 0.30, 0.28, 0.27, 0.26, 0.25, 0.24],
    ),
    "industrial": (
        [0.55, 0.55, 0.55, 0.55, 0.57, 0.65, 0.85, 0.95, 1.00, 1.00, 1.00, 0.98,
         0.92, 0.98, 1.00, 1.00, 0.96, 0.88, 0.75, 0.68, 0.62, 0.60, 0.58, 0.56],
        [0.45, 0.45, 0.45, 0.45, 0.45, 0.46, 0.48, 0.50, 0.52, 0.52, 0.52, 0.52,
         0.50, 0.50, 0.50, 0.50, 0.50, 0.49, 0.48, 0.47, 0.46, 0.46, 0.45, 0.45],
    ),
    "flat": ([0.8] * 24, [0.8] * 24),
}
SHAPES = np.array([[_SHAPES[name][0], _SHAPES[name][1]] for name in LOAD_PROFILES])  # (P, 2, 24)


def utc_offset_s(timezones: np.ndarray, unix_s: float) -> np.ndarray:
    """UTC offset [s] of each time zone name at ``unix_s``."""
    when = datetime.fromtimestamp(unix_s, tz=UTC)
    cache: dict[str, float] = {}
    out = np.empty(len(timezones))
    for i, tz in enumerate(timezones):
        if tz not in cache:
            offset = when.astimezone(ZoneInfo(tz)).utcoffset()
            cache[tz] = offset.total_seconds() if offset is not None else 0.0
        out[i] = cache[tz]
    return out


def load_fraction(unix_s: np.ndarray, utc_offset: np.ndarray) -> np.ndarray:
    """Fraction of peak per site and profile class.

    Parameters
    ----------
    unix_s : (T,) array
        UTC times [s].
    utc_offset : (S,) array
        Each site's UTC offset [s] (see :func:`utc_offset_s`).

    Returns
    -------
    (T, S, n_profiles) array of fractions in [0, 1].
    """
    local = np.asarray(unix_s, dtype=np.float64)[:, None] + utc_offset[None, :]
    hour = (local % 86400.0) / 3600.0
    weekday = ((local // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    weekend = (weekday >= 5).astype(np.int64)
    h0 = np.floor(hour).astype(np.int64) % 24
    h1 = (h0 + 1) % 24
    w = (hour - np.floor(hour))[..., None]
    a = SHAPES[:, weekend, h0]  # (P, T, S)
    b = SHAPES[:, weekend, h1]
    frac = np.moveaxis(a, 0, -1) * (1.0 - w) + np.moveaxis(b, 0, -1) * w
    return frac
