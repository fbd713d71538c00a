"""EV sessions for the optimizer: from a twin's state and from recent charging history.

* :func:`sessions_from_state` reads the sessions connected in a twin state
  (the scenarios know them exactly).
* From telemetry: :func:`charging_sessions` finds the sessions in EV charger
  powers (runs of buckets drawing power); :func:`ev_arrival_stats` gives their
  arrival rate per day type and hour and their mean energy;
  :func:`ev_forecast` the expected arrivals per step;
  :func:`ev_sessions_forecast` turns them into the sessions of a horizon (the
  cars charging now plus the expected arrivals), as
  :func:`optimizer.forecast.live_forecast` uses them.

Times are Unix seconds (UTC); ``utc_offset_s`` shifts them to local time for
the day-type and hour bins (:func:`twin.profiles.day_type`,
:func:`twin.profiles.time_bin`). Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.types import EvSessions
from twin.fleet import Fleet
from twin.profiles import DAY_S, N_DAY_TYPES, day_type, time_bin
from twin.state import TwinParams, TwinState


def sessions_from_state(params: TwinParams, state: TwinState) -> EvSessions:
    """The EV sessions connected in a twin state (arrived at ``state.t_s``)."""
    conn = np.flatnonzero(np.isfinite(state.conn_departure_s) & (state.conn_need_kwh > 0))
    # Connector rows are contiguous per device (zero of them for non-chargers).
    owner = np.repeat(np.arange(params.n_devices), params.conn_stop - params.conn_start)
    return EvSessions(charger_row=owner[conn], arrival_s=np.full(len(conn), state.t_s),
                      departure_s=state.conn_departure_s[conn].copy(),
                      need_kwh=state.conn_need_kwh[conn].copy())


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

    Parameters
    ----------
    stats : EvArrivalStats
        From :func:`ev_arrival_stats`.
    times_s : (n_steps,) array
        Step start times [Unix s].
    step_s : float
        Step length [s].
    utc_offset_s : float
        Local time minus UTC [s].

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


__all__ = ["EvArrivalStats", "charging_sessions", "ev_arrival_stats", "ev_forecast",
           "ev_sessions_forecast", "sessions_from_state"]
