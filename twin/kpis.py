"""Energy, money, CO2 and peak: the one statement of the definitions, for every caller.

The twin's kernel (``twin.kernels.step_fleet``, accumulators
``TwinState.site_totals``), the scenarios, the live KPIs, the power history
and the analytics all use these definitions; ``tests/twin/test_kpis.py``
checks that they agree on one series. Per site and time, from the device
powers ``p_kw`` (positive when a device delivers power to its site):

* **generation** = PV output (battery discharge is storage, reported on its own);
* **consumption** = load + EV charging, as a positive number (battery charging
  is storage, not consumption);
* **battery** = net battery power, discharge positive;
* **grid** = sum of all device powers = the site's grid exchange, export
  positive; **import** = ``max(-grid, 0)``, **export** = ``max(grid, 0)``;
* **self-consumption** = ``max(generation - export, 0)`` per step;
* **cost** = import x import price; **revenue** = export x export (feed-in)
  price [EUR]; **CO2 avoided** = generation x grid carbon intensity [kg];
* **peak import** = the highest site import [kW].

Functions: :func:`device_flows` (device powers -> site flows [kW]),
:class:`Tariff` (import and export price and carbon intensity, constant or a
step series), :func:`energy_value` (energies -> cost, revenue, CO2),
:func:`energy_steps` (snapshots held until the next -> energies and money).
From the twin's accumulators: :func:`site_kpis`, :func:`fleet_kpis` and, with a
:class:`StepTracker` fed every step, :func:`compute_kpis` (the scenario runner's
KPIs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER, LOAD, PV, Fleet
from twin.state import FLOW, TOTAL, TwinParams, TwinState

QUANTITIES: tuple[str, ...] = ("generation_kwh", "consumption_kwh", "import_kwh", "export_kwh",
                               "self_consumption_kwh", "cost_eur", "revenue_eur",
                               "co2_avoided_kg")

# A tariff value: a constant, a step series (times [Unix s], values), or a function of time
# (``f(t_s) -> values``, e.g. a daily curve).
TariffValue = float | tuple[np.ndarray, np.ndarray] | Callable[[np.ndarray], np.ndarray]


# -- device powers -> site flows ------------------------------------------------------------
def device_flows(p_kw: np.ndarray, device_type: np.ndarray, device_site: np.ndarray,
                 n_sites: int) -> dict[str, np.ndarray]:
    """Site power flows from device powers.

    Parameters
    ----------
    p_kw : (n_times, n_devices) or (n_devices,) array
        Device powers [kW], positive when delivering to the site. NaN: no
        value, counted as 0.
    device_type : (n_devices,) int array
        Type code of each device (``twin.fleet.PV``, ``BATTERY``, ``EV_CHARGER``,
        ``LOAD``).
    device_site : (n_devices,) int array
        Site row of each device, in ``0 .. n_sites-1``.
    n_sites : int
        Number of sites.

    Returns
    -------
    dict of (n_times, n_sites) arrays [kW] ((n_sites,) for a 1-D ``p_kw``)
        ``generation_kw`` (PV output, >= 0), ``consumption_kw`` (load and EV
        charging, >= 0), ``battery_kw`` (net, discharge positive), ``grid_kw``
        (sum of all device powers, export positive), ``import_kw``,
        ``export_kw`` (both >= 0).
    """
    p = np.asarray(p_kw, dtype=np.float64)
    one = p.ndim == 1
    p = np.atleast_2d(p)
    kind = np.asarray(device_type)
    site = np.asarray(device_site, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != len(kind) or len(site) != len(kind):
        raise ValueError(f"p_kw has shape {np.shape(p_kw)}; expected (n_times, n_devices) "
                         f"with n_devices = {len(kind)} device types and {len(site)} sites")
    if len(site) and (site.min() < 0 or site.max() >= n_sites):
        raise ValueError(f"device_site must lie in 0..{n_sites - 1}, got "
                         f"{site.min()}..{site.max()}")
    missing = np.isnan(p)
    if missing.any():
        p = np.where(missing, 0.0, p)
    pv, bat = kind == PV, kind == BATTERY
    use = (kind == LOAD) | (kind == EV_CHARGER)
    out = {
        "generation_kw": _site_sum(np.maximum(p[:, pv], 0.0), site[pv], n_sites),
        "consumption_kw": _site_sum(np.maximum(-p[:, use], 0.0), site[use], n_sites) + 0.0,
        "battery_kw": _site_sum(p[:, bat], site[bat], n_sites),
        "grid_kw": _site_sum(p, site, n_sites),
    }
    out["import_kw"] = np.maximum(-out["grid_kw"], 0.0) + 0.0
    out["export_kw"] = np.maximum(out["grid_kw"], 0.0) + 0.0
    return {k: v[0] for k, v in out.items()} if one else out


def _site_sum(x: np.ndarray, site: np.ndarray, n_sites: int) -> np.ndarray:
    """Sum the columns of ``x`` (n_times, n_columns) per site -> (n_times, n_sites).

    ``site`` is each column's site row; columns are summed in their order.
    """
    out = np.zeros((x.shape[0], n_sites))
    if len(site) == 0:
        return out
    if np.any(np.diff(site) < 0):
        order = np.argsort(site, kind="stable")
        x, site = x[:, order], site[order]
    first = np.flatnonzero(np.r_[True, np.diff(site) > 0])  # first column of each site
    out[:, site[first]] = np.add.reduceat(x, first, axis=1)
    return out


# -- prices and carbon --------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Tariff:
    """Import price, export price and grid carbon intensity.

    Each is a constant, a step series ``(times [Unix s], values)`` of numpy
    arrays (a value holds from its time until the next one; before the first
    time the first value holds), or a function of time ``f(t_s) -> values``
    (a daily price curve, say).

    Parameters
    ----------
    import_price_eur_per_mwh : float or (times, values)
        Price of imported energy [EUR/MWh].
    export_price_eur_per_mwh : float or (times, values)
        Price paid for exported energy (feed-in) [EUR/MWh].
    co2_kg_per_mwh : float or (times, values)
        Grid carbon intensity [kg/MWh], not negative.
    """

    import_price_eur_per_mwh: TariffValue
    export_price_eur_per_mwh: TariffValue
    co2_kg_per_mwh: TariffValue

    def __post_init__(self) -> None:
        for name in ("import_price_eur_per_mwh", "export_price_eur_per_mwh", "co2_kg_per_mwh"):
            object.__setattr__(self, name, _step_series(name, getattr(self, name)))
        co2 = self.co2_kg_per_mwh
        if not callable(co2) and np.any(np.asarray(co2 if isinstance(co2, float)
                                                   else co2[1]) < 0):
            raise ValueError("Tariff co2_kg_per_mwh must not be negative")

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Import price, export price [EUR/MWh] and carbon intensity [kg/MWh] at ``t_s`` [Unix s].

        Returns three arrays of the shape of ``t_s``.
        """
        t = np.asarray(t_s, dtype=np.float64)
        return (_held(self.import_price_eur_per_mwh, t), _held(self.export_price_eur_per_mwh, t),
                _held(self.co2_kg_per_mwh, t))


