"""Forecasts from recent telemetry: PV, load and EV arrivals; pure functions of arrays.

* PV: the site's clear-sky output (pvlib clear sky through the twin's PV model,
  :func:`optimizer.forecast.clear_sky_pv_forecast`) times a clear-sky index.
  The reference is the clear-sky output times the last days' index per time of
  day (:func:`clear_sky_index_by_time`); the index measured against that
  reference over the last hours (:func:`recent_clear_sky_index`) relaxes
  towards 1 with the horizon: ``k(h) = 1 + (k_now - 1) exp(-h / tau)``
  (:func:`pv_forecast` with ``k_clim = 1``).
* Load: a profile by day type (Monday-Friday, Saturday, Sunday) and time of day
  from past measurements (:func:`load_profile`), plus the current deviation
  from it decaying with the horizon (:func:`load_forecast`).
* EV: arrival rate and mean energy per day type and hour from recent sessions
  (:func:`ev_arrival_stats`), expected arrivals per step (:func:`ev_forecast`).

:func:`live_forecast` applies them to a planner forecast from the telemetry
history (the live planner's hook). Times are Unix seconds (UTC); ``utc_offset_s`` shifts them to local time for
the day-type and time-of-day bins. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from optimizer.types import EvSessions, Forecast
    from twin.fleet import Fleet

DAY_S = 86400.0
N_DAY_TYPES = 3  # Monday-Friday, Saturday, Sunday


def day_type(times_s: np.ndarray, utc_offset_s: float = 0.0) -> np.ndarray:
    """Day type of each time: 0 Monday-Friday, 1 Saturday, 2 Sunday.

    Parameters
    ----------
    times_s : array
        Times [Unix s].
    utc_offset_s : float
        Local time minus UTC [s].
    """
    days = np.floor((np.asarray(times_s, dtype=np.float64) + utc_offset_s) / DAY_S)
    weekday = ((days.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday (3)
    return np.where(weekday < 5, 0, weekday - 4)


def time_bin(times_s: np.ndarray, bin_s: float, utc_offset_s: float = 0.0) -> np.ndarray:
    """Index of the time-of-day bin of length ``bin_s`` [s] of each time (local)."""
    tod = np.mod(np.asarray(times_s, dtype=np.float64) + utc_offset_s, DAY_S)
    return np.floor(tod / bin_s).astype(np.int64)


# -- PV ------------------------------------------------------------------------------
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


def pv_forecast(clear_sky_kw: np.ndarray, horizon_s: np.ndarray, k_now: np.ndarray,
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


# -- load ----------------------------------------------------------------------------
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


def load_forecast(profile: np.ndarray, t0_s: float, times_s: np.ndarray,
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


# -- EV ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvArrivalStats:
    """Arrival statistics of recent sessions.

    ``rate_per_h[day_type, hour]`` mean arrivals per hour [1/h];
    ``energy_kwh_mean`` mean energy per session [kWh]; ``days`` of history.
    """

    rate_per_h: np.ndarray
    energy_kwh_mean: float
    days: float


def ev_arrival_stats(arrival_s: np.ndarray, energy_kwh: np.ndarray, start_s: float,
                     end_s: float, utc_offset_s: float = 0.0) -> EvArrivalStats:
    """Arrival rate per day type and hour, and mean energy, of sessions in ``[start_s, end_s)``.

    Parameters
    ----------
    arrival_s : (n_sessions,) array
        Arrival times [Unix s].
    energy_kwh : (n_sessions,) array
        Energy each session took or asked for [kWh].
    start_s, end_s : float
        The history window [Unix s].
    utc_offset_s : float
        Local time minus UTC [s].
    """
    if not end_s > start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    a = np.asarray(arrival_s, dtype=np.float64)
    e = np.asarray(energy_kwh, dtype=np.float64)
    keep = (a >= start_s) & (a < end_s)
    a, e = a[keep], e[keep]
    counts = np.zeros((N_DAY_TYPES, 24))
    np.add.at(counts, (day_type(a, utc_offset_s), time_bin(a, 3600.0, utc_offset_s)), 1.0)
    # hours of each (day type, hour) in the window
    hours = np.arange(np.floor(start_s / 3600.0), np.ceil(end_s / 3600.0)) * 3600.0
    exposure = np.zeros((N_DAY_TYPES, 24))
    np.add.at(exposure, (day_type(hours, utc_offset_s), time_bin(hours, 3600.0, utc_offset_s)),
              1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(exposure > 0, counts / np.maximum(exposure, 1), np.nan)
    overall = counts.sum(axis=0) / np.maximum(exposure.sum(axis=0), 1)
    rate = np.where(np.isfinite(rate), rate, overall[None, :])
    mean_e = float(e.mean()) if len(e) else 0.0
    return EvArrivalStats(rate, mean_e, (end_s - start_s) / DAY_S)


def ev_forecast(stats: EvArrivalStats, times_s: np.ndarray, step_s: float,
                utc_offset_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Expected arrivals and arriving energy per forecast step.

    Returns
    -------
    arrivals : (n_steps,) array
        Expected arrivals in each step [1].
    energy_kwh : (n_steps,) array
        Expected energy asked for by them [kWh].
    """
    t = np.asarray(times_s, dtype=np.float64)
    rate = stats.rate_per_h[day_type(t, utc_offset_s), time_bin(t, 3600.0, utc_offset_s)]
    arrivals = rate * step_s / 3600.0
    return arrivals, arrivals * stats.energy_kwh_mean


