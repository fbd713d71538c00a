"""Load profiles: fraction of peak for each load class, by each site's local time.

The shapes per class are :func:`twin.profiles.load_shapes`; here they are
evaluated at each site's local time (daylight saving included), with a small
seeded noise (a few percent) so that sites differ.
"""

from __future__ import annotations

import numpy as np

from scenarios.markets import local_hours
from twin.profiles import load_shapes


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


