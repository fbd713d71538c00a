"""A dispatch plan: what the optimizer proposes, with how and why.

A :class:`Plan` holds per-device setpoint series in the twin's semantics
(``(n_steps, n_devices)``: battery ``p_kw`` positive = discharge, PV and EV
``p_limit_kw``, NaN = no setpoint), the site flows it expects, KPIs, the
solver's status, timings and the slack diagnosis. It serializes to JSON
(NaN and infinity as ``null``) and to an ``xarray.Dataset``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOW_NAMES = ("pv_kw", "pv_available_kw", "battery_kw", "ev_kw", "load_kw", "import_kw",
              "export_kw")
FORECAST_NAMES = ("import_price_eur_per_mwh", "feed_in_eur_per_mwh", "co2_kg_per_mwh")

OPTIMAL, TIME_LIMIT, FALLBACK = "optimal", "time_limit", "fallback"


@dataclass
class Plan:
    """A proposed dispatch over a horizon.

    Attributes
    ----------
    plan_id : str
        Identifier (deterministic from start time and content).
    created_s, t0_s : float
        Creation time and horizon start [Unix s].
    n_steps : int
        Steps in the horizon; ``dt_s`` their length [s].
    device_id, site_id : list of str
        Column labels of ``setpoints`` and of the site series.
    setpoints : (n_steps, n_devices) array
        Setpoints with the twin's semantics; NaN = no setpoint.
    flows : dict of (n_steps, n_sites) arrays
        Expected site flows [kW] (``FLOW_NAMES``).
    forecast : dict of (n_steps, n_sites) arrays
        Prices [EUR/MWh] and carbon intensity [kg/MWh] used.
    initial_soc : dict
        SoC (0..1) per battery id at the start.
    sessions : dict of lists
        EV sessions the plan served (charger id, arrival, departure, need).
    kpis : dict
        Fleet KPIs: ``cost_eur``, ``revenue_eur``, ``co2_kg``,
        ``curtailed_kwh``, ``battery_throughput_kwh``, ``ev_unmet_kwh``,
        ``peak_import_kw`` (largest site's) and ``peak_import_kw_by_site``.
    status : str
        ``optimal``, ``time_limit`` (part of the fleet fell back) or ``fallback``.
    reason : str
        Why the plan is not optimal (empty when it is).
    objective, gap : float
        LP objective [EUR] and relative gap (0 when optimal).
    timings : dict
        Seconds spent: ``build_s`` (checks, site data, LP assembly or update),
        ``solve_s`` (HiGHS), ``disaggregate_s`` (device setpoints, their check
        on the twin's physics, KPIs and diagnosis), ``total_s``.
    slacks : list of dict
        Every nonzero slack: ``{"where", "step", "constraint", "value", "unit"}``.
    check : dict
        Result of checking the setpoints on the twin's physics.
    """

    plan_id: str
    created_s: float
    t0_s: float
    n_steps: int
    dt_s: float
    device_id: list[str]
    site_id: list[str]
    setpoints: np.ndarray
    flows: dict[str, np.ndarray]
    forecast: dict[str, np.ndarray]
    initial_soc: dict[str, float]
    sessions: dict[str, list]
    kpis: dict[str, Any]
    status: str
    reason: str = ""
    objective: float = math.nan
    gap: float = math.nan
    timings: dict[str, float] = field(default_factory=dict)
    slacks: list[dict[str, Any]] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def is_fallback(self) -> bool:
        return self.status == FALLBACK

    @property
    def times_s(self) -> np.ndarray:
        """Start time of every step [Unix s]."""
        return self.t0_s + self.dt_s * np.arange(self.n_steps)

    def setpoint_at(self, t_s: float) -> np.ndarray:
        """Setpoints of the step containing ``t_s`` (all NaN outside the horizon)."""
        k = math.floor((t_s - self.t0_s) / self.dt_s + 1e-9)
        if 0 <= k < self.n_steps:
            return self.setpoints[k].copy()
        return np.full(len(self.device_id), np.nan)

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id, "created_s": self.created_s, "t0_s": self.t0_s,
            "n_steps": self.n_steps, "dt_s": self.dt_s, "device_id": list(self.device_id),
            "site_id": list(self.site_id), "setpoints": jsonable(self.setpoints),
            "flows": {k: jsonable(v) for k, v in self.flows.items()},
            "forecast": {k: jsonable(v) for k, v in self.forecast.items()},
            "initial_soc": jsonable(self.initial_soc), "sessions": jsonable(self.sessions),
            "kpis": jsonable(self.kpis), "status": self.status, "reason": self.reason,
            "objective": jsonable(self.objective), "gap": jsonable(self.gap),
            "timings": jsonable(self.timings), "slacks": jsonable(self.slacks),
            "check": jsonable(self.check), "solver": jsonable(self.solver),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        def arr(x: Any) -> np.ndarray:
            return np.array(x, dtype=np.float64) if x is not None else np.zeros(0)

        kpis = dict(data["kpis"])
        if "peak_import_kw_by_site" in kpis:
            kpis["peak_import_kw_by_site"] = {k: _num(v) for k, v in
                                              kpis["peak_import_kw_by_site"].items()}
        return cls(
            plan_id=data["plan_id"], created_s=float(data["created_s"]),
            t0_s=float(data["t0_s"]), n_steps=int(data["n_steps"]), dt_s=float(data["dt_s"]),
            device_id=list(data["device_id"]), site_id=list(data["site_id"]),
            setpoints=arr(data["setpoints"]).reshape(int(data["n_steps"]),
                                                     len(data["device_id"])),
            flows={k: arr(v) for k, v in data["flows"].items()},
            forecast={k: arr(v) for k, v in data["forecast"].items()},
            initial_soc={k: _num(v) for k, v in data["initial_soc"].items()},
            sessions=data["sessions"], kpis=kpis, status=data["status"],
            reason=data.get("reason", ""), objective=_num(data.get("objective")),
            gap=_num(data.get("gap")), timings=data.get("timings", {}),
            slacks=data.get("slacks", []), check=data.get("check", {}),
            solver=data.get("solver", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))

    # -- xarray ---------------------------------------------------------------
    def to_xarray(self):
        """The plan as an ``xarray.Dataset`` (dims ``time``, ``device``, ``site``)."""
        # Imported here: the solver's process needs no xarray, and its ~30,000 objects
        # would make every garbage collection of a plan's build walk them (a cold build of
        # the reference fleet measured 0.1 s slower with it loaded).
        import xarray as xr

        times = np.array(self.times_s * 1e9, dtype="datetime64[ns]")
        data_vars: dict[str, Any] = {
            "setpoint_kw": (("time", "device"), self.setpoints,
                            {"units": "kW", "description": "battery p_kw (+ discharge), PV and "
                             "EV p_limit_kw; NaN = no setpoint"}),
        }
        for name, values in self.flows.items():
            data_vars[name] = (("time", "site"), values, {"units": "kW"})
        for name, values in self.forecast.items():
            data_vars[name] = (("time", "site"), values, {})
        attrs = {
            "plan_id": self.plan_id, "created_s": self.created_s, "t0_s": self.t0_s,
            "dt_s": self.dt_s, "status": self.status, "reason": self.reason,
            "objective_eur": self.objective, "gap": self.gap,
            "kpis": json.dumps(jsonable(self.kpis)),
            "timings": json.dumps(jsonable(self.timings)),
            "slacks": json.dumps(jsonable(self.slacks)),
        }
        return xr.Dataset(data_vars, coords={"time": times, "device": list(self.device_id),
                                             "site": list(self.site_id)}, attrs=attrs)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            out = value.astype(object)
            out[~np.isfinite(value)] = None
            return out.tolist()
        return jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
