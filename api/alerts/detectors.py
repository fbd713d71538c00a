"""Alert detectors: pure functions over the twin's arrays, one boolean per device or site.

Each detector answers "is the condition true now?" for every row at once; how
long it must hold before an alert opens, and how it clears, is the
:class:`~api.alerts.manager.AlertManager`'s business. Arrays are indexed by
device row (or site row) of a :class:`twin.fleet.Fleet`; NaN means "no value".
Powers follow the fleet's sign convention (positive = delivered to the site).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np

from twin.fleet import BATTERY, Fleet

OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


def threshold(values: np.ndarray, op: str, limit: float) -> np.ndarray:
    """Rows whose value breaks a threshold rule.

    Parameters
    ----------
    values : (n,) array
        Metric values (NaN: no value, never true).
    op : {">", ">=", "<", "<="}
        The comparison that makes the condition true.
    limit : float
        The threshold, in the metric's unit.
    """
    fn = OPS.get(op)
    if fn is None:
        raise ValueError(f"operator {op!r} is not one of {sorted(OPS)}")
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & fn(v, float(limit))


def device_offline(reported_online: np.ndarray, site_online: np.ndarray,
                   device_site: np.ndarray) -> np.ndarray:
    """Devices reported offline (status 0) while their gateway is online (status 1)."""
    return (np.asarray(reported_online) == 0) & (np.asarray(site_online)[device_site] == 1)


def setpoint_deviation(p_kw: np.ndarray, setpoint_kw: np.ndarray, device_type: np.ndarray,
                       rating_kw: np.ndarray, soc: np.ndarray, soc_min: np.ndarray,
                       soc_max: np.ndarray, tolerance_kw: float = 1.0,
                       tolerance_frac: float = 0.1, soc_margin: float = 0.02) -> np.ndarray:
    """Devices not following their applied setpoint.

    A battery breaks it when ``|p_kw - setpoint_kw|`` exceeds the tolerance,
    unless its SoC is at the limit that stops it (empty while asked to
    discharge, full while asked to charge). A PV or EV device breaks it when it
    delivers or draws more than its limit ``setpoint_kw`` plus the tolerance.

    Parameters
    ----------
    p_kw : (n,) array
        Measured power [kW].
    setpoint_kw : (n,) array
        Applied setpoint [kW]: battery ``p_kw``, PV/EV ``p_limit_kw``; NaN = none.
    device_type : (n,) int array
        Fleet type codes.
    rating_kw : (n,) array
        Power rating [kW] (for the relative tolerance).
    soc, soc_min, soc_max : (n,) array
        State of charge and its limits [fraction]; NaN for non-batteries.
    tolerance_kw : float
        Absolute tolerance [kW].
    tolerance_frac : float
        Tolerance as a share of the rating [1]; the larger of the two applies.
    soc_margin : float
        SoC distance to a limit within which a battery is excused [fraction].
    """
    p = np.asarray(p_kw, dtype=np.float64)
    sp = np.asarray(setpoint_kw, dtype=np.float64)
    tol = np.maximum(tolerance_kw, tolerance_frac * np.nan_to_num(rating_kw))
    known = np.isfinite(p) & np.isfinite(sp)
    bat = known & (device_type == BATTERY)
    with np.errstate(invalid="ignore"):
        stuck_empty = (sp > 0) & (soc <= soc_min + soc_margin)
        stuck_full = (sp < 0) & (soc >= soc_max - soc_margin)
        off = np.abs(p - sp) > tol
        bat_bad = bat & off & ~stuck_empty & ~stuck_full
        lim_bad = known & (device_type != BATTERY) & (np.abs(p) > sp + tol)
    return bat_bad | lim_bad


def pv_shortfall(p_kw: np.ndarray, expected_kw: np.ndarray, rating_kw: np.ndarray,
                 limit_kw: np.ndarray | None = None, ratio: float = 0.75,
                 min_frac: float = 0.1) -> np.ndarray:
    """PV devices delivering far less than irradiance and rating predict.

    True where the expected output (capped by a curtailment limit) is at least
    ``min_frac`` of the rating and the measured output is below ``ratio`` of it.

    Parameters
    ----------
    p_kw : (n,) array
        Measured PV output [kW].
    expected_kw : (n,) array
        The twin's expected output from irradiance and the device's rating [kW].
    rating_kw : (n,) array
        Inverter rating [kW].
    limit_kw : (n,) array, optional
        Applied curtailment limit [kW] (NaN: none).
    ratio : float
        Share of the expected output below which the device is short [1].
    min_frac : float
        Expected output, as a share of the rating, below which nothing is judged [1].
    """
    exp = np.asarray(expected_kw, dtype=np.float64)
    if limit_kw is not None:
        exp = np.fmin(exp, limit_kw)
    p = np.asarray(p_kw, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        judged = np.isfinite(p) & (exp >= min_frac * np.nan_to_num(rating_kw))
        return judged & (p < ratio * exp)


def flatline(p_window_kw: np.ndarray, expected_window_kw: np.ndarray, rating_kw: np.ndarray,
             min_change_frac: float = 0.05) -> np.ndarray:
    """Meters that repeat one value while the twin expects the power to move.

    Parameters
    ----------
    p_window_kw : (k, n) array
        The last ``k`` measured powers per device [kW], oldest first.
    expected_window_kw : (k, n) array
        The expected powers at the same times [kW] (NaN: unknown, never flagged).
    rating_kw : (n,) array
        Power rating [kW].
    min_change_frac : float
        Expected change (max - min over the window), as a share of the rating,
        that a working meter must show [1].
    """
    p = np.asarray(p_window_kw, dtype=np.float64)
    e = np.asarray(expected_window_kw, dtype=np.float64)
    if p.shape[0] < 2:
        return np.zeros(p.shape[1], dtype=bool)
    with np.errstate(invalid="ignore"):
        frozen = np.all(np.isfinite(p), axis=0) & (np.ptp(p, axis=0) == 0.0)
        moving = np.nan_to_num(np.ptp(e, axis=0)) > min_change_frac * np.nan_to_num(rating_kw)
    return frozen & moving


def soc_balance_residual(soc_window: np.ndarray, p_window_kw: np.ndarray, t_window_s: np.ndarray,
                         capacity_kwh: np.ndarray, charge_eff: np.ndarray,
                         discharge_eff: np.ndarray) -> np.ndarray:
    """Measured SoC change minus the change the measured power implies, per battery.

    The energy balance is ``dSoC = -(sum p_dis / eta_dis + sum p_ch * eta_ch) * dt / E``
    with the mean of the two readings over each interval (trapezoid rule).

    Parameters
    ----------
    soc_window : (k, n) array
        The last ``k`` SoC readings [fraction], oldest first.
    p_window_kw : (k, n) array
        The power readings at the same times [kW] (positive = discharge).
    t_window_s : (k,) array
        Their times [Unix s].
    capacity_kwh : (n,) array
        Usable capacity [kWh] (NaN for non-batteries: residual NaN).
    charge_eff, discharge_eff : (n,) array
        One-way efficiencies [1].

    Returns
    -------
    (n,) array
        The residual [fraction of capacity]; NaN where it cannot be computed.
    """
    soc = np.asarray(soc_window, dtype=np.float64)
    pw = np.asarray(p_window_kw, dtype=np.float64)
    p = 0.5 * (pw[:-1] + pw[1:])
    dt_h = np.diff(np.asarray(t_window_s, dtype=np.float64))[:, None] / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        drawn_kwh = np.where(p > 0, p / discharge_eff, p * charge_eff) * dt_h
        implied = -drawn_kwh.sum(axis=0) / capacity_kwh
        return (soc[-1] - soc[0]) - implied


def site_over_limit(site_net_kw: np.ndarray, import_limit_kw: np.ndarray,
                    export_limit_kw: np.ndarray, margin_kw: float = 0.0) -> np.ndarray:
    """Sites whose grid exchange breaks their connection limits.

    Parameters
    ----------
    site_net_kw : (n_sites,) array
        Grid exchange [kW], positive for export (sum of the devices' ``p_kw``).
    import_limit_kw, export_limit_kw : (n_sites,) array
        Connection limits [kW] (positive numbers).
    margin_kw : float
        Excess tolerated before the condition is true [kW].
    """
    net = np.asarray(site_net_kw, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(net) & ((net > export_limit_kw + margin_kw)
                                   | (-net > import_limit_kw + margin_kw))


def site_sum(fleet: Fleet, p_kw: np.ndarray) -> np.ndarray:
    """Sum of device values per site (NaN values count as zero) [kW]."""
    out = np.zeros(fleet.n_sites)
    np.add.at(out, fleet.device_site, np.nan_to_num(np.asarray(p_kw, dtype=np.float64)))
    return out
