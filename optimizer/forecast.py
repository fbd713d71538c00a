"""Forecast helpers built on the twin's own physics.

The optimizer needs available PV power per site and step; scenarios and the
live service have irradiance. :func:`pv_forecast` runs
:func:`twin.physics.pv_ac_power` (the same formula the twin steps with) over
the horizon; :func:`clear_sky_pv_forecast` feeds it pvlib clear-sky
irradiance; :func:`load_forecast` applies the twin's load profile fractions;
:func:`sessions_from_state` reads the connected EV sessions out of a twin state.
"""

from __future__ import annotations

import numpy as np

from optimizer.types import EvSessions
from twin.fleet import LOAD, Fleet
from twin.physics import pv_ac_power, sun_geometry
from twin.solar import clear_sky, sun_position
from twin.state import TwinParams, TwinState


def pv_forecast(fleet: Fleet, times_s: np.ndarray, ghi: np.ndarray, dni: np.ndarray,
                dhi: np.ndarray, temp_air_c: np.ndarray | float = 20.0,
                wind_m_s: np.ndarray | float = 1.0, zenith_deg: np.ndarray | None = None,
                azimuth_deg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Available PV AC power per site and per device over a horizon.

    Parameters
    ----------
    fleet : Fleet
    times_s : (n_steps,) array
        Step times [Unix s] (used for the sun's position when not given).
    ghi, dni, dhi : (n_steps, n_sites) array
        Irradiance forecast [W/m^2].
    temp_air_c, wind_m_s : (n_steps, n_sites) array or float
        Air temperature [degC] and wind speed [m/s].
    zenith_deg, azimuth_deg : (n_steps, n_sites) array, optional
        Sun position [deg]; computed with :func:`twin.solar.sun_position` if absent.

    Returns
    -------
    site_kw : (n_steps, n_sites) array
        Available PV power per site [kW].
    device_kw : (n_steps, n_devices) array
        Available power per PV device row, zero elsewhere [kW].
    """
    times_s = np.atleast_1d(np.asarray(times_s, dtype=np.float64))
    if zenith_deg is None or azimuth_deg is None:
        zenith_deg, azimuth_deg = sun_position(fleet.lat_deg, fleet.lon_deg, times_s)
    shape = (len(times_s), fleet.n_sites)
    rows = fleet.rows_of_type("pv")
    site = fleet.device_site[rows]

    def per_pv(x: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=np.float64), shape)[:, site]

    # The twin's own parameters (PV held at float32 precision), so the forecast
    # under the same weather equals what the twin produces.
    p = TwinParams.from_fleet(fleet)
    panel = (p.cos_tilt[rows], p.sin_tilt_cos_az[rows], p.sin_tilt_sin_az[rows])
    sun = tuple(per_pv(x) for x in sun_geometry(zenith_deg, azimuth_deg))
    device = np.zeros((len(times_s), fleet.n_devices))
    device[:, rows] = pv_ac_power(per_pv(ghi), per_pv(dni), per_pv(dhi), sun,
                                  per_pv(temp_air_c), per_pv(wind_m_s), panel,
                                  p.pv_kwp[rows], p.inverter_kw[rows],
                                  p.temp_coeff_per_c[rows])
    site_kw = np.zeros(shape)
    np.add.at(site_kw.T, site, device[:, rows].T)
    return site_kw, device


def clear_sky_pv_forecast(fleet: Fleet, times_s: np.ndarray,
                          temp_air_c: np.ndarray | float = 20.0,
                          wind_m_s: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pv_forecast` under pvlib's clear sky (Ineichen-Perez) at each site."""
    times_s = np.atleast_1d(np.asarray(times_s, dtype=np.float64))
    zen, az = sun_position(fleet.lat_deg, fleet.lon_deg, times_s)
    ghi, dni, dhi = clear_sky(zen, times_s)
    return pv_forecast(fleet, times_s, ghi, dni, dhi, temp_air_c, wind_m_s, zen, az)


def load_forecast(fleet: Fleet, load_frac: np.ndarray) -> np.ndarray:
    """Site load [kW] from load fractions ``(n_steps, n_sites, n_profiles)`` of peak."""
    rows = np.flatnonzero(fleet.device_type == LOAD)
    site = fleet.device_site[rows]
    per_dev = load_frac[:, site, fleet.load_profile[rows]] * fleet.load_peak_kw[rows][None, :]
    out = np.zeros((load_frac.shape[0], fleet.n_sites))
    np.add.at(out.T, site, per_dev.T)
    return out


def sessions_from_state(params: TwinParams, state: TwinState) -> EvSessions:
    """The EV sessions connected in a twin state (arrived at ``state.t_s``)."""
    conn = np.flatnonzero(np.isfinite(state.conn_departure_s) & (state.conn_need_kwh > 0))
    # Connector rows are contiguous per device (zero of them for non-chargers).
    owner = np.repeat(np.arange(params.n_devices), params.conn_stop - params.conn_start)
    return EvSessions(charger_row=owner[conn], arrival_s=np.full(len(conn), state.t_s),
                      departure_s=state.conn_departure_s[conn].copy(),
                      need_kwh=state.conn_need_kwh[conn].copy())


__all__ = ["clear_sky_pv_forecast", "load_forecast", "pv_forecast", "sessions_from_state"]