def _step_series(name: str, value: Any) -> TariffValue:
    """A constant as float, a series as (sorted times, values) read-only float arrays, a
    function of time as it is."""
    if callable(value):
        return value
    if not isinstance(value, tuple | list):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Tariff {name} must be a number or a pair (times [Unix s], "
                             f"values), got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"Tariff {name} must be a finite number, got {value!r}")
        return v
    if len(value) != 2:
        raise ValueError(f"Tariff {name} must be a number or a pair (times [Unix s], values)")
    times, values = value
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape or len(t) == 0:
        raise ValueError(f"Tariff {name}: times and values must be 1-D, of equal length and "
                         f"not empty; got shapes {t.shape} and {v.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise ValueError(f"Tariff {name}: times and values must be finite")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    t.setflags(write=False)
    v.setflags(write=False)
    return t, v


def _held(value: TariffValue, t: np.ndarray) -> np.ndarray:
    if isinstance(value, float):
        return np.full(t.shape, value)
    if callable(value):
        return np.broadcast_to(np.asarray(value(t), dtype=np.float64), t.shape).copy()
    times, values = value
    pos = np.searchsorted(times, t, side="right") - 1
    return values[np.clip(pos, 0, len(times) - 1)]


def energy_value(t_s: np.ndarray | float, generation_kwh: np.ndarray, import_kwh: np.ndarray,
                 export_kwh: np.ndarray, tariff: Tariff) -> dict[str, np.ndarray]:
    """Cost, revenue and CO2 avoided of energies at the tariff of their times.

    Parameters
    ----------
    t_s : (n_times,) array or float
        Time of each energy [Unix s] (its price and intensity apply).
    generation_kwh, import_kwh, export_kwh : arrays
        Energies [kWh] whose first axis is time (any trailing axes, e.g. sites);
        with a scalar ``t_s``, any shape.
    tariff : Tariff
        Prices and carbon intensity.

    Returns
    -------
    dict of arrays
        ``cost_eur`` = import x import price, ``revenue_eur`` = export x export
        price [EUR], ``co2_avoided_kg`` = generation x intensity [kg].
    """
    gen, imp, exp = (np.asarray(x, dtype=np.float64) for x in (generation_kwh, import_kwh,
                                                                export_kwh))
    t = np.asarray(t_s, dtype=np.float64)
    prices = tariff.at(t)
    if t.ndim == 1:
        for name, x in (("generation_kwh", gen), ("import_kwh", imp), ("export_kwh", exp)):
            if x.ndim == 0 or x.shape[0] != len(t):
                raise ValueError(f"{name} has shape {x.shape}; its first axis must be the "
                                 f"{len(t)} times of t_s")
        prices = tuple(p.reshape(p.shape + (1,) * (gen.ndim - 1)) for p in prices)
    elif t.ndim != 0:
        raise ValueError(f"t_s must be a number or 1-D, got shape {t.shape}")
    import_price, export_price, co2 = prices
    return {"cost_eur": imp * import_price * 1e-3, "revenue_eur": exp * export_price * 1e-3,
            "co2_avoided_kg": gen * co2 * 1e-3}


def energy_steps(fleet: Fleet, t_s: np.ndarray, p_kw: np.ndarray, tariff: Tariff,
                 max_gap_s: float = 60.0, last_s: float = 0.0) -> dict[str, np.ndarray]:
    """Per snapshot and site: energy, money and CO2 of device power snapshots.

    Each snapshot's power holds until the next snapshot, for at most
    ``max_gap_s`` (a longer gap is missing data, not energy); the last snapshot
    holds for ``last_s`` (0: it counts for nothing; a bucket mean of length
    ``last_s`` holds for its bucket). Flows from :func:`device_flows`, value from
    :func:`energy_value` at each snapshot's time.

    Parameters
    ----------
    fleet : Fleet
        Device types and sites (device rows = columns of ``p_kw``).
    t_s : (n_times,) array
        Snapshot times [Unix s], not decreasing.
    p_kw : (n_times, n_devices) array
        Device powers [kW] (NaN: no value, counts as 0).
    tariff : Tariff
        Prices and carbon intensity.
    max_gap_s : float
        Longest time a snapshot's power is held [s].
    last_s : float
        How long the last snapshot's power is held [s] (at most ``max_gap_s``).

    Returns
    -------
    dict of (n_times, n_sites) arrays
        One per name of :data:`QUANTITIES`: energies [kWh], money [EUR], CO2 [kg].
    """
    t = np.asarray(t_s, dtype=np.float64)
    p = np.asarray(p_kw, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 2 or p.shape[0] != len(t):
        raise ValueError(f"t_s {t.shape} and p_kw {p.shape} must be (n_times,) and "
                         "(n_times, n_devices)")
    if not max_gap_s > 0:
        raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
    step_s = np.diff(t)
    if np.any(step_s < 0):
        raise ValueError("t_s must not decrease")
    dt_h = np.zeros((len(t), 1))
    dt_h[:-1, 0] = np.minimum(step_s, max_gap_s) / 3600.0
    if len(t):
        dt_h[-1, 0] = min(max(last_s, 0.0), max_gap_s) / 3600.0
    f = device_flows(p, fleet.device_type, fleet.device_site, fleet.n_sites)
    gen, use, imp, exp = (f[k] * dt_h for k in ("generation_kw", "consumption_kw",
                                                "import_kw", "export_kw"))
    return {"generation_kwh": gen, "consumption_kwh": use, "import_kwh": imp,
            "export_kwh": exp, "self_consumption_kwh": np.maximum(gen - exp, 0.0),
            **energy_value(t, gen, imp, exp, tariff)}


# -- KPIs from the twin's accumulators -----------------------------------------------------
def site_kpis(state: TwinState) -> dict[str, np.ndarray]:
    """Per-site figures from ``state.site_totals`` (energies [kWh], money [EUR], CO2 [kg]).

    Every ``SITE_TOTALS`` column, plus ``generation_kwh`` (= PV),
    ``consumption_kwh`` (load + EV), ``self_consumption`` (self-consumed PV /
    PV, NaN without PV) and ``self_sufficiency`` (1 - import / consumption,
    clipped to 0..1, NaN without consumption).
    """
    t = state.site_totals
    out = {name: t[:, i].copy() for name, i in TOTAL.items()}
    out["generation_kwh"] = out["pv_kwh"].copy()
    out["consumption_kwh"] = out["load_kwh"] + out["ev_kwh"]
    out["self_consumption"] = _ratio(out["self_consumed_kwh"], out["generation_kwh"])
    out["self_sufficiency"] = np.clip(1.0 - _ratio(out["import_kwh"], out["consumption_kwh"]),
                                      0.0, 1.0)
    return out


def fleet_kpis(params: TwinParams, state: TwinState, hours: float) -> dict[str, Any]:
    """Fleet KPIs over a run of ``hours`` hours, as plain floats.

    Energies in MWh, CO2 in tonnes, money in EUR; definitions as in the module
    docstring (generation = PV; battery discharge and charge on their own).
    ``battery_cycles`` is the fleet's equivalent full cycles: battery AC
    throughput over twice the installed battery energy.
    """
    s = site_kpis(state)
    mwh = {k: float(np.sum(s[k])) / 1000.0 for k in (
        "pv_kwh", "pv_curtailed_kwh", "battery_discharge_kwh", "battery_charge_kwh", "ev_kwh",
        "load_kwh", "import_kwh", "export_kwh", "self_consumed_kwh", "violation_kwh",
        "generation_kwh", "consumption_kwh")}
    bat = params.device_type == BATTERY
    cap_kwh = float(params.battery_kwh[bat].sum())
    ev = params.device_type == EV_CHARGER
    gen_mwh, use_mwh = mwh["generation_kwh"], mwh["consumption_kwh"]
    return {
        "hours": hours,
        "generation_mwh": gen_mwh,
        "pv_mwh": mwh["pv_kwh"],
        "pv_curtailed_mwh": mwh["pv_curtailed_kwh"],
        "battery_discharge_mwh": mwh["battery_discharge_kwh"],
        "battery_charge_mwh": mwh["battery_charge_kwh"],
        "consumption_mwh": use_mwh,
        "load_mwh": mwh["load_kwh"],
        "ev_mwh": mwh["ev_kwh"],
        "import_mwh": mwh["import_kwh"],
        "export_mwh": mwh["export_kwh"],
        "self_consumption": mwh["self_consumed_kwh"] / gen_mwh if gen_mwh > 0 else None,
        "self_sufficiency": (min(max(1.0 - mwh["import_kwh"] / use_mwh, 0.0), 1.0)
                             if use_mwh > 0 else None),
        "cost_eur": float(s["cost_eur"].sum()),
        "revenue_eur": float(s["revenue_eur"].sum()),
        "co2_avoided_t": float(s["co2_avoided_kg"].sum()) / 1000.0,
        "max_site_peak_import_mw": float(s["peak_import_kw"].max(initial=0.0)) / 1000.0,
        "site_limit_violation_mwh": mwh["violation_kwh"],
        "battery_cycles": (float(state.throughput_kwh[bat].sum()) / (2.0 * cap_kwh)
                           if cap_kwh > 0 else 0.0),
        "ev_delivered_mwh": float(state.ev_delivered_kwh[ev].sum()) / 1000.0,
        "ev_unmet_mwh": float(state.ev_unmet_kwh[ev].sum()) / 1000.0,
    }


class StepTracker:
    """Running figures that need each step's flows: peak times, hours over limits.

    Parameters
    ----------
    site_feeder : (n_sites,) int array
        Feeder row of each site.
    n_feeders : int
        Number of feeders.
    """

    def __init__(self, site_feeder: np.ndarray, n_feeders: int):
        n_sites = len(site_feeder)
        self.site_feeder = np.asarray(site_feeder, dtype=np.int64)
        self.n_feeders = n_feeders
        self.peak_import_kw = np.zeros(n_sites)
        self.peak_import_time_s = np.full(n_sites, np.nan)
        self.site_hours_over = np.zeros(n_sites)
        self.feeder_hours_over = np.zeros(n_feeders)
        self.fleet_peak_import_kw = 0.0
        self.fleet_peak_time_s = math.nan
        self.hours = 0.0

    def update(self, t_s: float, dt_s: float, site_flows: np.ndarray,
               feeder_import_limit_kw: np.ndarray, feeder_export_limit_kw: np.ndarray) -> None:
        """Take one step's ``site_flows`` (n_sites, len(SITE_FLOWS)) [kW] over ``[t_s, t_s+dt_s)``.

        Limits are the feeders' limits in force during the step [kW].
        """
        dt_h = dt_s / 3600.0
        imp = site_flows[:, FLOW["import_kw"]]
        higher = imp > self.peak_import_kw
        if higher.any():
            self.peak_import_kw[higher] = imp[higher]
            self.peak_import_time_s[higher] = t_s
        self.site_hours_over += (site_flows[:, FLOW["violation_kw"]] > 1e-9) * dt_h
        net = np.bincount(self.site_feeder, site_flows[:, FLOW["net_kw"]],
                          minlength=self.n_feeders)
        over = (-net > feeder_import_limit_kw + 1e-9) | (net > feeder_export_limit_kw + 1e-9)
        self.feeder_hours_over += over * dt_h
        fleet_imp = float(imp.sum())
        if fleet_imp > self.fleet_peak_import_kw:
            self.fleet_peak_import_kw = fleet_imp
            self.fleet_peak_time_s = t_s
        self.hours += dt_h


def _iso(t_s: float) -> str | None:
    return None if not math.isfinite(t_s) else datetime.fromtimestamp(t_s, UTC).isoformat()


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(den) > 0, np.asarray(num) / np.asarray(den), np.nan)


def _num(value: Any, digits: int = 6) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, digits)


def compute_kpis(fleet: Fleet, state: TwinState, tracker: StepTracker,
                 solver: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """KPIs per site and for the fleet (the scenario runner's ``kpis.json``).

    Energies per site in kWh, for the fleet in MWh; money in EUR; CO2 per site
    in kg, for the fleet in t. ``net_cost_eur`` = cost - revenue;
    ``battery_equivalent_full_cycles`` = battery AC throughput / (2 x
    capacity); ``hours_over_site_limit``: time with import or export beyond the
    site's connection limit; ``feeder_hours_over_limit``: time with a feeder's
    summed import or export beyond its limit; ``peak_import_mw`` of the fleet
    is its highest coincident import.

    Parameters
    ----------
    fleet : Fleet
        The fleet (site ids, battery capacities, feeder ids).
    state : TwinState
        The twin's state after the last step (``site_totals``,
        ``throughput_kwh``, ``ev_unmet_kwh``, ``ev_delivered_kwh``).
    tracker : StepTracker
        Fed every step of the same run.
    solver : mapping, optional
        Optimizer figures (solves, solve times, fallbacks), passed through.

    Returns
    -------
    dict with ``fleet`` (MWh, EUR, t) and ``sites`` (site id -> kWh, EUR, kg) entries.
    """
    s = site_kpis(state)
    n = fleet.n_sites

    def per_site(values: np.ndarray) -> np.ndarray:
        return np.bincount(fleet.device_site, values, minlength=n)

    is_bat = fleet.device_type == BATTERY
    cap = per_site(np.where(is_bat, np.nan_to_num(fleet.battery_kwh), 0.0))
    thru = per_site(np.where(is_bat, state.throughput_kwh, 0.0))
    ev_unmet = per_site(state.ev_unmet_kwh)
    ev_done = per_site(state.ev_delivered_kwh)
    generated, consumed = s["generation_kwh"], s["consumption_kwh"]
    imported, exported = s["import_kwh"], s["export_kwh"]
    cost, revenue = s["cost_eur"], s["revenue_eur"]
    site_kpi = {
        "generated_kwh": generated,
        "consumed_kwh": consumed,
        "imported_kwh": imported,
        "exported_kwh": exported,
        "self_consumption": s["self_consumption"],
        "self_sufficiency": s["self_sufficiency"],
        "energy_cost_eur": cost,
        "export_revenue_eur": revenue,
        "net_cost_eur": cost - revenue,
        "co2_avoided_kg": s["co2_avoided_kg"],
        "peak_import_kw": s["peak_import_kw"],
        "hours_over_site_limit": tracker.site_hours_over,
        "pv_curtailed_kwh": s["pv_curtailed_kwh"],
        "battery_equivalent_full_cycles": _ratio(thru, 2.0 * cap),
        "ev_delivered_kwh": ev_done,
        "ev_unmet_kwh": ev_unmet,
    }
    sites: dict[str, dict[str, Any]] = {}
    for i, sid in enumerate(fleet.site_id.tolist()):
        row = {k: _num(v[i]) for k, v in site_kpi.items()}
        row["peak_import_time"] = _iso(tracker.peak_import_time_s[i])
        sites[sid] = row

    mwh = 1e-3
    fleet_kpi: dict[str, Any] = {
        "generated_mwh": _num(generated.sum() * mwh),
        "consumed_mwh": _num(consumed.sum() * mwh),
        "imported_mwh": _num(imported.sum() * mwh),
        "exported_mwh": _num(exported.sum() * mwh),
        "self_consumption": _num(_ratio(s["self_consumed_kwh"].sum(), generated.sum())),
        "self_sufficiency": _num(np.clip(1.0 - _ratio(imported.sum(), consumed.sum()), 0, 1)),
        "energy_cost_eur": _num(cost.sum(), 2),
        "export_revenue_eur": _num(revenue.sum(), 2),
        "net_cost_eur": _num(cost.sum() - revenue.sum(), 2),
        "co2_avoided_t": _num(s["co2_avoided_kg"].sum() * 1e-3),
        "peak_import_mw": _num(tracker.fleet_peak_import_kw * 1e-3),
        "peak_import_time": _iso(tracker.fleet_peak_time_s),
        "site_hours_over_limit": _num(tracker.site_hours_over.sum()),
        "feeder_hours_over_limit": _num(tracker.feeder_hours_over.sum()),
        "pv_curtailed_mwh": _num(s["pv_curtailed_kwh"].sum() * mwh),
        "battery_equivalent_full_cycles": _num(_ratio(thru.sum(), 2.0 * cap.sum())),
        "ev_delivered_mwh": _num(ev_done.sum() * mwh),
        "ev_unmet_mwh": _num(ev_unmet.sum() * mwh),
        "hours": _num(tracker.hours),
    }
    solver = solver or {}
    fleet_kpi["optimizer_solves"] = int(solver.get("solves", 0))
    fleet_kpi["optimizer_solve_s_total"] = _num(solver.get("solve_s_total", 0.0), 4)
    fleet_kpi["optimizer_solve_s_median"] = _num(solver.get("solve_s_median", math.nan), 4)
    fleet_kpi["optimizer_fallbacks"] = int(solver.get("fallbacks", 0))
    return {"fleet": fleet_kpi, "sites": sites}
