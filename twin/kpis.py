"""Key performance indicators from the twin's accumulators.

One function serves the demo, the scenarios and the live service: KPIs are
pure arithmetic on ``TwinState.site_totals`` (see ``twin.state.SITE_TOTALS``)
and the battery and EV counters. Fleet figures are in MWh, tonnes and EUR;
site figures keep kWh and kW.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER
from twin.state import TOTAL, TwinParams, TwinState


def site_kpis(params: TwinParams, state: TwinState) -> dict[str, np.ndarray]:
    """Per-site KPIs as arrays of length ``n_sites`` (energies [kWh], money [EUR])."""
    t = state.site_totals
    out = {name: t[:, i].copy() for name, i in TOTAL.items()}
    gen = out["pv_kwh"] + out["battery_discharge_kwh"]
    use = out["load_kwh"] + out["ev_kwh"] + out["battery_charge_kwh"]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Self-consumption: share of PV used on site; self-sufficiency: share of
        # consumption not imported.
        out["self_consumption"] = np.where(out["pv_kwh"] > 0,
                                           out["self_consumed_kwh"] / out["pv_kwh"], np.nan)
        out["self_sufficiency"] = np.where(use > 0, 1.0 - out["import_kwh"] / use, np.nan)
    out["generation_kwh"] = gen
    out["consumption_kwh"] = use
    return out


def fleet_kpis(params: TwinParams, state: TwinState, hours: float) -> dict[str, Any]:
    """Fleet KPIs over a run of ``hours`` hours, as plain floats.

    Energies in MWh, CO2 in tonnes, money in EUR. ``battery_cycles`` is the
    fleet's equivalent full cycles: battery AC throughput over twice the
    installed battery energy.
    """
    s = site_kpis(params, state)
    mwh = {k: float(np.sum(s[k])) / 1000.0 for k in (
        "pv_kwh", "pv_curtailed_kwh", "battery_discharge_kwh", "battery_charge_kwh", "ev_kwh",
        "load_kwh", "import_kwh", "export_kwh", "self_consumed_kwh", "violation_kwh",
        "generation_kwh", "consumption_kwh")}
    bat = params.device_type == BATTERY
    cap_kwh = float(params.battery_kwh[bat].sum())
    ev = params.device_type == EV_CHARGER
    pv_mwh = mwh["pv_kwh"]
    use_mwh = mwh["consumption_kwh"]
    return {
        "hours": hours,
        "generation_mwh": mwh["generation_kwh"],
        "pv_mwh": pv_mwh,
        "pv_curtailed_mwh": mwh["pv_curtailed_kwh"],
        "consumption_mwh": use_mwh,
        "load_mwh": mwh["load_kwh"],
        "ev_mwh": mwh["ev_kwh"],
        "import_mwh": mwh["import_kwh"],
        "export_mwh": mwh["export_kwh"],
        "self_consumption": mwh["self_consumed_kwh"] / pv_mwh if pv_mwh > 0 else None,
        "self_sufficiency": 1.0 - mwh["import_kwh"] / use_mwh if use_mwh > 0 else None,
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
