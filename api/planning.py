"""The live planner: the optimizer over the twin's current state and a forecast.

:class:`OptimizerPlanner` implements :class:`api.types.Planner` with
``optimizer.optimize``. The batteries' state of charge comes from live
telemetry (devices that have not reported start at ``default_soc``).

The forecast starts from ``optimizer.synthetic.synthetic_inputs`` (clear-sky
PV at each site, profile-shaped loads, a day-ahead-like price and carbon
curve: the live service has no weather, market or carbon feed yet) and is
corrected by the recent telemetry the service hands in (``history_t_s``,
``history_p_kw`` in ``state``) through :func:`optimizer.forecasting.live_forecast`:
PV is clear sky times a clear-sky index from recent telemetry, the load blends
the day-type profile with the latest measurement, and EV sessions come from the
arrival statistics of recent charging sessions. :class:`HistoryWindow` keeps
those recent 15-minute means from the zarr history (:class:`api.history.TelemetryHistory`),
reading only the snapshots it has not seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.plan import jsonable
from twin.fleet import BATTERY, EV_CHARGER, PV, Fleet

_KIND = {BATTERY: "p_kw", PV: "p_limit_kw", EV_CHARGER: "p_limit_kw"}


def plan_setpoints(fleet: Fleet, setpoints: np.ndarray, digits: int = 2
                   ) -> dict[str, dict[str, list[float | None]]]:
    """``(n_steps, n_devices)`` setpoints as ``{kind: {device_id: [value or None]}}``.

    Devices without any setpoint over the horizon are left out; values are
    rounded to ``digits`` decimals [kW].
    """
    out: dict[str, dict[str, list[float | None]]] = {"p_kw": {}, "p_limit_kw": {}}
    has = np.isfinite(setpoints).any(axis=0)
    ids = fleet.device_id
    for row in np.flatnonzero(has).tolist():
        kind = _KIND.get(int(fleet.device_type[row]))
        if kind is None:
            continue
        col = np.round(setpoints[:, row], digits)
        out[kind][ids[row]] = [None if not np.isfinite(v) else float(v) for v in col]
    return {k: v for k, v in out.items() if v}


class OptimizerPlanner:
    """Plans with ``optimizer.optimize`` (see the module docstring for the forecast).

    Parameters
    ----------
    time_limit_s : float
        Solver wall-clock limit [s].
    default_soc : float
        State of charge assumed for batteries without telemetry (0..1).
    min_history_s : float
        History needed before the telemetry corrects the forecast [s].
    """

    def __init__(self, time_limit_s: float = 30.0, default_soc: float = 0.5,
                 min_history_s: float = 86400.0):
        from optimizer.dispatch import optimize  # noqa: F401  (fail early when missing)

        self.time_limit_s = time_limit_s
        self.default_soc = default_soc
        self.min_history_s = min_history_s
        self.last_forecast: Any = None

    def forecast(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float,
                 step_s: float, n_steps: int) -> Any:
        """The plan's forecast (:class:`optimizer.types.Forecast`) from ``start_s`` [Unix s].

        ``state`` may hold ``history_t_s`` (n_times,) [Unix s] and
        ``history_p_kw`` (n_times, n_devices) [kW]: recent device powers (e.g.
        15-minute means). With at least ``min_history_s`` of them the
        synthetic stand-in is corrected (:func:`optimizer.forecasting.live_forecast`).
        """
        from optimizer.forecasting import live_forecast
        from optimizer.synthetic import synthetic_inputs

        base = synthetic_inputs(fleet, n_steps=n_steps, t0_s=start_s, dt_s=step_s)
        hist_t, hist_p = state.get("history_t_s"), state.get("history_p_kw")
        if hist_t is None or hist_p is None or len(hist_t) < 2:
            return base
        hist_t, hist_p = np.asarray(hist_t, dtype=np.float64), np.asarray(hist_p)
        if hist_p.shape != (len(hist_t), fleet.n_devices):
            raise ValueError(f"history_p_kw has shape {hist_p.shape}; expected "
                             f"({len(hist_t)}, {fleet.n_devices}): one row per history_t_s "
                             "and one column per device")
        return live_forecast(fleet, base, start_s, step_s, hist_t, hist_p,
                             min_history_s=self.min_history_s, ev_sessions=True)

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        from optimizer.dispatch import optimize
        from optimizer.types import OptimizerConfig

        soc = np.asarray(state["soc"], dtype=np.float64).copy()
        bat = fleet.device_type == BATTERY
        lo = np.nan_to_num(fleet.soc_min, nan=0.0)
        hi = np.nan_to_num(fleet.soc_max, nan=1.0)
        soc = np.where(np.isfinite(soc), soc, self.default_soc)
        soc = np.where(bat, np.clip(soc, lo, hi), 0.0)
        forecast = self.forecast(fleet, state, start_s, step_s, n_steps)
        self.last_forecast = forecast
        config = OptimizerConfig(n_steps=n_steps, dt_s=step_s, time_limit_s=self.time_limit_s)
        plan = optimize(fleet, soc, forecast, config, t0_s=start_s)
        kpis = {k: v for k, v in plan.kpis.items() if k != "peak_import_kw_by_site"}
        if plan.reason:
            kpis["solver_reason"] = plan.reason
        return {"setpoints": plan_setpoints(fleet, np.asarray(plan.setpoints)),
                "kpis": jsonable(kpis),
                "solver_status": plan.status,
                "solver_time_s": float(plan.timings.get("total_s", 0.0))}


class HistoryWindow:
    """Recent device powers as ``every_s`` means, kept up to date from the zarr history.

    Parameters
    ----------
    window_s : float
        How far back the window reaches [s].
    every_s : float
        Length of the mean buckets [s].
    max_rows : int
        Most history snapshots read at once (bounds memory).

    The first :meth:`update` reads the whole window; later ones only the
    snapshots appended since.
    """

    def __init__(self, window_s: float = 14 * 86400.0, every_s: float = 900.0,
                 max_rows: int = 360):
        if not window_s > 0 or not every_s > 0:
            raise ValueError(f"window_s ({window_s}) and every_s ({every_s}) must be positive")
        self.window_s = float(window_s)
        self.every_s = float(every_s)
        self.max_rows = int(max_rows)
        self._read = 0  # history snapshots consumed
        # per block read: bucket keys, sums and counts per device (time order)
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, history: Any, now_s: float) -> None:
        """Read the snapshots added to ``history`` since the last call (up to ``now_s``)."""
        with history._lock:  # the snapshot times held in memory, consistent with n
            t_all = np.asarray(history._t, dtype=np.float64)
        n = len(t_all)
        start = max(self._read, int(np.searchsorted(t_all[:n], now_s - self.window_s)))
        while start < n:
            stop = min(n, start + self.max_rows)
            t = t_all[start:stop]
            p = np.asarray(history.group["p_kw"][start:stop], dtype=np.float64)
            self._add(t, p)
            start = stop
        self._read = n
        self._trim(now_s)
        if len(self._blocks) > 1:
            self._blocks = [self._merged()]

    def _add(self, t: np.ndarray, p: np.ndarray) -> None:
        b = np.floor(t / self.every_s).astype(np.int64)  # increasing with t
        first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ok = np.isfinite(p)
        self._blocks.append((
            b[first], np.add.reduceat(np.where(ok, p, 0.0), first, axis=0).astype(np.float32),
            np.add.reduceat(ok.astype(np.float32), first, axis=0)))

    def _trim(self, now_s: float) -> None:
        oldest = np.floor((now_s - self.window_s) / self.every_s)
        self._blocks = [blk for blk in self._blocks if blk[0][-1] >= oldest]

    def _merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys = np.concatenate([blk[0] for blk in self._blocks])
        sums = np.concatenate([blk[1] for blk in self._blocks])
        counts = np.concatenate([blk[2] for blk in self._blocks])
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # blocks share edges
        return (keys[first], np.add.reduceat(sums, first, axis=0),
                np.add.reduceat(counts, first, axis=0))

    def series(self) -> dict[str, np.ndarray]:
        """``history_t_s`` (bucket mid-times [Unix s]) and ``history_p_kw`` (means [kW],
        NaN where a device had no value), the planner's history inputs."""
        if not self._blocks:
            return {}
        keys, sums, counts = self._merged()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return {"history_t_s": (keys + 0.5) * self.every_s, "history_p_kw": mean}
