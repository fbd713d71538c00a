"""The live planner: the optimizer over the twin's current state and a forecast.

:class:`OptimizerPlanner` implements :class:`api.types.Planner` with
``optimizer.optimize``. The batteries' state of charge comes from live
telemetry (devices that have not reported start at ``default_soc``). The
forecast is ``optimizer.synthetic.synthetic_inputs``: clear-sky PV at each
site, profile-shaped loads and a day-ahead-like price and carbon curve; the
live service has no weather, market or carbon feed yet, so this is a stated
stand-in for one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    """

    def __init__(self, time_limit_s: float = 30.0, default_soc: float = 0.5):
        from optimizer.dispatch import optimize  # noqa: F401  (fail early when missing)

        self.time_limit_s = time_limit_s
        self.default_soc = default_soc

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        from optimizer.dispatch import optimize
        from optimizer.synthetic import synthetic_inputs
        from optimizer.types import OptimizerConfig

        soc = np.asarray(state["soc"], dtype=np.float64).copy()
        bat = fleet.device_type == BATTERY
        lo = np.nan_to_num(fleet.soc_min, nan=0.0)
        hi = np.nan_to_num(fleet.soc_max, nan=1.0)
        soc = np.where(np.isfinite(soc), soc, self.default_soc)
        soc = np.where(bat, np.clip(soc, lo, hi), 0.0)
        forecast = synthetic_inputs(fleet, n_steps=n_steps, t0_s=start_s, dt_s=step_s)
        config = OptimizerConfig(n_steps=n_steps, dt_s=step_s, time_limit_s=self.time_limit_s)
        plan = optimize(fleet, soc, forecast, config, t0_s=start_s)
        kpis = {k: v for k, v in plan.kpis.items() if k != "peak_import_kw_by_site"}
        if plan.reason:
            kpis["solver_reason"] = plan.reason
        return {"setpoints": plan_setpoints(fleet, np.asarray(plan.setpoints)),
                "kpis": _jsonable(kpis),
                "solver_status": plan.status,
                "solver_time_s": float(plan.timings.get("total_s", 0.0))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
