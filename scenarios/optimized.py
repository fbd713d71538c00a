"""Strategy ``optimizer``: the dispatch optimizer in a rolling horizon (MPC).

Every ``strategy.cadence`` the :class:`optimizer.MpcController` re-plans
``strategy.horizon`` ahead from the twin's state as the controller sees it
(stale for sites without communication) and a forecast built from the
scenario's own inputs for the coming steps, multiplied by ``1 + e * N(0, 1)``
with the stated relative errors (``forecast_error.pv``, ``.load``,
``.price``; drawn from the scenario's seeded ``forecast`` stream). Past the
end of the period the inputs continue (generated on, or held from the CSV).
Connected EV sessions come from the twin; future arrivals are not known to
the controller. A failed or refused solve gives the optimizer's fallback
plan, counted in the KPIs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optimizer import EvSessions, Forecast, MpcController, OptimizerConfig, sessions_from_state
from scenarios.inputs import stream
from scenarios.schema import Scenario
from scenarios.strategies import FleetIndex, Observation
from twin.fleet import Fleet
from twin.model import Twin


class OptimizerStrategy:
    """MPC with the dispatch optimizer.

    Parameters
    ----------
    scenario : Scenario
        Gives cadence, horizon, step, forecast errors and seed.
    index : FleetIndex
        The fleet's rows.
    fleet : Fleet
        The fleet.
    twin : Twin
        The simulated twin (EV sessions and the state's other fields).
    """

    name = "optimizer"

    def __init__(self, scenario: Scenario, index: FleetIndex, fleet: Fleet, twin: Twin):
        spec = scenario.strategy
        dt_s = scenario.period.step
        self.horizon = max(1, round(spec.horizon / dt_s))
        every = max(1, round(spec.cadence / dt_s))
        self.config = OptimizerConfig(n_steps=self.horizon, dt_s=dt_s)
        self.controller = MpcController(fleet, self.config, every_n_steps=every)
        self.ix = index
        self.fleet = fleet
        self.twin = twin
        self.errors = spec.forecast_error
        self.rng = stream(scenario.seed, "forecast")

    def setpoints(self, obs: Observation) -> np.ndarray:
        seen = dataclasses.replace(self.twin.state, e_kwh=obs.e_kwh, device_ok=obs.device_ok,
                                   t_s=obs.t_s)
        return self.controller.setpoints(obs.t_s, seen, lambda t_s: self._forecast(obs, seen))

    def _forecast(self, obs: Observation, seen: Any) -> Any:
        assert obs.window is not None
        w = obs.window(self.horizon)
        n = len(w["t_s"])
        take = np.arange(self.horizon)
        if n < self.horizon:  # past what was generated: repeat the last day
            per_day = max(1, round(86400.0 / obs.dt_s))
            take = np.where(take < n, take, n - per_day + (take - n) % per_day)
            take = np.clip(take, 0, n - 1)
        ix, e = self.ix, self.errors
        pv_ok = obs.device_ok[ix.pv] != 0
        pv_dev = w["pv_avail_kw"][take] * pv_ok
        if e.pv > 0:
            pv_dev = pv_dev * np.maximum(
                1.0 + e.pv * self.rng.standard_normal((self.horizon, ix.n_sites)), 0.0
            )[:, ix.pv_site]
        pv_site = np.zeros((self.horizon, ix.n_sites))
        np.add.at(pv_site.T, ix.pv_site, pv_dev.T)
        device = np.zeros((self.horizon, ix.n_devices))
        device[:, ix.pv] = pv_dev
        load = -w["load_site_kw"][take]
        if e.load > 0:
            load = load * np.maximum(1.0 + e.load * self.rng.standard_normal(load.shape), 0.0)
        price = w["price_eur_per_mwh"][take, 0] * obs.price_factor + obs.price_add_eur_per_mwh
        if e.price > 0:
            price = price * (1.0 + e.price * self.rng.standard_normal(price.shape))
        sessions = sessions_from_state(self.twin.params, seen)
        staying = sessions.departure_s > obs.t_s  # gone ones are cleared by the next step
        sessions = EvSessions(charger_row=sessions.charger_row[staying],
                              arrival_s=sessions.arrival_s[staying],
                              departure_s=sessions.departure_s[staying],
                              need_kwh=sessions.need_kwh[staying])
        return Forecast(pv_kw=pv_site, load_kw=load, import_price_eur_per_mwh=price,
                        feed_in_eur_per_mwh=w["feed_in_eur_per_mwh"][take, 0],
                        co2_kg_per_mwh=w["co2_kg_per_mwh"][take, 0],
                        ev_sessions=sessions, pv_device_kw=device)

    def stats(self) -> dict[str, Any]:
        hist = self.controller.history
        times = np.array([float(h["total_s"]) for h in hist])
        return {
            "solves": len(hist),
            "solve_s_total": float(times.sum()) if len(times) else 0.0,
            "solve_s_median": float(np.median(times)) if len(times) else float("nan"),
            "fallbacks": sum(1 for h in hist if h["status"] == "fallback"),
        }


def make_optimizer_strategy(scenario: Scenario, index: FleetIndex, fleet: Fleet,
                            twin: Twin) -> OptimizerStrategy:
    """The ``optimizer`` strategy of a scenario."""
    return OptimizerStrategy(scenario, index, fleet, twin)
