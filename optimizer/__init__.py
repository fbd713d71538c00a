"""Dispatch optimizer: one Pyomo model, solved by HiGHS at fleet scale, in a rolling horizon.

Entry points
------------
``optimize(fleet, initial, forecast, config, t0_s) -> Plan``
    One solve over one horizon. ``initial`` is the twin's ``TwinState`` (or
    a SoC per device row, or one SoC). Never raises for a solver outcome or
    refused input (``strict=True`` raises :class:`OptimizerInputError`); a
    failure gives a fallback plan whose ``status`` is ``"fallback"`` and whose
    ``reason`` names the cause.
``MpcController(fleet, config, every_n_steps)``
    Rolling horizon: keeps the HiGHS models and re-solves with new prices,
    forecasts and state (``controller.setpoints(t_s, state, forecast)``).
``Dispatcher``
    The reusable solver behind both (compiled site blocks, group LPs, HiGHS).
``Plan``
    ``plan.setpoints`` is ``(n_steps, n_devices)`` with the twin's setpoint
    semantics (battery ``p_kw`` positive = discharge, PV and EV
    ``p_limit_kw``, NaN = no setpoint); ``plan.setpoint_at(t_s)`` gives one
    step's row for ``Twin.step``. KPIs, status, gap, timings and slack
    diagnosis ride along; ``to_json``/``from_json`` and ``to_xarray``.
``Forecast``, ``EvSessions``, ``OptimizerConfig``
    Inputs (see :mod:`optimizer.types`).
``pv_forecast``, ``clear_sky_pv_forecast``, ``load_forecast``, ``sessions_from_state``
    Build forecast pieces from the twin's physics and state
    (:mod:`optimizer.forecast`, :mod:`optimizer.ev_forecast`).
``live_forecast``
    Correct a forecast by the telemetry history: PV by clear-sky index, load by
    day-type profile, optionally EV sessions from recent charging.
``synthetic_inputs``
    A plausible deterministic forecast for examples and tests.
``check_on_twin(twin, plan, step_inputs)``
    Step a copy of the twin through a plan and report how far it lands from it.

The model's one statement is :mod:`optimizer.model` (Pyomo);
:func:`optimizer.model.solve_pyomo` solves it through Pyomo (the test oracle);
the fast path compiles one site block and replicates it (:mod:`optimizer.compile`).
"""

from optimizer.check import check_on_twin
from optimizer.dispatch import Dispatcher, optimize
from optimizer.ev_forecast import sessions_from_state
from optimizer.forecast import clear_sky_pv_forecast, live_forecast, load_forecast, pv_forecast
from optimizer.mpc import MpcController
from optimizer.plan import Plan
from optimizer.synthetic import synthetic_inputs
from optimizer.types import EvSessions, Forecast, OptimizerConfig, OptimizerInputError

__all__ = [
    "Dispatcher",
    "EvSessions",
    "Forecast",
    "MpcController",
    "OptimizerConfig",
    "OptimizerInputError",
    "Plan",
    "check_on_twin",
    "clear_sky_pv_forecast",
    "live_forecast",
    "load_forecast",
    "optimize",
    "pv_forecast",
    "sessions_from_state",
    "synthetic_inputs",
]
