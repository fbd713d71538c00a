"""The whole-fleet step in plain numpy, built from ``twin.physics``.

This is the readable reference for ``twin.kernels.step_fleet`` and the
fallback on machines without numba. It mutates ``state`` exactly as the
kernel does.
"""

from __future__ import annotations

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER, LOAD, PV
from twin.physics import battery_step, ev_allocate, pv_ac_power, sun_geometry
from twin.state import FLOW, TOTAL, StepInputs, TwinParams, TwinState


def step_fleet_numpy(t_s: float, dt_s: float, params: TwinParams, inputs: StepInputs,
                     setpoint: np.ndarray, state: TwinState) -> None:
    """Advance every device and site by ``dt_s`` seconds from time ``t_s`` (in place)."""
    dt_h = dt_s / 3600.0
    kind = params.device_type
    site = params.device_site
    ok = state.device_ok != 0
    p = np.zeros(params.n_devices)
    has_sp = ~np.isnan(setpoint)

    # PV: available AC power, then the curtailment limit.
    pv = np.flatnonzero(kind == PV)
    s = site[pv]
    sun = tuple(x[s] for x in sun_geometry(inputs.zenith_deg, inputs.azimuth_deg))
    avail = pv_ac_power(
        inputs.ghi[s], inputs.dni[s], inputs.dhi[s], sun, inputs.temp_air_c[s],
        inputs.wind_m_s[s],
        (params.cos_tilt[pv], params.sin_tilt_cos_az[pv], params.sin_tilt_sin_az[pv]),
        params.pv_kwp[pv], params.inverter_kw[pv], params.temp_coeff_per_c[pv],
    )
    avail = np.where(ok[pv], avail, 0.0)
    limit = np.where(has_sp[pv], np.maximum(setpoint[pv], 0.0), np.inf)
    p[pv] = np.minimum(avail, limit)
    curtailed = np.zeros(params.n_devices)
    curtailed[pv] = avail - p[pv]

    # Batteries: setpoint tracking inside power and SoC limits; idle without one.
    bat = np.flatnonzero(kind == BATTERY)
    active = ok[bat] & has_sp[bat]
    pb, eb = battery_step(
        np.where(active, setpoint[bat], 0.0), state.e_kwh[bat], params.battery_kwh[bat],
        params.charge_kw[bat], params.discharge_kw[bat], params.charge_eff[bat],
        params.discharge_eff[bat], params.soc_min[bat], params.soc_max[bat], dt_h,
    )
    p[bat] = np.where(active, pb, 0.0)
    state.e_kwh[bat] = np.where(active, eb, state.e_kwh[bat])
    state.throughput_kwh[bat] += np.abs(p[bat]) * dt_h

    # EV chargers: departures, then share the charger's power among sessions.
    ev = np.flatnonzero(kind == EV_CHARGER)
    if len(ev):
        _ev_step(t_s, dt_h, ev, params, setpoint, ok, state, p)

    # Loads follow their profile class.
    ld = np.flatnonzero(kind == LOAD)
    frac = inputs.load_frac[site[ld], params.load_profile[ld]]
    p[ld] = np.where(ok[ld], -params.load_peak_kw[ld] * frac, 0.0)

    state.p_kw[:] = p
    _site_step(dt_h, params, inputs, p, curtailed, state)


def _ev_step(t_s: float, dt_h: float, ev: np.ndarray, params: TwinParams, setpoint: np.ndarray,
             ok: np.ndarray, state: TwinState, p: np.ndarray) -> None:
    start, stop = params.conn_start[ev], params.conn_stop[ev]
    width = int((stop - start).max())
    # Connector rows as a padded (n_chargers, width) matrix; -1 marks padding.
    offs = np.arange(width)
    rows = start[:, None] + offs[None, :]
    valid = rows < stop[:, None]
    rows = np.where(valid, rows, -1)
    need = np.where(valid, state.conn_need_kwh[np.maximum(rows, 0)], 0.0)
    dep = np.where(valid, state.conn_departure_s[np.maximum(rows, 0)], np.inf)

    left_before = valid & (dep <= t_s)
    state.ev_unmet_kwh[ev] += np.where(left_before, need, 0.0).sum(axis=1)
    need = np.where(left_before, 0.0, need)
    dep = np.where(left_before, np.inf, dep)

    avail = np.where(ok[ev], params.ev_max_kw[ev], 0.0)
    sp = setpoint[ev]
    avail = np.where(np.isnan(sp), avail, np.minimum(avail, np.maximum(sp, 0.0)))
    need_kw = need / dt_h
    given = ev_allocate(avail, need_kw)
    need = np.where(given >= need_kw, 0.0, need - given * dt_h)
    total = given.sum(axis=1)
    p[ev] = -total
    state.ev_delivered_kwh[ev] += total * dt_h
    flat = rows[valid]
    state.conn_need_kwh[flat] = need[valid]
    state.conn_departure_s[flat] = dep[valid]


def _site_step(dt_h: float, params: TwinParams, inputs: StepInputs, p: np.ndarray,
               curtailed: np.ndarray, state: TwinState) -> None:
    n = params.n_sites
    site, kind = params.device_site, params.device_type

    def by_site(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(site[mask], weights=values[mask], minlength=n)

    pv = by_site(p, kind == PV)
    curt = by_site(curtailed, kind == PV)
    bat = by_site(p, kind == BATTERY)
    ev = by_site(p, kind == EV_CHARGER)
    load = by_site(p, kind == LOAD)
    net = pv + bat + ev + load
    exp = np.maximum(net, 0.0)
    imp = np.maximum(-net, 0.0)
    viol = (np.maximum(imp - params.import_limit_kw, 0.0)
            + np.maximum(exp - params.export_limit_kw, 0.0))
    f = state.site_flows
    for name, value in (("pv_kw", pv), ("pv_curtailed_kw", curt), ("battery_kw", bat),
                        ("ev_kw", ev), ("load_kw", load), ("net_kw", net), ("import_kw", imp),
                        ("export_kw", exp), ("violation_kw", viol)):
        f[:, FLOW[name]] = value
    t = state.site_totals
    t[:, TOTAL["pv_kwh"]] += pv * dt_h
    t[:, TOTAL["pv_curtailed_kwh"]] += curt * dt_h
    t[:, TOTAL["battery_discharge_kwh"]] += np.maximum(bat, 0.0) * dt_h
    t[:, TOTAL["battery_charge_kwh"]] += np.maximum(-bat, 0.0) * dt_h
    t[:, TOTAL["ev_kwh"]] += -ev * dt_h
    t[:, TOTAL["load_kwh"]] += -load * dt_h
    t[:, TOTAL["import_kwh"]] += imp * dt_h
    t[:, TOTAL["export_kwh"]] += exp * dt_h
    t[:, TOTAL["self_consumed_kwh"]] += np.maximum(pv - exp, 0.0) * dt_h
    t[:, TOTAL["violation_kwh"]] += viol * dt_h
    t[:, TOTAL["cost_eur"]] += imp * dt_h * inputs.price_eur_per_mwh * 0.001
    t[:, TOTAL["revenue_eur"]] += exp * dt_h * inputs.feed_in_eur_per_mwh * 0.001
    t[:, TOTAL["co2_avoided_kg"]] += pv * dt_h * inputs.co2_kg_per_mwh * 0.001
    t[:, TOTAL["peak_import_kw"]] = np.maximum(t[:, TOTAL["peak_import_kw"]], imp)
