"""PV and load forecasts for the optimizer, and the live planner's forecast.

From the twin's own physics (what scenarios and the synthetic forecast use):

* :func:`pv_forecast` runs :func:`twin.physics.pv_ac_power` (the same formula
  the twin steps with) over the horizon on forecast irradiance;
  :func:`clear_sky_pv_forecast` feeds it pvlib clear-sky irradiance.
* :func:`load_forecast` applies the twin's load profile fractions.

From recent telemetry (pure functions of arrays):

* PV: the site's clear-sky output times a clear-sky index. The reference is
  the clear-sky output times the last days' index per time of day
  (:func:`clear_sky_index_by_time`); the index measured against that
  reference over the last hours (:func:`recent_clear_sky_index`) relaxes
  towards 1 with the horizon: ``k(h) = 1 + (k_now - 1) exp(-h / tau)``
  (:func:`pv_index_forecast` with ``k_clim = 1``).
* Load: a profile by day type (Monday-Friday, Saturday, Sunday) and time of day
  from past measurements (:func:`load_profile`), plus the current deviation
  from it decaying with the horizon (:func:`load_deviation_forecast`).

:func:`live_forecast` applies them to a planner forecast from the telemetry
history (the live planner's hook); EV sessions come from
:mod:`optimizer.ev_forecast`. Times are Unix seconds (UTC); ``utc_offset_s``
shifts them to local time for the day-type and time-of-day bins
(:func:`twin.profiles.day_type`, :func:`twin.profiles.time_bin`). Nothing
here reads a clock.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from optimizer.ev_forecast import ev_sessions_forecast
from optimizer.types import Forecast
from twin.fleet import EV_CHARGER, LOAD, PV, Fleet
from twin.physics import pv_ac_power, sun_geometry
from twin.profiles import DAY_S, N_DAY_TYPES, day_type, time_bin
from twin.solar import clear_sky, sun_position
from twin.state import TwinParams


# -- from the twin's physics -------------------------------------------------------------
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


# -- PV from telemetry -------------------------------------------------------------------
def recent_clear_sky_index(measured_kw: np.ndarray, clear_sky_kw: np.ndarray,
                           min_clear_kw: float | np.ndarray = 0.0) -> np.ndarray:
    """Clear-sky index from recent telemetry: sum of measured over sum of clear-sky output.

    Parameters
    ----------
    measured_kw : (n_times, n) array
        Measured PV output over the recent window [kW] (NaN: missing).
    clear_sky_kw : (n_times, n) array
        Clear-sky output at the same times [kW].
    min_clear_kw : float or (n,) array
        Only times with at least this clear-sky output count [kW].

    Returns
    -------
    (n,) array
        The index [1], NaN where no time counted.
    """
    m = np.asarray(measured_kw, dtype=np.float64)
    c = np.asarray(clear_sky_kw, dtype=np.float64)
    use = np.isfinite(m) & (c > np.maximum(min_clear_kw, 1e-9))
    num = np.where(use, m, 0.0).sum(axis=0)
    den = np.where(use, c, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def climatological_clear_sky_index(measured_kw: np.ndarray, clear_sky_kw: np.ndarray,
                                   min_clear_kw: float | np.ndarray = 0.0,
                                   default: float = 0.7) -> np.ndarray:
    """Clear-sky index of the last days (same ratio of sums); ``default`` where unknown."""
    k = recent_clear_sky_index(measured_kw, clear_sky_kw, min_clear_kw)
    return np.where(np.isfinite(k), k, default)


def clear_sky_index_by_time(times_s: np.ndarray, measured_kw: np.ndarray,
                            clear_sky_kw: np.ndarray, bin_s: float = 900.0,
                            min_clear_kw: float | np.ndarray = 0.0, default: float = 0.7
                            ) -> np.ndarray:
    """Clear-sky index of the last days per time-of-day bin (ratio of sums in each bin).

    It absorbs what the clear-sky model gets wrong at a site at a given time of
    day (orientation, shading, horizon, the model's own bias) as well as the
    usual cloudiness. Bins without daylight take the all-day index.

    Parameters
    ----------
    times_s : (n_times,) array
        Times [Unix s] (UTC bins; the sun's clock, no local offset needed).
    measured_kw, clear_sky_kw : (n_times, n) array
        Measured and clear-sky output [kW].
    bin_s : float
        Time-of-day bin [s].
    min_clear_kw : float or (n,) array
        Only times with at least this clear-sky output count [kW].
    default : float
        Index where nothing counted at all [1].

    Returns
    -------
    (n_bins, n) array
        The index per bin [1].
    """
    m = np.asarray(measured_kw, dtype=np.float64)
    c = np.asarray(clear_sky_kw, dtype=np.float64)
    n_bins = round(DAY_S / bin_s)
    tb = time_bin(times_s, bin_s)
    use = np.isfinite(m) & (c > np.maximum(min_clear_kw, 1e-9))
    num = np.zeros((n_bins, m.shape[1]))
    den = np.zeros_like(num)
    np.add.at(num, tb, np.where(use, m, 0.0))
    np.add.at(den, tb, np.where(use, c, 0.0))
    overall = climatological_clear_sky_index(m, c, min_clear_kw, default)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.where(np.isfinite(k), k, overall[None, :])


def pv_index_forecast(clear_sky_kw: np.ndarray, horizon_s: np.ndarray, k_now: np.ndarray,
                k_clim: np.ndarray, tau_s: float = 3 * 3600.0, k_max: float = 1.2
                ) -> np.ndarray:
    """PV forecast: clear-sky output times an index relaxing from now to climatology.

    Parameters
    ----------
    clear_sky_kw : (n_steps, n) array
        Clear-sky output at the forecast times [kW].
    horizon_s : (n_steps,) array
        Lead time of each step [s].
    k_now : (n,) array
        Clear-sky index measured recently [1] (NaN: use ``k_clim``).
    k_clim : (n,) array
        Clear-sky index of the last days [1].
    tau_s : float
        Relaxation time of the index [s].
    k_max : float
        Upper clip of the index (cloud enhancement) [1].

    Returns
    -------
    (n_steps, n) array
        Forecast output [kW].
    """
    k_now = np.where(np.isfinite(k_now), k_now, k_clim)
    w = np.exp(-np.asarray(horizon_s, dtype=np.float64) / tau_s)[:, None]
    k = np.clip(k_clim[None, :] + (k_now - k_clim)[None, :] * w, 0.0, k_max)
    return np.asarray(clear_sky_kw, dtype=np.float64) * k


# -- load from telemetry -----------------------------------------------------------------
def load_profile(times_s: np.ndarray, load_kw: np.ndarray, bin_s: float = 900.0,
                 utc_offset_s: float = 0.0) -> np.ndarray:
    """Mean load per day type and time-of-day bin from past measurements.

    Parameters
    ----------
    times_s : (n_times,) array
        Times of the measurements [Unix s].
    load_kw : (n_times, n) array
        Measured load, positive [kW] (NaN: missing).
    bin_s : float
        Time-of-day bin [s].
    utc_offset_s : float
        Local time minus UTC [s].

    Returns
    -------
    (3, n_bins, n) array
        The profile [kW]; an empty (day type, bin) takes the mean over all day
        types of that bin, and then the overall mean.
    """
    load = np.asarray(load_kw, dtype=np.float64)
    if load.ndim == 1:
        load = load[:, None]
    n_bins = round(DAY_S / bin_s)
    dt = day_type(times_s, utc_offset_s)
    tb = time_bin(times_s, bin_s, utc_offset_s)
    ok = np.isfinite(load)
    idx = dt * n_bins + tb
    sums = np.zeros((N_DAY_TYPES * n_bins, load.shape[1]))
    counts = np.zeros_like(sums)
    np.add.at(sums, idx, np.where(ok, load, 0.0))
    np.add.at(counts, idx, ok.astype(np.float64))
    sums = sums.reshape(N_DAY_TYPES, n_bins, -1)
    counts = counts.reshape(N_DAY_TYPES, n_bins, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = sums / counts
        by_bin = sums.sum(axis=0) / counts.sum(axis=0)
        overall = np.where(ok, load, 0.0).sum(axis=0) / ok.sum(axis=0)
    prof = np.where(np.isfinite(prof), prof, by_bin[None])
    return np.where(np.isfinite(prof), prof, overall[None, None, :])


def profile_at(profile: np.ndarray, times_s: np.ndarray, utc_offset_s: float = 0.0
               ) -> np.ndarray:
    """Values of a ``(3, n_bins, n)`` profile at the given times: ``(n_times, n)`` [kW]."""
    n_bins = profile.shape[1]
    bin_s = DAY_S / n_bins
    return profile[day_type(times_s, utc_offset_s), time_bin(times_s, bin_s, utc_offset_s)]


def load_deviation_forecast(profile: np.ndarray, t0_s: float, times_s: np.ndarray,
                  measured_now_kw: np.ndarray, tau_s: float = 2 * 3600.0,
                  utc_offset_s: float = 0.0) -> np.ndarray:
    """Load forecast: the profile plus the present deviation from it, decaying with lead time.

    Parameters
    ----------
    profile : (3, n_bins, n) array
        From :func:`load_profile` [kW].
    t0_s : float
        Forecast origin [Unix s] (the time of ``measured_now_kw``).
    times_s : (n_steps,) array
        Forecast times [Unix s].
    measured_now_kw : (n,) array
        Load measured at the origin [kW] (NaN: profile only).
    tau_s : float
        Decay time of the deviation [s].
    utc_offset_s : float
        Local time minus UTC [s].

    Returns
    -------
    (n_steps, n) array
        Forecast load [kW].
    """
    base = profile_at(profile, np.asarray(times_s, dtype=np.float64), utc_offset_s)
    now = profile_at(profile, np.array([t0_s]), utc_offset_s)[0]
    dev = np.nan_to_num(np.asarray(measured_now_kw, dtype=np.float64) - now)
    w = np.exp(-(np.asarray(times_s, dtype=np.float64) - t0_s) / tau_s)[:, None]
    return np.clip(base + dev[None, :] * w, 0.0, None)


# -- the live planner's forecast ---------------------------------------------------------
def site_series(fleet: Fleet, p_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-site PV output and load demand [kW] from device powers ``(n_times, n_devices)``.

    Load demand is what the load and EV devices draw (positive); NaN counts as 0.
    """
    p = np.nan_to_num(np.asarray(p_kw, dtype=np.float64))
    t = fleet.device_type
    pv = np.zeros((p.shape[0], fleet.n_sites))
    load = np.zeros_like(pv)
    np.add.at(pv.T, fleet.device_site, np.where(t == PV, p.clip(min=0), 0.0).T)
    np.add.at(load.T, fleet.device_site,
              np.where((t == LOAD) | (t == EV_CHARGER), (-p).clip(min=0), 0.0).T)
    return pv, load


def live_forecast(fleet: Fleet, base: Forecast, t0_s: float, dt_s: float,
                  hist_t_s: np.ndarray, hist_p_kw: np.ndarray, min_history_s: float = 86400.0,
                  ev_sessions: bool = False) -> Forecast:
    """A planner forecast corrected by the telemetry history (PV and load).

    ``base`` holds clear-sky PV (``pv_kw`` and ``pv_device_kw``, as
    :func:`optimizer.synthetic.synthetic_inputs` makes it) and a load guess.
    With at least ``min_history_s`` of history before ``t0_s``: each site's PV
    is scaled by the clear-sky index of its last 7 days per 15-minute bin and
    the last 2 hours (:func:`pv_index_forecast`), and the load is the day-type
    profile of the last 28 days plus the present deviation
    (:func:`load_deviation_forecast`). Without enough history ``base`` is
    returned unchanged.

    Parameters
    ----------
    fleet : Fleet
    base : Forecast
        The forecast to correct; its steps start at ``t0_s`` every ``dt_s`` [s].
    t0_s, dt_s : float
        First step [Unix s] and step [s].
    hist_t_s : (n_times,) array
        History snapshot times [Unix s], increasing, before ``t0_s``.
    hist_p_kw : (n_times, n_devices) array
        Device powers of the snapshots [kW].
    min_history_s : float
        History needed before ``t0_s`` for any correction [s].
    ev_sessions : bool
        Also replace ``base.ev_sessions`` by
        :func:`optimizer.ev_forecast.ev_sessions_forecast`; the load is then the
        load devices only (the EV draw is in the sessions).
    """
    t = np.asarray(hist_t_s, dtype=np.float64)
    keep = t < t0_s
    t, p = t[keep], np.asarray(hist_p_kw, dtype=np.float64)[keep]
    if len(t) < 2 or t0_s - t[0] < min_history_s:
        return base
    # resample the history to 15-minute means
    bins = np.floor(t / 900.0)
    keys, inv = np.unique(bins, return_inverse=True)
    pv_s, load_s = site_series(fleet, p)
    cnt = np.bincount(inv, minlength=len(keys)).astype(float)[:, None]
    pv_m = np.zeros((len(keys), fleet.n_sites))
    load_m = np.zeros_like(pv_m)
    np.add.at(pv_m, inv, pv_s)
    np.add.at(load_m, inv, load_s)
    pv_m, load_m = pv_m / cnt, load_m / cnt
    tm = keys * 900.0
    clear_m, _ = clear_sky_pv_forecast(fleet, tm + 450.0)
    peak = np.maximum(clear_m.max(axis=0), 1e-9)
    week = tm >= t0_s - 7 * DAY_S
    kbin = clear_sky_index_by_time(tm[week], pv_m[week], clear_m[week], 900.0, 0.05 * peak)
    recent = tm >= t0_s - 2 * 3600.0
    ref_recent = clear_m[recent] * kbin[time_bin(tm[recent], 900.0)]
    k_now = recent_clear_sky_index(pv_m[recent], ref_recent, 0.05 * peak)
    n_steps = base.pv_kw.shape[0]
    times = t0_s + dt_s * np.arange(n_steps)
    factor = kbin[time_bin(times + dt_s / 2, 900.0)]
    ref = base.pv_kw * factor
    pv = pv_index_forecast(ref, times - t0_s, k_now, np.ones(fleet.n_sites))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(base.pv_kw > 0, pv / np.where(base.pv_kw > 0, base.pv_kw, 1.0), 0.0)
    pv_dev = None
    if base.pv_device_kw is not None:
        pv_dev = base.pv_device_kw * scale[:, fleet.device_site]
    month = tm >= t0_s - 28 * DAY_S
    sessions = base.ev_sessions
    if ev_sessions:
        only_load = np.where(fleet.device_type == LOAD, np.nan_to_num(p), 0.0)
        _, load_s = site_series(fleet, only_load)
        load_m = np.zeros((len(keys), fleet.n_sites))
        np.add.at(load_m, inv, load_s)
        load_m /= cnt
        ev_rows = fleet.rows_of_type("ev_charger")
        ev_m = np.zeros((len(keys), len(ev_rows)))
        np.add.at(ev_m, inv, np.nan_to_num(p[:, ev_rows]))
        ev_m /= cnt
        sessions = ev_sessions_forecast(fleet, t0_s, dt_s, n_steps, tm[month], ev_m[month])
    profile = load_profile(tm[month], load_m[month], 900.0)
    load = load_deviation_forecast(profile, tm[-1], times, load_m[-1])
    return replace(base, pv_kw=pv, load_kw=load, pv_device_kw=pv_dev, ev_sessions=sessions)


__all__ = ["clear_sky_index_by_time", "clear_sky_pv_forecast", "climatological_clear_sky_index",
           "live_forecast", "load_deviation_forecast", "load_forecast", "load_profile",
           "profile_at", "pv_forecast", "pv_index_forecast", "recent_clear_sky_index",
           "site_series"]
