"""Planning in the live service: plans from the twin's state, a forecast and the market.

* :class:`OptimizerPlanner` implements :class:`api.live.types.Planner` with
  ``optimizer.optimize``. The batteries' state of charge comes from live
  telemetry (devices that have not reported start at ``default_soc``). The
  forecast starts from ``optimizer.synthetic.synthetic_inputs`` (clear-sky PV
  at each site, profile-shaped loads, EV sessions) and is corrected by the
  recent telemetry handed in (``history_t_s``, ``history_p_kw`` in ``state``)
  through :func:`optimizer.forecast.live_forecast`: PV is clear sky times a
  clear-sky index from recent telemetry, the load blends the day-type profile
  with the latest measurement, and EV sessions come from the arrival
  statistics of recent charging sessions. Prices and carbon intensity are the
  service's own (``import_price_eur_per_mwh``, ``export_price_eur_per_mwh``,
  ``co2_kg_per_mwh`` in ``state``: :func:`api.analytics.market.service_market`), so the
  live KPIs count with the same numbers the plan was made with.
* :class:`HistoryWindow` keeps the recent 15-minute means of every device's
  ``p_kw`` from the one telemetry store (:class:`adapters.history.History`),
  reading only the buckets it has not seen.
* :class:`PlanRequests` computes a plan on request or on the optimizer cadence
  and hands it to the approvals as ``proposed``.

The optimizer itself runs in a worker process (:mod:`api.live.optimizer_worker`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from adapters.history import History, HistoryError
from api.live.metrics import Metrics
from api.live.types import Clock, Planner, ServiceUnavailable
from api.settings import Settings
from optimizer.dispatch import optimize
from optimizer.forecast import live_forecast
from optimizer.plan import jsonable
from optimizer.synthetic import synthetic_inputs
from optimizer.types import Forecast, OptimizerConfig
from twin.fleet import BATTERY, Fleet
from twin.limits import SETPOINT_KEY
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)

#: ``market(t_s) -> (import [EUR/MWh], export [EUR/MWh], co2 [kg/MWh])`` at each time.
Market = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def plan_setpoints(fleet: Fleet, setpoints: np.ndarray, digits: int = 2
                   ) -> dict[str, dict[str, list[float | None]]]:
    """``(n_steps, n_devices)`` setpoints as ``{kind: {device_id: [value or None]}}``.

    Devices without any setpoint over the horizon are left out; values are
    rounded to ``digits`` decimals [kW].
    """
    out: dict[str, dict[str, list[float | None]]] = {}
    has = np.isfinite(setpoints).any(axis=0)
    ids = fleet.device_id
    for row in np.flatnonzero(has).tolist():
        kind = SETPOINT_KEY.get(int(fleet.device_type[row]))
        if kind is None:
            continue
        col = np.round(setpoints[:, row], digits)
        out.setdefault(kind, {})[ids[row]] = [None if not np.isfinite(v) else float(v)
                                              for v in col]
    return out


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
        self.time_limit_s = time_limit_s
        self.default_soc = default_soc
        self.min_history_s = min_history_s
        self.last_forecast: Forecast | None = None

    def forecast(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float,
                 step_s: float, n_steps: int) -> Forecast:
        """The plan's forecast (:class:`optimizer.types.Forecast`) from ``start_s`` [Unix s].

        ``state`` may hold ``history_t_s`` (n_times,) [Unix s] and
        ``history_p_kw`` (n_times, n_devices) [kW]: recent device powers (e.g.
        15-minute means). With at least ``min_history_s`` of them the
        synthetic stand-in is corrected (:func:`optimizer.forecast.live_forecast`).
        ``import_price_eur_per_mwh``, ``export_price_eur_per_mwh`` and
        ``co2_kg_per_mwh`` (one value per step) replace the stand-in's market.
        """
        base = synthetic_inputs(fleet, n_steps=n_steps, t0_s=start_s, dt_s=step_s)
        market = [state.get(k) for k in ("import_price_eur_per_mwh", "export_price_eur_per_mwh",
                                         "co2_kg_per_mwh")]
        if all(m is not None for m in market):
            for name, m in zip(("import_price_eur_per_mwh", "export_price_eur_per_mwh",
                                "co2_kg_per_mwh"), market, strict=True):
                if np.shape(m) != (n_steps,):
                    raise ValueError(f"{name} has shape {np.shape(m)}; expected ({n_steps},):"
                                     " one value per plan step")
            base = replace(base,  # Forecast is frozen
                           import_price_eur_per_mwh=np.asarray(market[0], dtype=np.float64),
                           feed_in_eur_per_mwh=np.asarray(market[1], dtype=np.float64),
                           co2_kg_per_mwh=np.asarray(market[2], dtype=np.float64))
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
    """Recent device powers as ``every_s`` means, kept up to date from the telemetry store.

    Parameters
    ----------
    window_s : float
        How far back the window reaches [s].
    every_s : float
        Length of the mean buckets [s] (a multiple of the store's 5-minute rollups).

    The first :meth:`update` reads the whole window; later ones only the buckets
    from the last one read (which may have grown) on. Bucket means are kept as
    float32 by device id, so a fleet edit keeps the history of the devices kept.
    """

    def __init__(self, window_s: float = 14 * 86400.0, every_s: float = 900.0):
        if not window_s > 0 or not every_s > 0:
            raise ValueError(f"window_s ({window_s}) and every_s ({every_s}) must be positive")
        self.window_s = float(window_s)
        self.every_s = float(every_s)
        self._t = np.zeros(0)  # bucket starts [Unix s]
        self._p = np.zeros((0, 0), dtype=np.float32)  # (buckets, devices) means [kW]
        self._ids: list[str] = []
        self._col: dict[str, int] = {}

    def update(self, history: History, now_s: float) -> None:
        """Read the buckets of ``history`` from the last one held (or the window's start)
        up to ``now_s`` [Unix s]."""
        oldest = np.floor((now_s - self.window_s) / self.every_s) * self.every_s
        start = float(self._t[-1]) if len(self._t) else oldest
        start = max(start, oldest)
        try:
            frame = history.read_since(start, "p_kw", every_s=self.every_s, now_s=now_s)
        except HistoryError as exc:  # nothing stored yet
            log.debug("no history for the planner yet: %s", exc)
            return
        self._add(frame.t_s, frame.values, list(frame.device_ids))
        keep = self._t >= oldest
        self._t, self._p = self._t[keep], self._p[keep]

    def _add(self, t_s: np.ndarray, values: np.ndarray, ids: list[str]) -> None:
        for d in ids:
            if d not in self._col:
                self._col[d] = len(self._ids)
                self._ids.append(d)
        n = len(self._ids)
        if self._p.shape[1] < n:
            grown = np.full((self._p.shape[0], n), np.nan, dtype=np.float32)
            grown[:, :self._p.shape[1]] = self._p
            self._p = grown
        cols = np.array([self._col[d] for d in ids], dtype=np.int64)
        block = np.full((len(t_s), n), np.nan, dtype=np.float32)
        block[:, cols] = values
        # buckets read again (the last one, still filling) replace the ones held
        keep = ~np.isin(self._t, t_s)
        t = np.concatenate([self._t[keep], np.asarray(t_s, dtype=np.float64)])
        p = np.concatenate([self._p[keep], block])
        order = np.argsort(t, kind="stable")
        self._t, self._p = t[order], p[order]

    def series(self, fleet: Fleet) -> dict[str, np.ndarray]:
        """``history_t_s`` (bucket mid-times [Unix s]) and ``history_p_kw`` (means [kW],
        one column per device row of ``fleet``, NaN where a device had no value), the
        planner's history inputs; empty before any history."""
        if not len(self._t):
            return {}
        out = np.full((len(self._t), fleet.n_devices), np.nan)
        rows = [(r, self._col[d]) for r, d in enumerate(fleet.device_id.tolist())
                if d in self._col]
        if rows:
            r, c = np.array(rows).T
            out[:, r] = self._p[:, c]
        return {"history_t_s": self._t + 0.5 * self.every_s, "history_p_kw": out}


class PlanRequests:
    """Plans on request and on the optimizer cadence.

    Parameters
    ----------
    settings : Settings
        Plan step, horizon and cadence.
    planner : Planner
        Computes plans (a :class:`~api.live.optimizer_worker.ProcessPlanner` in the service).
    fleet : callable
        ``() -> Fleet``, the fleet in force now.
    telemetry : Telemetry
        The twin's live arrays (state of charge, powers).
    history : History
        The telemetry store (the recent means for the forecast).
    market : callable
        Prices and carbon intensity at given times (``Market.at`` of
        :func:`api.analytics.market.service_market`).
    propose : callable
        ``propose(plan, now_s) -> record``: stores the plan as proposed (the approvals).
    audit : callable
        ``audit(user, action, target)``: one audit log entry.
    on_plan : callable
        ``fn(plan)`` after each plan (the alerts: a fallback plan opens one).
    metrics : Metrics
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, settings: Settings, planner: Planner, *, fleet: Callable[[], Fleet],
                 telemetry: Telemetry, history: History, market: Market,
                 propose: Callable[[dict[str, Any], float], dict[str, Any]],
                 audit: Callable[[str, str, str], None],
                 on_plan: Callable[[dict[str, Any]], None], metrics: Metrics, clock: Clock):
        self.settings = settings
        self.planner = planner
        self.fleet = fleet
        self.telemetry = telemetry
        self.history = history
        self.market = market
        self.propose = propose
        self.audit = audit
        self.on_plan = on_plan
        self.metrics = metrics
        self.clock = clock
        self.window = HistoryWindow()
        self.last_plan_s: float | None = None
        self._lock = asyncio.Lock()

    def request(self, user: str) -> dict[str, Any]:
        """Compute a plan now from the twin's current state and store it as proposed."""
        now = self.clock()
        fleet = self.fleet()
        step = self.settings.plan_step_s
        start = float(np.floor(now / step) * step)
        n_steps = max(1, round(self.settings.plan_horizon_s / step))
        snap: dict[str, Any] = {"p_kw": self.telemetry.column("p_kw")[0],
                                "soc": self.telemetry.column("soc")[0]}
        if len(snap["soc"]) != fleet.n_devices:
            raise ServiceUnavailable("the fleet is being reloaded; ask for the plan again")
        self.window.update(self.history, now)
        snap.update(self.window.series(fleet))
        imp, exp, co2 = self.market(start + step * np.arange(n_steps))
        snap.update(import_price_eur_per_mwh=imp, export_price_eur_per_mwh=exp,
                    co2_kg_per_mwh=co2)
        t0 = time.perf_counter()
        result = self.planner.plan(fleet, snap, start, step, n_steps)
        wall = time.perf_counter() - t0
        self.metrics.optimizer_seconds.observe(wall)
        soc = snap["soc"]
        plan = {"id": secrets.token_hex(8), "created_s": now, "start_s": start,
                "step_s": step, "n_steps": n_steps,
                "initial_state": {"t_s": now, "soc": {
                    d: round(float(soc[i]), 4) for i, d in enumerate(fleet.device_id.tolist())
                    if np.isfinite(soc[i])}},
                "setpoints": result["setpoints"], "kpis": result["kpis"],
                "solver_status": result["solver_status"],
                "solver_time_s": float(result.get("solver_time_s", wall))}
        rec = self.propose(plan, now)
        self.audit(user, "plan.request", f"plan:{plan['id']}")
        self.metrics.plans.labels("proposed").inc()
        if plan["solver_status"] == "fallback":
            self.metrics.plans.labels("fallback").inc()
        self.last_plan_s = now
        self.on_plan(plan)
        return {k: v for k, v in rec.items() if k != "setpoints"}

    async def request_async(self, user: str) -> dict[str, Any]:
        """:meth:`request` on a thread, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(self.request, user)

    async def run(self) -> None:
        """The first plan soon after the start (once telemetry has arrived), then one every
        ``optimizer_interval_s``."""
        await asyncio.sleep(min(self.settings.optimizer_interval_s, 20.0))
        while True:
            try:
                await self.request_async("optimizer")
            except Exception:
                log.exception("scheduled plan failed; continuing")
            await asyncio.sleep(self.settings.optimizer_interval_s)
