"""Rolling-horizon (MPC) control: re-plan every N steps on the kept HiGHS models.

:class:`MpcController` keeps one :class:`~optimizer.dispatch.Dispatcher`, so
the compiled site blocks, the group LPs and their HiGHS instances live across
re-solves; a re-solve only changes costs, bounds and right-hand sides and
dual simplex starts from the last basis. Time comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optimizer.dispatch import Dispatcher, Initial
from optimizer.plan import Plan
from optimizer.types import Forecast, OptimizerConfig
from twin.fleet import Fleet
from twin.state import TwinState

ForecastSource = Forecast | Callable[[float], Forecast]


class MpcController:
    """Re-solves every ``every_n_steps`` steps from the twin's current state.

    Parameters
    ----------
    fleet : Fleet
    config : OptimizerConfig, optional
        Horizon, step and costs; the same for every re-solve.
    every_n_steps : int
        Re-plan cadence in steps of ``config.dt_s``.
    strict : bool
        Raise on refused input instead of planning the fallback.

    Examples
    --------
    >>> ctl = MpcController(fleet, OptimizerConfig(n_steps=96), every_n_steps=4)
    >>> for k in range(96):                                   # doctest: +SKIP
    ...     t = t0 + k * 900.0
    ...     sp = ctl.setpoints(t, twin.state, lambda t: forecast_from(t))
    ...     twin.step(t, 900.0, inputs[k], sp)
    """

    def __init__(self, fleet: Fleet, config: OptimizerConfig | None = None,
                 every_n_steps: int = 4, strict: bool = False):
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        self.dispatcher = Dispatcher(fleet, config, strict=strict)
        self.every_n_steps = every_n_steps
        self.plan: Plan | None = None
        self.history: list[dict[str, float | str]] = []

    @property
    def config(self) -> OptimizerConfig:
        return self.dispatcher.config

    def due(self, t_s: float) -> bool:
        """Whether a re-plan is due at ``t_s`` [Unix s]."""
        if self.plan is None or self.plan.is_fallback:
            return True
        return t_s >= self.plan.t0_s + self.every_n_steps * self.config.dt_s - 1e-6 or \
            t_s < self.plan.t0_s

    def resolve(self, t_s: float, initial: Initial, forecast: ForecastSource) -> Plan:
        """Plan now from ``initial`` (a TwinState or SoC) and a fresh forecast."""
        fc = forecast(t_s) if callable(forecast) else forecast
        self.plan = self.dispatcher.plan(initial, fc, t_s)
        self.history.append({"t_s": t_s, "status": self.plan.status,
                             "total_s": self.plan.timings.get("total_s", 0.0),
                             "reused_model": str(self.plan.solver.get("reused_model", False))})
        return self.plan

    def setpoints(self, t_s: float, state: TwinState | Initial,
                  forecast: ForecastSource) -> np.ndarray:
        """Setpoints (one per device row) for the step starting at ``t_s``.

        Re-plans first when due; ``forecast`` may be a callable ``t_s ->
        Forecast`` so that forecasts are only fetched when a re-plan happens.
        """
        if self.due(t_s):
            self.resolve(t_s, state, forecast)
        assert self.plan is not None
        return self.plan.setpoint_at(t_s)
