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

_PV, _BATTERY, _EV, _LOAD = 0, 1, 2, 3

# Column indices of SITE_FLOWS and SITE_TOTALS (twin.state); kept literal for numba.
_F_PV, _F_CURT, _F_BAT, _F_EV, _F_LOAD, _F_NET, _F_IMP, _F_EXP, _F_VIOL = range(9)
(_T_PV, _T_CURT, _T_DIS, _T_CHG, _T_EV, _T_LOAD, _T_IMP, _T_EXP, _T_SELF, _T_VIOL,
 _T_COST, _T_REV, _T_CO2, _T_PEAK) = range(14)


@njit(cache=True, inline="always")
def _pv_ac_kw(ghi, dni, dhi, cz, szc, szs, t_air, wind, ct, stc, sts, kwp, inv_kw, gamma):
    cos_aoi = cz * ct + szc * stc + szs * sts
    cos_aoi = min(max(cos_aoi, -1.0), 1.0)
    poa = max(dni * cos_aoi, 0.0) + dhi * (1.0 + ct) * 0.5 + ghi * ALBEDO * (1.0 - ct) * 0.5
    t_cell = t_air + poa / (FAIMAN_U0 + FAIMAN_U1 * wind)
    pdc = poa * 0.001 * kwp * (1.0 + gamma * (t_cell - 25.0))
    if pdc <= 0.0:
        return 0.0
    zeta = pdc / (inv_kw / INVERTER_ETA_NOM)
    eta = INVERTER_ETA_NOM / INVERTER_ETA_REF * (-0.0162 * zeta - 0.0059 / zeta + 0.9858)
    return max(min(eta * pdc, inv_kw), 0.0)


@njit(cache=True, parallel=True, fastmath=False)
def step_fleet(
    t_s, dt_s,
    # parameters
    site_start, site_stop, import_limit_kw, export_limit_kw, device_type,
    pv_kwp, inverter_kw, temp_coeff, cos_tilt, st_cos_az, st_sin_az,
    battery_kwh, charge_kw, discharge_kw, charge_eff, discharge_eff, soc_min, soc_max,
    ev_max_kw, conn_start, conn_stop, load_peak_kw, load_profile,
    # inputs per site
    ghi, dni, dhi, zenith_deg, azimuth_deg, temp_air_c, wind_m_s, load_frac,
    price, feed_in, co2,
    # setpoints per device
    setpoint,
    # state (updated in place)
    p_kw, e_kwh, throughput_kwh, ev_delivered_kwh, ev_unmet_kwh, device_ok,
    conn_need_kwh, conn_departure_s, site_flows, site_totals,
):
    dt_h = dt_s / 3600.0
    n_sites = site_start.shape[0]
    for s in prange(n_sites):
        zen = math.radians(zenith_deg[s])
        az = math.radians(azimuth_deg[s])
        cz = math.cos(zen)
        szc = math.sin(zen) * math.cos(az)
        szs = math.sin(zen) * math.sin(az)
        g, dn, dh, ta, wd = ghi[s], dni[s], dhi[s], temp_air_c[s], wind_m_s[s]
        pv_sum = 0.0
        curt_sum = 0.0
        bat_sum = 0.0
        ev_sum = 0.0
        load_sum = 0.0
        for d in range(site_start[s], site_stop[s]):
            kind = device_type[d]
            sp = setpoint[d]
            ok = device_ok[d] != 0
            p = 0.0
            if kind == _PV:
                avail = 0.0
                if ok:
                    avail = _pv_ac_kw(g, dn, dh, cz, szc, szs, ta, wd, cos_tilt[d],
                                      st_cos_az[d], st_sin_az[d], pv_kwp[d], inverter_kw[d],
                                      temp_coeff[d])
                p = avail
                if sp == sp:  # not NaN: a curtailment limit
                    p = min(avail, max(sp, 0.0))
                pv_sum += p
                curt_sum += avail - p
            elif kind == _BATTERY:
                e = e_kwh[d]
                if ok and sp == sp:
                    cap = battery_kwh[d]
                    p = min(max(sp, -charge_kw[d]), discharge_kw[d])
                    if p > 0.0:
                        room = max(e - soc_min[d] * cap, 0.0) * discharge_eff[d] / dt_h
                        p = min(p, room)
                        e = e - p * dt_h / discharge_eff[d]
                    else:
                        room = max(soc_max[d] * cap - e, 0.0) / (charge_eff[d] * dt_h)
                        p = max(p, -room)
                        e = e - p * dt_h * charge_eff[d]
                    e = min(max(e, soc_min[d] * cap), soc_max[d] * cap)
                e_kwh[d] = e
                throughput_kwh[d] += abs(p) * dt_h
                bat_sum += p
            elif kind == _EV:
                c0, c1 = conn_start[d], conn_stop[d]
                # Sessions that left before this step: record what they missed.
                for c in range(c0, c1):
                    if conn_departure_s[c] <= t_s:
                        ev_unmet_kwh[d] += conn_need_kwh[c]
                        conn_need_kwh[c] = 0.0
                        conn_departure_s[c] = np.inf
                avail = ev_max_kw[d] if ok else 0.0
                if sp == sp:
                    avail = min(avail, max(sp, 0.0))
                # Water-filling: sessions needing less than an equal share get
                # what they need, the rest share the remainder equally.
                left = avail
                given_total = 0.0
                n_open = 0
                for c in range(c0, c1):
                    if conn_need_kwh[c] > 0.0:
                        n_open += 1
                done_mask = 0  # bit c-c0 set when that connector is served
                for c in range(c0, c1):
                    if conn_need_kwh[c] <= 0.0:
                        done_mask |= 1 << (c - c0)
                for _ in range(c1 - c0):
                    if n_open == 0:
                        break
                    share = left / n_open
                    any_small = False
                    for c in range(c0, c1):
                        bit = 1 << (c - c0)
                        if done_mask & bit:
                            continue
                        need = conn_need_kwh[c] / dt_h
                        if need <= share:
                            conn_need_kwh[c] = 0.0
                            left -= need
                            given_total += need
                            done_mask |= bit
                            n_open -= 1
                            any_small = True
                    if not any_small:
                        break
                if n_open > 0:
                    share = left / n_open
                    for c in range(c0, c1):
                        if not done_mask & (1 << (c - c0)):
                            conn_need_kwh[c] -= share * dt_h
                            given_total += share
                p = -given_total
                ev_delivered_kwh[d] += given_total * dt_h
                ev_sum += p
            else:  # load
                if ok:
                    p = -load_peak_kw[d] * load_frac[s, load_profile[d]]
                load_sum += p
            p_kw[d] = p
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