# -- the live optimizer's forecast ------------------------------------------------------
def site_series(fleet: Fleet, p_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-site PV output and load demand [kW] from device powers ``(n_times, n_devices)``.

    Load demand is what the load and EV devices draw (positive); NaN counts as 0.
    """
    from twin.fleet import EV_CHARGER, LOAD, PV

    p = np.nan_to_num(np.asarray(p_kw, dtype=np.float64))
    t = fleet.device_type
    pv = np.zeros((p.shape[0], fleet.n_sites))
    load = np.zeros_like(pv)
    np.add.at(pv.T, fleet.device_site, np.where(t == PV, p.clip(min=0), 0.0).T)
    np.add.at(load.T, fleet.device_site,
              np.where((t == LOAD) | (t == EV_CHARGER), (-p).clip(min=0), 0.0).T)
    return pv, load


def charging_sessions(t_s: np.ndarray, p_kw: np.ndarray, bucket_s: float,
                      min_kw: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """Charging sessions seen in EV charger powers: runs of buckets drawing power.

    Parameters
    ----------
    t_s : (n_times,) array
        Bucket start times [Unix s], increasing, ``bucket_s`` apart where contiguous.
    p_kw : (n_times, n) array
        Mean charger power per bucket [kW] (negative: drawing; NaN: none).
    bucket_s : float
        Bucket length [s].
    min_kw : float
        A bucket drawing more than this counts as charging [kW].

    Returns
    -------
    charger, arrival_s, departure_s, energy_kwh : (n_sessions,) arrays
        Column of the charger, start and end of the run [Unix s], energy drawn [kWh].
    """
    t = np.asarray(t_s, dtype=np.float64)
    draw = np.nan_to_num(-np.asarray(p_kw, dtype=np.float64))
    if draw.ndim == 1:
        draw = draw[:, None]
    on = draw > min_kw
    gap = np.r_[True, np.diff(t) > bucket_s * 1.5][:, None]    # a hole in the history
    prev = np.vstack([np.zeros((1, on.shape[1]), dtype=bool), on[:-1]])
    nxt_gap = np.r_[np.diff(t) > bucket_s * 1.5, True][:, None]
    nxt = np.vstack([on[1:], np.zeros((1, on.shape[1]), dtype=bool)])
    starts = on & (gap | ~prev)
    ends = on & (nxt_gap | ~nxt)
    # column by column, in time order: the k-th start pairs with the k-th end
    sc, si = np.nonzero(starts.T)
    _, ei = np.nonzero(ends.T)
    cum = np.cumsum(np.where(on, draw, 0.0), axis=0)
    energy = (cum[ei, sc] - cum[si, sc] + draw[si, sc]) * bucket_s / 3600.0
    return sc.astype(np.int64), t[si], t[ei] + bucket_s, energy


def ev_sessions_forecast(fleet: Fleet, t0_s: float, dt_s: float, n_steps: int,
                         hist_t_s: np.ndarray, hist_ev_kw: np.ndarray, bucket_s: float = 900.0
                         ) -> EvSessions:
    """EV sessions over the horizon from the chargers' recent sessions.

    Sessions charging in the last bucket continue from ``t0_s`` until their
    start plus the mean stay, asking for the mean energy less what they took
    (at least 1 kWh). The means (stay, energy) come from complete sessions; a
    run already going at the window's start does not count as an arrival.
    New arrivals follow the arrival rate per day type and hour of the recent
    sessions (:func:`ev_arrival_stats`, pooled over the chargers and divided
    among them): a charger gets a session each time its expected arrivals
    since ``t0_s`` (phase-shifted per charger so the fleet's total matches)
    pass a whole number, staying the mean stay and asking for the mean energy
    (at most 90 % of what the charger can give in that time).

    Parameters
    ----------
    fleet : Fleet
    t0_s, dt_s : float
        First step [Unix s] and step [s].
    n_steps : int
        Steps of the horizon.
    hist_t_s : (n_times,) array
        Bucket start times of the history [Unix s].
    hist_ev_kw : (n_times, n_chargers) array
        Mean power of each EV charger (``fleet.rows_of_type("ev_charger")`` order) [kW].
    bucket_s : float
        Bucket length [s].
    """
    from optimizer.types import EvSessions

    rows = fleet.rows_of_type("ev_charger")
    t = np.asarray(hist_t_s, dtype=np.float64)
    ch, arr, dep, e = charging_sessions(t, hist_ev_kw, bucket_s)
    empty = EvSessions(charger_row=np.zeros(0, dtype=np.int64), arrival_s=np.zeros(0),
                       departure_s=np.zeros(0), need_kwh=np.zeros(0))
    if len(rows) == 0 or len(t) == 0 or len(arr) == 0:
        return empty
    end = float(t[-1] + bucket_s)
    # a run at the window's start has no observed arrival; one still running has no
    # observed end: the means come from complete sessions (all, when none is complete)
    seen = arr > t[0]
    done = seen & (dep < end)
    done = done if done.any() else np.ones_like(done)
    stats = ev_arrival_stats(arr[seen], e[seen], float(t[0]), end)
    stats = EvArrivalStats(stats.rate_per_h, float(np.mean(e[done])), stats.days)
    stay_s = float(np.mean(dep[done] - arr[done]))
    rate_kw = fleet.ev_max_kw[rows]
    out_row: list[int] = []
    out_arr: list[float] = []
    out_dep: list[float] = []
    out_need: list[float] = []
    # sessions running now
    for j, a, d, took in zip(ch.tolist(), arr.tolist(), dep.tolist(), e.tolist(), strict=True):
        if d >= end:
            out_row.append(int(rows[j]))
            out_arr.append(t0_s)
            out_dep.append(max(a + stay_s, t0_s + dt_s))
            out_need.append(max(stats.energy_kwh_mean - took, 1.0))
    # expected new arrivals, per charger
    times = t0_s + dt_s * np.arange(n_steps)
    expected, _ = ev_forecast(stats, times, dt_s)
    cum = np.cumsum(expected / len(rows))
    for i, r in enumerate(rows.tolist()):
        phase = (i + 0.5) / len(rows)
        count = np.floor(cum + phase) - np.floor(phase)
        for k in np.flatnonzero(np.diff(np.r_[0.0, count]) > 0).tolist():
            a = float(times[k])
            out_row.append(int(r))
            out_arr.append(a)
            out_dep.append(a + stay_s)
            out_need.append(float(min(stats.energy_kwh_mean,
                                      0.9 * rate_kw[i] * stay_s / 3600.0)))
    if not out_row:
        return empty
    return EvSessions(charger_row=np.array(out_row, dtype=np.int64),
                      arrival_s=np.array(out_arr), departure_s=np.array(out_dep),
                      need_kwh=np.array(out_need))


def live_forecast(fleet: Fleet, base: Forecast, t0_s: float, dt_s: float,
                  hist_t_s: np.ndarray, hist_p_kw: np.ndarray, min_history_s: float = 86400.0,
                  ev_sessions: bool = False) -> Forecast:
    """A planner forecast corrected by the telemetry history (PV and load).

    ``base`` holds clear-sky PV (``pv_kw`` and ``pv_device_kw``, as
    :func:`optimizer.synthetic.synthetic_inputs` makes it) and a load guess.
    With at least ``min_history_s`` of history before ``t0_s``: each site's PV
    is scaled by the clear-sky index of its last 7 days per 15-minute bin and
    the last 2 hours (:func:`pv_forecast`), and the load is the day-type profile
    of the last 28 days plus the present deviation (:func:`load_forecast`).
    Without enough history ``base`` is returned unchanged.

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
        Also replace ``base.ev_sessions`` by :func:`ev_sessions_forecast`; the
        load is then the load devices only (the EV draw is in the sessions).
    """
    from dataclasses import replace

    from optimizer.forecast import clear_sky_pv_forecast

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
    pv = pv_forecast(ref, times - t0_s, k_now, np.ones(fleet.n_sites))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(base.pv_kw > 0, pv / np.where(base.pv_kw > 0, base.pv_kw, 1.0), 0.0)
    pv_dev = None
    if base.pv_device_kw is not None:
        pv_dev = base.pv_device_kw * scale[:, fleet.device_site]
    month = tm >= t0_s - 28 * DAY_S
    sessions = base.ev_sessions
    if ev_sessions:
        from twin.fleet import LOAD

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
    load = load_forecast(profile, tm[-1], times, load_m[-1])
    return replace(base, pv_kw=pv, load_kw=load, pv_device_kw=pv_dev, ev_sessions=sessions)
