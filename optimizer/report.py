"""What a plan reports: KPIs, the slack diagnosis and the setpoint check."""

from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.sitedata import SiteData
from twin.fleet import TYPE_CODE, Fleet
from twin.limits import DEVICE_RULES, setpoint_bounds_kw, takes_setpoint

SLACK_TOL = 1e-6


def kpis(fleet: Fleet, sd: SiteData, flows: dict[str, np.ndarray],
         ev_unmet_kwh: np.ndarray) -> dict[str, Any]:
    """Fleet KPIs from expected site flows ``(n_steps, n_sites)`` [kW]."""
    dt_h = sd.dt_h
    imp, exp = flows["import_kw"], flows["export_kw"]
    peak = imp.max(axis=0) if len(imp) else np.zeros(fleet.n_sites)
    return {
        "cost_eur": float((imp * sd.price).sum() * dt_h * 1e-3),
        "revenue_eur": float((exp * sd.feed_in).sum() * dt_h * 1e-3),
        "co2_kg": float((imp * sd.co2).sum() * dt_h * 1e-3),
        "import_kwh": float(imp.sum() * dt_h),
        "export_kwh": float(exp.sum() * dt_h),
        "curtailed_kwh": float((flows["pv_available_kw"] - flows["pv_kw"]).clip(0).sum() * dt_h),
        "battery_throughput_kwh": float(np.abs(flows["battery_kw"]).sum() * dt_h),
        "ev_kwh": float(flows["ev_kw"].sum() * dt_h),
        "ev_unmet_kwh": float(ev_unmet_kwh.sum()),
        "peak_import_kw": float(peak.max(initial=0.0)),
        "peak_import_kw_by_site": {sid: float(p) for sid, p in
                                   zip(fleet.site_id.tolist(), peak.tolist(), strict=True)},
    }


def slack_diagnosis(fleet: Fleet, sd: SiteData, site_slack: dict[str, np.ndarray],
                    feeder_imp: np.ndarray, feeder_exp: np.ndarray,
                    vpp_short: np.ndarray | None) -> list[dict[str, Any]]:
    """Every nonzero slack by place, step and constraint.

    ``site_slack`` holds ``impx``, ``expx`` [kW] and ``evu`` [kWh] as
    ``(n_sites, n_steps)`` and ``term_short`` [kWh] as ``(n_sites,)``;
    feeder slacks are ``(n_coupled_feeders, n_steps)`` [kW].
    """
    out: list[dict[str, Any]] = []
    names = fleet.site_id

    def add(values: np.ndarray, labels: np.ndarray, constraint: str, unit: str) -> None:
        for i, t in np.argwhere(values > SLACK_TOL):
            out.append({"where": str(labels[i]), "step": int(t), "constraint": constraint,
                        "value": float(values[i, t]), "unit": unit})

    add(site_slack["impx"], names, "site_import_limit", "kW")
    add(site_slack["expx"], names, "site_export_limit", "kW")
    add(site_slack["evu"], names, "ev_energy_by_departure", "kWh")
    term = np.zeros((sd.n_sites, sd.n_steps))
    term[:, -1] = site_slack["term_short"]
    add(term, names, "terminal_soc_target", "kWh")
    feeder_names = fleet.feeder_id[sd.feeder_row] if len(sd.feeder_row) else np.array([])
    add(feeder_imp, feeder_names, "feeder_import_limit", "kW")
    add(feeder_exp, feeder_names, "feeder_export_limit", "kW")
    if vpp_short is not None:
        add(vpp_short[None, :], np.array(["fleet"]), "vpp_export_commitment", "kW")
    return out


def setpoint_violations(fleet: Fleet, setpoints: np.ndarray, tol_kw: float = 1e-6) -> list[str]:
    """Setpoints outside a device's own limits (empty list when all are inside).

    The limits are :func:`twin.limits.setpoint_bounds_kw` (batteries
    ``-charge_kw <= p_kw <= discharge_kw``, PV ``0 <= p_limit_kw <= inverter_kw``,
    EV chargers ``0 <= p_limit_kw <= ev_max_kw``), widened by ``tol_kw`` [kW];
    loads must get NaN (no setpoint).
    """
    problems = []
    kind = fleet.device_type
    lo, hi = setpoint_bounds_kw(fleet)
    for name, rule in DEVICE_RULES.items():
        if rule.setpoint_key is None:
            continue
        rows = np.flatnonzero(kind == TYPE_CODE[name])
        sp = setpoints[:, rows]
        bad = ~np.isnan(sp) & ((sp < lo[rows] - tol_kw) | (sp > hi[rows] + tol_kw))
        for t, j in np.argwhere(bad)[:20]:
            problems.append(f"{name} {fleet.device_id[rows[j]]} step {t}: {sp[t, j]:.6g} kW "
                            f"outside [{lo[rows[j]]:.6g}, {hi[rows[j]]:.6g}]")
        if not np.all(np.isfinite(sp) | np.isnan(sp)):
            problems.append(f"{name}: infinite setpoint")
    others = np.flatnonzero(~takes_setpoint(kind))
    if (~np.isnan(setpoints[:, others])).any():
        problems.append("loads got setpoints")
    return problems
