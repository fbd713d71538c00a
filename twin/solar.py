"""Sun position and clear-sky irradiance for many sites at once, through pvlib.

pvlib's SPA works on one location at a time; a fleet needs (times x sites)
arrays. The sun's declination and the equation of time depend on time only,
so they are computed once per time step with pvlib's Spencer (1971) formulas,
and pvlib's analytical zenith and azimuth are then broadcast over the sites
(accurate to a few tenths of a degree, plenty for power simulation).
Clear-sky irradiance is pvlib's Ineichen-Perez model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib


def sun_position(lat_deg: np.ndarray, lon_deg: np.ndarray,
                 unix_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solar zenith and azimuth [deg] with shape (n_times, n_sites).

    Parameters
    ----------
    lat_deg, lon_deg : (n_sites,) array
        Site latitude and longitude [deg].
    unix_s : (n_times,) array
        UTC times as Unix seconds.
    """
    unix_s = np.atleast_1d(np.asarray(unix_s, dtype=np.float64))
    times = pd.DatetimeIndex(pd.to_datetime(unix_s, unit="s", utc=True))
    doy = times.day_of_year.to_numpy()
    decl = pvlib.solarposition.declination_spencer71(doy)[:, None]  # [rad]
    eot = pvlib.solarposition.equation_of_time_spencer71(doy)[:, None]  # [min]
    lat = np.asarray(lat_deg, dtype=np.float64)[None, :]
    lon = np.asarray(lon_deg, dtype=np.float64)[None, :]
    # Hour angle [deg]: 15 deg per hour from local solar noon.
    hours_utc = ((unix_s % 86400.0) / 3600.0)[:, None]
    hour_angle = 15.0 * (hours_utc - 12.0) + lon + eot / 4.0
    zen = pvlib.solarposition.solar_zenith_analytical(np.radians(lat), np.radians(hour_angle),
                                                      decl)
    az = pvlib.solarposition.solar_azimuth_analytical(np.radians(lat), np.radians(hour_angle),
                                                      decl, zen)
    return np.degrees(zen), np.degrees(az)


def clear_sky(zenith_deg: np.ndarray, unix_s: np.ndarray, altitude_m: float = 200.0,
              linke_turbidity: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clear-sky GHI, DNI and DHI [W/m^2] (Ineichen-Perez), same shape as ``zenith_deg``.

    ``unix_s`` gives the time of each row (for the extraterrestrial radiation).
    """
    zenith_deg = np.asarray(zenith_deg, dtype=np.float64)
    unix_s = np.atleast_1d(np.asarray(unix_s, dtype=np.float64))
    doy = pd.DatetimeIndex(pd.to_datetime(unix_s, unit="s", utc=True)).day_of_year.to_numpy()
    dni_extra = pvlib.irradiance.get_extra_radiation(doy)
    dni_extra = np.broadcast_to(dni_extra.reshape((-1,) + (1,) * (zenith_deg.ndim - 1)),
                                zenith_deg.shape)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        am_rel = pvlib.atmosphere.get_relative_airmass(zenith_deg)
        am_abs = pvlib.atmosphere.get_absolute_airmass(
            am_rel, pvlib.atmosphere.alt2pres(altitude_m))
        cs = pvlib.clearsky.ineichen(zenith_deg, am_abs, linke_turbidity, altitude=altitude_m,
                                     dni_extra=dni_extra)
    return tuple(np.nan_to_num(np.asarray(cs[k], dtype=np.float64), nan=0.0)
                 for k in ("ghi", "dni", "dhi"))
