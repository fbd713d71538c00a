"""Input checks run before every solve; each refusal names the input at fault."""

from __future__ import annotations

import math

import numpy as np

from optimizer.types import EvSessions, Forecast, OptimizerConfig, OptimizerInputError
from twin.fleet import EV_CHARGER, Fleet

_SITE_SERIES = ("pv_kw", "load_kw")
_BROADCAST_SERIES = ("import_price_eur_per_mwh", "feed_in_eur_per_mwh", "co2_kg_per_mwh")
_NONNEGATIVE = ("pv_kw", "load_kw")


def check_config(config: OptimizerConfig) -> None:
    """Refuse a configuration with a value out of range."""
    if not isinstance(config.n_steps, int | np.integer) or config.n_steps < 1:
        raise OptimizerInputError(f"config n_steps must be a positive integer, got "
                                  f"{config.n_steps!r}")
    for name in ("dt_s", "time_limit_s"):
        value = getattr(config, name)
        if not _finite(value) or value <= 0:
            raise OptimizerInputError(f"config {name} must be a positive number, got {value!r}")
    for name in ("co2_price_eur_per_t", "peak_charge_eur_per_kw", "degradation_eur_per_kwh",
                 "limit_penalty_eur_per_kwh", "ev_unmet_penalty_eur_per_kwh",
                 "terminal_penalty_eur_per_kwh", "vpp_penalty_eur_per_kwh",
                 "curtail_cost_eur_per_kwh", "terminal_value_eur_per_kwh"):
        value = getattr(config, name)
        if not _finite(value) or value < 0:
            raise OptimizerInputError(f"config {name} must be a non-negative number, "
                                      f"got {value!r}")
    if config.terminal_soc is not None and (not _finite(config.terminal_soc)
                                            or not 0.0 <= config.terminal_soc <= 1.0):
        raise OptimizerInputError(f"config terminal_soc must be in [0, 1] or None, got "
                                  f"{config.terminal_soc!r}")
    if config.vpp_export_kw is not None:
        vpp = np.asarray(config.vpp_export_kw, dtype=np.float64)
        if vpp.ndim != 1 or len(vpp) < config.n_steps:
            raise OptimizerInputError(f"config vpp_export_kw needs {config.n_steps} steps, got "
                                      f"shape {vpp.shape}")
        if not np.all(np.isfinite(vpp[:config.n_steps])):
            raise OptimizerInputError("config vpp_export_kw has NaN or infinite values")
    if not isinstance(config.highs_options, dict) or not all(
            isinstance(k, str) for k in config.highs_options):
        raise OptimizerInputError("config highs_options must be a dict of option names")
    for name in ("threads", "batch_sites"):
        value = getattr(config, name)
        if not isinstance(value, int | np.integer) or value < 1:
            raise OptimizerInputError(f"config {name} must be a positive integer, got "
                                      f"{value!r}")


def check_fleet(fleet: Fleet) -> None:
    """Refuse negative or NaN grid limits (site and feeder)."""
    for name, arr, ids in (("import_limit_kw", fleet.import_limit_kw, fleet.site_id),
                           ("export_limit_kw", fleet.export_limit_kw, fleet.site_id),
                           ("feeder_import_limit_kw", fleet.feeder_import_limit_kw,
                            fleet.feeder_id),
                           ("feeder_export_limit_kw", fleet.feeder_export_limit_kw,
                            fleet.feeder_id)):
        bad = np.flatnonzero(np.isnan(arr) | (arr < 0))
        if len(bad):
            raise OptimizerInputError(f"fleet {name} of {ids[bad[0]]!r} is {arr[bad[0]]}; "
                                      "limits must be non-negative numbers")


