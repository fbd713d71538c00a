"""Load profiles: fraction of peak for each load class, by each site's local time.

Four classes, matching ``twin.fleet.LOAD_PROFILES``: residential (morning and
evening peaks), commercial (weekday working hours), industrial (two shifts on
weekdays), flat. A small seeded noise (a few percent) makes sites differ.
"""

from __future__ import annotations

import numpy as np

from scenarios.markets import local_hours


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


class LoadProfiles:
    """Per-site load fractions for the twin's ``load_frac`` input.

    Parameters
    ----------
    site_timezone : (n_sites,) array of str
        IANA time zone of each site.
    rng : numpy.random.Generator
        Random stream for the noise.
    noise : float
        Relative standard deviation of the multiplicative noise.
    """

    def __init__(self, site_timezone: np.ndarray, rng: np.random.Generator, noise: float = 0.04):
        self.site_timezone = np.asarray(site_timezone, dtype=object)
        self.zones = sorted(set(self.site_timezone.tolist()))
        self.site_zone = np.array([self.zones.index(z) for z in self.site_timezone], dtype=int)
        self.rng = rng
        self.noise = noise

    def generate(self, unix_s: np.ndarray) -> np.ndarray:
        """Fractions of peak, shape (n_times, n_sites, 4)."""
        unix_s = np.asarray(unix_s, dtype=np.float64)
        per_zone = np.stack([load_shapes(*local_hours(unix_s, z)) for z in self.zones], axis=1)
        frac = per_zone[:, self.site_zone, :]
        if self.noise > 0:
            frac = frac * (1.0 + self.noise * self.rng.standard_normal(frac.shape))
        return np.ascontiguousarray(np.clip(frac, 0.0, 1.0))


