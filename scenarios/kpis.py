"""Key performance indicators per site and for the fleet: one arithmetic for all callers.

The twin already accumulates energies, cost, revenue, CO2 and peak import in
``TwinState.site_totals``. :class:`StepTracker` adds what needs the time line
(the time of the peak import, hours over a site or feeder limit, the fleet's
coincident peak) and is fed ``site_flows`` after every step.
:func:`compute_kpis` turns both into KPI dictionaries. The scenario runner and
the live service call the same two.

Definitions (energies in kWh per site, MWh for the fleet):

* ``self_consumption`` = self-consumed PV / generated PV;
* ``self_sufficiency`` = 1 - imported / consumed (load + EV), clipped to 0..1;
* ``net_cost_eur`` = energy cost - export revenue;
* ``battery_equivalent_full_cycles`` = battery AC throughput / (2 x capacity);
* ``hours_over_site_limit``: time with import or export beyond the site's
  connection limit; ``hours_over_feeder_limit``: time with a feeder's summed
  import or export beyond its limit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from twin.fleet import BATTERY, Fleet
from twin.state import FLOW, TOTAL, TwinState


class StepTracker:
    """Running figures that need each step's flows.

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
    return None if not math.isfinite(t_s) else pd.Timestamp(t_s, unit="s", tz="UTC").isoformat()


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(den) > 0, np.asarray(num) / np.asarray(den), np.nan)


def _num(value: Any, digits: int = 6) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, digits)


def compute_kpis(fleet: Fleet, state: TwinState, tracker: StepTracker,
                 solver: dict[str, Any] | None = None) -> dict[str, Any]:
    """KPIs per site and for the fleet.

    Parameters
    ----------
    fleet : Fleet
        The fleet (site ids, battery capacities, feeder ids).
    state : TwinState
        The twin's state after the last step (``site_totals``,
        ``throughput_kwh``, ``ev_unmet_kwh``, ``ev_delivered_kwh``).
    tracker : StepTracker
        Fed every step of the same run.
    solver : dict, optional
        Optimizer figures (solves, solve times, fallbacks), passed through.

    Returns
    -------
    dict with ``fleet`` (MWh, EUR, t) and ``sites`` (site id -> kWh, EUR, kg) entries.
    """
    tot = state.site_totals
    n = fleet.n_sites

    def col(name: str) -> np.ndarray:
        return tot[:, TOTAL[name]]

    def per_site(values: np.ndarray) -> np.ndarray:
        return np.bincount(fleet.device_site, values, minlength=n)

    is_bat = fleet.device_type == BATTERY
    cap = per_site(np.where(is_bat, np.nan_to_num(fleet.battery_kwh), 0.0))
    thru = per_site(np.where(is_bat, state.throughput_kwh, 0.0))
    ev_unmet = per_site(state.ev_unmet_kwh)
    ev_done = per_site(state.ev_delivered_kwh)
    generated = col("pv_kwh")
    consumed = col("load_kwh") + col("ev_kwh")
    imported, exported = col("import_kwh"), col("export_kwh")
    self_used = col("self_consumed_kwh")
    site_kpi = {
        "generated_kwh": generated,
        "consumed_kwh": consumed,
        "imported_kwh": imported,
        "exported_kwh": exported,
        "self_consumption": _ratio(self_used, generated),
        "self_sufficiency": np.clip(1.0 - _ratio(imported, consumed), 0.0, 1.0),
        "energy_cost_eur": col("cost_eur"),
        "export_revenue_eur": col("revenue_eur"),
        "net_cost_eur": col("cost_eur") - col("revenue_eur"),
        "co2_avoided_kg": col("co2_avoided_kg"),
        "peak_import_kw": col("peak_import_kw"),
        "hours_over_site_limit": tracker.site_hours_over,
        "pv_curtailed_kwh": col("pv_curtailed_kwh"),
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
        "self_consumption": _num(_ratio(self_used.sum(), generated.sum())),
        "self_sufficiency": _num(np.clip(1.0 - _ratio(imported.sum(), consumed.sum()), 0, 1)),
        "energy_cost_eur": _num(col("cost_eur").sum(), 2),
        "export_revenue_eur": _num(col("revenue_eur").sum(), 2),
        "net_cost_eur": _num(col("cost_eur").sum() - col("revenue_eur").sum(), 2),
        "co2_avoided_t": _num(col("co2_avoided_kg").sum() * 1e-3),
        "peak_import_mw": _num(tracker.fleet_peak_import_kw * 1e-3),
        "peak_import_time": _iso(tracker.fleet_peak_time_s),
        "site_hours_over_limit": _num(tracker.site_hours_over.sum()),
        "feeder_hours_over_limit": _num(tracker.feeder_hours_over.sum()),
        "pv_curtailed_mwh": _num(col("pv_curtailed_kwh").sum() * mwh),
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