def check_forecast(fleet: Fleet, forecast: Forecast, config: OptimizerConfig) -> dict:
    """Check a forecast and return its series cut to the horizon.

    Returns a dict with every series as a ``(n_steps, n_sites)`` float array
    (``pv_device_kw`` as ``(n_steps, n_devices)`` or None).
    """
    n, s = config.n_steps, fleet.n_sites
    out: dict = {}
    for name in _SITE_SERIES + _BROADCAST_SERIES:
        raw = getattr(forecast, name, None)
        if raw is None:
            raise OptimizerInputError(f"forecast {name} is missing")
        arr = np.asarray(raw, dtype=np.float64)
        if arr.ndim == 1 and name in _BROADCAST_SERIES:
            arr = arr[:, None]
        broadcast = arr.ndim == 2 and arr.shape[1] == 1 and name in _BROADCAST_SERIES
        if arr.ndim != 2 or (arr.shape[1] != s and not broadcast):
            raise OptimizerInputError(f"forecast {name} has shape {np.shape(raw)}, expected "
                                      f"(n_steps, {s})")
        if arr.shape[0] < n:
            raise OptimizerInputError(
                f"forecast {name} covers {arr.shape[0]} steps, shorter than the horizon of "
                f"{n} steps")
        arr = np.broadcast_to(arr[:n], (n, s))
        bad = ~np.isfinite(arr)
        if bad.any():
            step, site = np.argwhere(bad)[0]
            raise OptimizerInputError(f"forecast {name} has NaN or infinite values (first at "
                                      f"step {step}, site {fleet.site_id[site]!r})")
        if name in _NONNEGATIVE and (arr < 0).any():
            step, site = np.argwhere(arr < 0)[0]
            raise OptimizerInputError(f"forecast {name} is negative ({arr[step, site]}) at "
                                      f"step {step}, site {fleet.site_id[site]!r}")
        out[name] = arr
    dev = forecast.pv_device_kw
    if dev is not None:
        dev = np.asarray(dev, dtype=np.float64)
        if dev.ndim != 2 or dev.shape[1] != fleet.n_devices or dev.shape[0] < n:
            raise OptimizerInputError(f"forecast pv_device_kw has shape {dev.shape}, expected "
                                      f"({n}, {fleet.n_devices})")
        dev = dev[:n]
        pv_rows = fleet.rows_of_type("pv")
        if not np.all(np.isfinite(dev[:, pv_rows])) or (dev[:, pv_rows] < 0).any():
            raise OptimizerInputError("forecast pv_device_kw has NaN, infinite or negative "
                                      "values at PV rows")
    out["pv_device_kw"] = dev
    check_sessions(fleet, forecast.ev_sessions)
    return out


def check_sessions(fleet: Fleet, sessions: EvSessions | None) -> None:
    """Refuse sessions on non-chargers or with bad times or energy."""
    if sessions is None:
        return
    rows = np.asarray(sessions.charger_row)
    k = len(rows)
    for name in ("arrival_s", "departure_s", "need_kwh"):
        if len(np.asarray(getattr(sessions, name))) != k:
            raise OptimizerInputError(f"forecast ev_sessions {name} has "
                                      f"{len(getattr(sessions, name))} entries, charger_row {k}")
    if k == 0:
        return
    if rows.dtype.kind not in "iu" or rows.min() < 0 or rows.max() >= fleet.n_devices:
        raise OptimizerInputError("forecast ev_sessions charger_row must be device rows of "
                                  "the fleet")
    not_ev = np.flatnonzero(fleet.device_type[rows] != EV_CHARGER)
    if len(not_ev):
        raise OptimizerInputError(f"forecast ev_sessions: device "
                                  f"{fleet.device_id[rows[not_ev[0]]]!r} is not an EV charger")
    need = np.asarray(sessions.need_kwh, dtype=np.float64)
    if not np.all(np.isfinite(need)) or (need < 0).any():
        raise OptimizerInputError("forecast ev_sessions need_kwh must be finite and "
                                  "non-negative")
    arr = np.asarray(sessions.arrival_s, dtype=np.float64)
    dep = np.asarray(sessions.departure_s, dtype=np.float64)
    if np.isnan(arr).any() or np.isnan(dep).any() or (dep < arr).any():
        raise OptimizerInputError("forecast ev_sessions: every departure_s must be a time at "
                                  "or after its arrival_s")


def check_initial_soc(soc: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(soc) | (soc < 0) | (soc > 1))
    if len(bad):
        raise OptimizerInputError(f"initial soc of device row {bad[0]} is {soc[bad[0]]}; "
                                  "expected a number in [0, 1]")


def _finite(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(
        float(value))
