"""The twin's hot loop: one fused numba pass over the whole fleet.

``step_fleet`` is the same physics as ``twin.physics`` (tests check agreement
to 1e-9), written as a loop over sites in parallel (``prange``) and over each
site's contiguous device rows inside. Each site writes only its own device
rows, connector rows and site row, so the parallel loop has no races.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from twin.physics import ALBEDO, FAIMAN_U0, FAIMAN_U1, INVERTER_ETA_NOM, INVERTER_ETA_REF

_PV, _BATTERY, _EV, _LOAD = 0, 1, 2, 3  # type codes (twin.fleet)

# Column indices of SITE_FLOWS and SITE_TOTALS (twin.state); kept literal for numba.
_F_PV, _F_CURT, _F_BAT, _F_EV, _F_LOAD, _F_NET, _F_IMP, _F_EXP, _F_VIOL = range(9)
(_T_PV, _T_CURT, _T_DIS, _T_CHG, _T_EV, _T_LOAD, _T_IMP, _T_EXP, _T_SELF, _T_VIOL,
 _T_COST, _T_REV, _T_CO2, _T_PEAK) = range(14)


@njit(cache=True, inline="always")
def _pv_ac_kw(dni, sky, gnd, inv_u, cz, szc, szs, t_air, ct, stc, sts, kwp, inv_kw, gamma):
    """PV AC power [kW]; ``sky = dhi/2``, ``gnd = ghi*albedo/2``, ``inv_u = 1/(u0+u1*wind)``.

    The PVWatts inverter ``eta(zeta)*pdc`` is expanded so that it needs no
    division: ``eta*pdc = k*(-0.0162*pdc^2/pdc0 - 0.0059*pdc0 + 0.9858*pdc)``.
    """
    cos_aoi = cz * ct + szc * stc + szs * sts
    cos_aoi = min(max(cos_aoi, -1.0), 1.0)
    poa = max(dni * cos_aoi, 0.0) + sky * (1.0 + ct) + gnd * (1.0 - ct)
    t_cell = t_air + poa * inv_u
    pdc = poa * 0.001 * kwp * (1.0 + gamma * (t_cell - 25.0))
    if pdc <= 0.0:
        return 0.0
    pdc0 = inv_kw * (1.0 / INVERTER_ETA_NOM)
    pac = (INVERTER_ETA_NOM / INVERTER_ETA_REF) * (
        -0.0162 * pdc * pdc * (INVERTER_ETA_NOM / inv_kw) - 0.0059 * pdc0 + 0.9858 * pdc)
    return max(min(pac, inv_kw), 0.0)


@njit(cache=True, parallel=True, fastmath=False)
def step_fleet(
    t_s, dt_s,
    # parameters (see TwinParams: compact per-type tables)
    site_start, import_limit_kw, export_limit_kw, type_start, type_count,
    pv_table, battery_table, ev_max_kw, ev_conn, load_table,
    # inputs per site
    ghi, dni, dhi, zenith_deg, azimuth_deg, temp_air_c, wind_m_s, load_frac,
    price, feed_in, co2,
    # setpoints per device row
    setpoint,
    # state (updated in place)
    p_kw, e_kwh, throughput_kwh, ev_delivered_kwh, ev_unmet_kwh, device_ok,
    conn_need_kwh, conn_departure_s, site_flows, site_totals,
):
    dt_h = dt_s / 3600.0
    inv_dt_h = 1.0 / dt_h
    n_sites = site_start.shape[0]
    for s in prange(n_sites):
        cz = math.cos(math.radians(zenith_deg[s]))
        sz = math.sqrt(max(1.0 - cz * cz, 0.0))  # zenith in [0, 180]: sin >= 0
        az = math.radians(azimuth_deg[s])
        szc = sz * math.cos(az)
        szs = sz * math.sin(az)
        dn, ta = dni[s], temp_air_c[s]
        sky = dhi[s] * 0.5
        gnd = ghi[s] * ALBEDO * 0.5
        inv_u = 1.0 / (FAIMAN_U0 + FAIMAN_U1 * wind_m_s[s])
        d = site_start[s]  # device row; rows run PV, batteries, EV chargers, loads

        pv_sum = 0.0
        curt_sum = 0.0
        i0 = type_start[s, _PV]
        for i in range(i0, i0 + type_count[s, _PV]):
            avail = 0.0
            if device_ok[d] != 0:
                avail = _pv_ac_kw(dn, sky, gnd, inv_u, cz, szc, szs, ta, pv_table[i, 3],
                                  pv_table[i, 4], pv_table[i, 5], pv_table[i, 0],
                                  pv_table[i, 1], pv_table[i, 2])
            p = avail
            sp = setpoint[d]
            if sp == sp:  # not NaN: a curtailment limit
                p = min(avail, max(sp, 0.0))
            p_kw[d] = p
            pv_sum += p
            curt_sum += avail - p
            d += 1

        bat_sum = 0.0
        i0 = type_start[s, _BATTERY]
        for i in range(i0, i0 + type_count[s, _BATTERY]):
            e = e_kwh[d]
            sp = setpoint[d]
            p = 0.0
            if device_ok[d] != 0 and sp == sp:
                cap = battery_table[i, 0]
                lo = battery_table[i, 5] * cap
                hi = battery_table[i, 6] * cap
                p = min(max(sp, -battery_table[i, 1]), battery_table[i, 2])
                if p > 0.0:
                    eff = battery_table[i, 4]
                    p = min(p, max(e - lo, 0.0) * eff * inv_dt_h)
                    e = e - p * dt_h / eff
                else:
                    eff = battery_table[i, 3]
                    p = max(p, -(max(hi - e, 0.0) / eff * inv_dt_h))
                    e = e - p * dt_h * eff
                e = min(max(e, lo), hi)
            e_kwh[d] = e
            throughput_kwh[d] += abs(p) * dt_h
            p_kw[d] = p
            bat_sum += p
            d += 1

        ev_sum = 0.0
        i0 = type_start[s, _EV]
        for i in range(i0, i0 + type_count[s, _EV]):
            given = _ev_charge(t_s, dt_h, d, ev_conn[i, 0], ev_conn[i, 1],
                               ev_max_kw[i], setpoint[d], device_ok[d] != 0,
                               conn_need_kwh, conn_departure_s, ev_unmet_kwh)
            ev_delivered_kwh[d] += given * dt_h
            p_kw[d] = -given
            ev_sum -= given
            d += 1

        load_sum = 0.0
        i0 = type_start[s, _LOAD]
        for i in range(i0, i0 + type_count[s, _LOAD]):
            p = 0.0
            if device_ok[d] != 0:
                p = -load_table[i, 0] * load_frac[s, int(load_table[i, 1])]
            p_kw[d] = p
            load_sum += p
            d += 1

        net = pv_sum + bat_sum + ev_sum + load_sum
        exp = max(net, 0.0)
        imp = max(-net, 0.0)
        viol = max(imp - import_limit_kw[s], 0.0) + max(exp - export_limit_kw[s], 0.0)
        f = site_flows[s]
        f[_F_PV] = pv_sum
        f[_F_CURT] = curt_sum
        f[_F_BAT] = bat_sum
        f[_F_EV] = ev_sum
        f[_F_LOAD] = load_sum
        f[_F_NET] = net
        f[_F_IMP] = imp
        f[_F_EXP] = exp
        f[_F_VIOL] = viol
        tot = site_totals[s]
        tot[_T_PV] += pv_sum * dt_h
        tot[_T_CURT] += curt_sum * dt_h
        tot[_T_DIS] += max(bat_sum, 0.0) * dt_h
        tot[_T_CHG] += max(-bat_sum, 0.0) * dt_h
        tot[_T_EV] += -ev_sum * dt_h
        tot[_T_LOAD] += -load_sum * dt_h
        tot[_T_IMP] += imp * dt_h
        tot[_T_EXP] += exp * dt_h
        tot[_T_SELF] += max(pv_sum - exp, 0.0) * dt_h
        tot[_T_VIOL] += viol * dt_h
        tot[_T_COST] += imp * dt_h * price[s] * 0.001
        tot[_T_REV] += exp * dt_h * feed_in[s] * 0.001
        tot[_T_CO2] += pv_sum * dt_h * co2[s] * 0.001
        tot[_T_PEAK] = max(tot[_T_PEAK], imp)


@njit(cache=True, inline="always")
def _ev_charge(t_s, dt_h, d, c0, c1, max_kw, sp, ok, conn_need_kwh, conn_departure_s,
               ev_unmet_kwh):
    """Charge one EV charger's sessions for one step; returns the power drawn [kW]."""
    # Sessions that left before this step: record what they missed.
    n_open = 0
    for c in range(c0, c1):
        if conn_departure_s[c] <= t_s:
            ev_unmet_kwh[d] += conn_need_kwh[c]
            conn_need_kwh[c] = 0.0
            conn_departure_s[c] = np.inf
        if conn_need_kwh[c] > 0.0:
            n_open += 1
    if n_open == 0:
        return 0.0
    left = max_kw if ok else 0.0
    if sp == sp:
        left = min(left, max(sp, 0.0))
    if n_open == 1:  # the common case: one car gets what it needs up to the limit
        for c in range(c0, c1):
            if conn_need_kwh[c] > 0.0:
                need = conn_need_kwh[c] / dt_h
                if need <= left:
                    conn_need_kwh[c] = 0.0
                    return need
                conn_need_kwh[c] -= left * dt_h
                return left
    # Water-filling: sessions needing less than an equal share get what they
    # need, the rest share the remainder equally.
    given_total = 0.0
    served = 0  # bit c-c0 set when that connector is served
    for c in range(c0, c1):
        if conn_need_kwh[c] <= 0.0:
            served |= 1 << (c - c0)
    for _ in range(c1 - c0):
        if n_open == 0:
            break
        share = left / n_open
        any_small = False
        for c in range(c0, c1):
            bit = 1 << (c - c0)
            if served & bit:
                continue
            need = conn_need_kwh[c] / dt_h
            if need <= share:
                conn_need_kwh[c] = 0.0
                left -= need
                given_total += need
                served |= bit
                n_open -= 1
                any_small = True
        if not any_small:
            break
    if n_open > 0:
        share = left / n_open
        for c in range(c0, c1):
            if not served & (1 << (c - c0)):
                conn_need_kwh[c] -= share * dt_h
                given_total += share
    return given_total


@njit(cache=True)
def plug_in_sessions(conn_start, conn_stop, conn_need_kwh, conn_departure_s, charger_rows,
                     need_kwh, departure_s, taken):
    """Put each session on the first free connector of its charger (in place).

    A connector is free when its departure time is infinite. ``taken[i]`` is
    set True where session ``i`` found a connector; returns how many did.
    """
    n_taken = 0
    for i in range(charger_rows.shape[0]):
        d = charger_rows[i]
        for c in range(conn_start[d], conn_stop[d]):
            if np.isinf(conn_departure_s[c]):
                conn_need_kwh[c] = need_kwh[i]
                conn_departure_s[c] = departure_s[i]
                taken[i] = True
                n_taken += 1
                break
    return n_taken
