"""From site results back to device setpoints, vectorized over the fleet.

The LP plans one virtual device per type and site; here each site's plan is
shared among its real devices so that every device stays inside its own
limits and state of charge:

* batteries share the site's net power in proportion to each one's headroom
  in that direction (power rating and what its SoC allows), and their energy
  is carried forward with the twin's own battery physics
  (:func:`twin.physics.battery_step`), so the setpoints are checked against
  the twin as they are made;
* PV inverters get a power limit only where the site curtails, in
  proportion to their available power (NaN otherwise: no limit);
* EV chargers share the site's EV power earliest-departure-first, each up to
  its rating and its sessions' remaining energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.sitedata import SiteData, charger_active
from twin.fleet import BATTERY, EV_CHARGER, PV, Fleet
from twin.limits import setpoint_bounds_kw
from twin.physics import battery_step

CURTAIL_TOL_KW = 1e-3


@dataclass
class Disaggregated:
    """Device setpoints ``(n_steps, n_devices)`` (twin semantics) and their check.

    ``battery_kw`` is what the twin's battery physics delivers for the
    setpoints, per device; ``battery_gap_kw`` per site and step is the part
    of the site's planned battery power the devices could not deliver.
    """

    setpoints: np.ndarray
    battery_kw: np.ndarray
    battery_gap_kw: np.ndarray
    ev_kw: np.ndarray  # (n_steps, n_devices) power given to each charger


def disaggregate(fleet: Fleet, sd: SiteData, sites: np.ndarray, site_battery_kw: np.ndarray,
                 site_pv_kw: np.ndarray, site_ev_kw: np.ndarray,
                 setpoints: np.ndarray | None = None) -> Disaggregated:
    """Device setpoints for ``sites`` from their planned site powers.

    Parameters
    ----------
    fleet : Fleet
    sd : SiteData
        The solve's data (starting energy, available PV, sessions).
    sites : (k,) int array
        Site rows to disaggregate; other devices keep NaN (no setpoint).
    site_battery_kw, site_pv_kw, site_ev_kw : (n_steps, k) arrays
        Planned battery power (positive = discharge), delivered PV and EV
        charging (positive) per site [kW].
    setpoints : (n_steps, n_devices) array, optional
        Array to write into (a new NaN array by default).
    """
    t_n, dt_h = sd.n_steps, sd.dt_h
    out = np.full((t_n, fleet.n_devices), np.nan) if setpoints is None else setpoints
    in_set = np.zeros(fleet.n_sites, dtype=bool)
    in_set[sites] = True
    local = np.full(fleet.n_sites, -1, dtype=np.int64)
    local[sites] = np.arange(len(sites))
    kind, site_of = fleet.device_type, fleet.device_site
    mine = in_set[site_of] & sd.device_ok
    lo_kw, hi_kw = setpoint_bounds_kw(fleet)  # each device's own limits (twin.limits)

    bat_kw, gap = _batteries(fleet, sd, mine & (kind == BATTERY), local, site_battery_kw,
                             len(sites), t_n, dt_h, out, lo_kw, hi_kw)
    _pv(fleet, sd, mine & (kind == PV), local, site_pv_kw, out)
    ev_kw = _ev(fleet, sd, mine & (kind == EV_CHARGER), local, site_ev_kw, t_n, dt_h, out,
                hi_kw)
    return Disaggregated(out, bat_kw, gap, ev_kw)


def _batteries(fleet: Fleet, sd: SiteData, mask: np.ndarray, local: np.ndarray,
               site_kw: np.ndarray, k: int, t_n: int, dt_h: float, out: np.ndarray,
               lo_kw: np.ndarray, hi_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(mask & (np.nan_to_num(fleet.battery_kwh, nan=0.0) > 0))
    bat_kw = np.zeros((t_n, fleet.n_devices))
    gap = np.zeros((t_n, k))
    if len(rows) == 0:
        gap[:] = np.abs(site_kw)
        return bat_kw, gap
    s = local[fleet.device_site[rows]]
    cap = fleet.battery_kwh[rows]
    ch_kw, dis_kw = -lo_kw[rows], hi_kw[rows]
    eta_c, eta_d = fleet.charge_eff[rows], fleet.discharge_eff[rows]
    lo, hi = fleet.soc_min[rows] * cap, fleet.soc_max[rows] * cap
    e = np.clip(sd.e0_device_kwh[rows], lo, hi)
    multi = np.flatnonzero(np.bincount(s, minlength=k)[s] > 1)
    for t in range(t_n):
        want = site_kw[t]
        p_set = _share_battery(want, s, k, e, cap, lo, hi, ch_kw, dis_kw, eta_c, eta_d, dt_h,
                               multi)
        p, e = battery_step(p_set, e, cap, ch_kw, dis_kw, eta_c, eta_d,
                            fleet.soc_min[rows], fleet.soc_max[rows], dt_h)
        out[t, rows] = p_set
        bat_kw[t, rows] = p
        gap[t] = np.abs(want - np.bincount(s, weights=p, minlength=k))
    return bat_kw, gap


def _share_battery(want: np.ndarray, s: np.ndarray, k: int, e: np.ndarray, cap: np.ndarray,
                   lo: np.ndarray, hi: np.ndarray, ch_kw: np.ndarray, dis_kw: np.ndarray,
                   eta_c: np.ndarray, eta_d: np.ndarray, dt_h: float, multi: np.ndarray,
                   iterations: int = 20) -> np.ndarray:
    """Split each site's battery power [kW] among its batteries, levelling their SoC.

    Discharge drains the fullest batteries first and charge fills the emptiest
    first (water-filling on a common SoC level found by bisection per site),
    each within its power rating and SoC window, so that the batteries' SoCs
    converge and the site keeps its full power for later steps. ``multi``
    holds the batteries of sites with more than one (the others just clip).
    """
    room_out = np.minimum(dis_kw, np.maximum(e - lo, 0.0) * eta_d / dt_h)
    room_in = np.minimum(ch_kw, np.maximum(hi - e, 0.0) / (eta_c * dt_h))
    w = want[s]
    dis = w > 0
    room = np.where(dis, room_out, room_in)
    p = np.minimum(np.abs(w), room)
    if len(multi) == 0:
        return np.sign(w) * p
    sm, em, capm, lom, him, roomm = s[multi], e[multi], cap[multi], lo[multi], hi[multi], \
        room[multi]
    # Power towards a SoC level: (e - level) * rate, within [0, room].
    rate = np.where(dis[multi], eta_d[multi] / dt_h, -1.0 / (eta_c[multi] * dt_h))

    def power(level: np.ndarray) -> np.ndarray:
        lv = np.minimum(np.maximum(level[sm] * capm, lom), him)
        return np.minimum(np.maximum((em - lv) * rate, 0.0), roomm)

    target = np.abs(want)
    total = np.bincount(sm, weights=roomm, minlength=k)
    lo_l, hi_l = np.zeros(k), np.ones(k)
    disch_site = want > 0
    for _ in range(iterations):
        mid = 0.5 * (lo_l + hi_l)
        too_much = np.bincount(sm, weights=power(mid), minlength=k) > target
        # Discharge power falls as the level rises; charge power rises with it.
        raise_level = np.where(disch_site, too_much, ~too_much)
        lo_l = np.where(raise_level, mid, lo_l)
        hi_l = np.where(raise_level, hi_l, mid)
    pm = power(np.where(disch_site, hi_l, lo_l))
    # Remove the bisection's last crumbs so each site gets exactly what it asked
    # for whenever its batteries can deliver it.
    got = np.bincount(sm, weights=pm, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(got > 0, np.minimum(target, total) / got, 0.0)
    full = (target >= total)[sm]  # the site wants all its batteries can give
    pm = np.where(full, roomm, np.minimum(pm * scale[sm], roomm))
    # What capping left over goes to the batteries with room to spare.
    short = np.minimum(target, total) - np.bincount(sm, weights=pm, minlength=k)
    spare = roomm - pm
    spare_site = np.bincount(sm, weights=spare, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(spare_site > 0, np.maximum(short, 0.0) / spare_site, 0.0)
    p[multi] = pm + spare * np.minimum(share, 1.0)[sm]
    return np.sign(w) * p


def _pv(fleet: Fleet, sd: SiteData, mask: np.ndarray, local: np.ndarray, site_kw: np.ndarray,
        out: np.ndarray) -> None:
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return
    # Only inverters of sites that curtail at some step get limits (NaN elsewhere).
    sites = np.flatnonzero(local >= 0)
    curtailing = (site_kw[:, local[sites]] < sd.pv_kw[:, sites] - CURTAIL_TOL_KW).any(axis=0)
    keep = np.zeros(fleet.n_sites, dtype=bool)
    keep[sites[curtailing]] = True
    rows = rows[keep[fleet.device_site[rows]]]
    if len(rows) == 0:
        return
    site_rows = fleet.device_site[rows]
    avail_site = sd.pv_kw[:, site_rows]  # (t, n_pv)
    planned = site_kw[:, local[site_rows]]
    curtailed = planned < avail_site - CURTAIL_TOL_KW
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(avail_site > 0, np.clip(planned, 0.0, None) / avail_site, 0.0)
    limit = sd.pv_device_kw[:, rows] * frac
    out[:, rows] = np.where(curtailed, limit, np.nan)


def _ev(fleet: Fleet, sd: SiteData, mask: np.ndarray, local: np.ndarray, site_kw: np.ndarray,
        t_n: int, dt_h: float, out: np.ndarray, hi_kw: np.ndarray) -> np.ndarray:
    ev_kw = np.zeros((t_n, fleet.n_devices))
    ses = sd.sessions
    use = mask[ses.charger_row]
    if not use.any():
        return ev_kw
    active = charger_active(ses, use, fleet.n_devices, t_n)
    rows = np.flatnonzero(active.any(axis=1))
    active = active[rows]
    pos = np.full(fleet.n_devices, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    # Energy arriving with each session, per charger and step; deadline = earliest last step.
    add = np.zeros((len(rows), t_n + 1))
    np.add.at(add, (pos[ses.charger_row[use]], np.minimum(ses.first[use], t_n)),
              ses.need_kwh[use])
    deadline = np.full(len(rows), np.iinfo(np.int64).max)
    np.minimum.at(deadline, pos[ses.charger_row[use]], ses.last[use])
    s = local[fleet.device_site[rows]]
    order = np.lexsort((deadline, s))
    rows, active, add, s = rows[order], active[order], add[order], s[order]
    ev_max = hi_kw[rows]
    need = np.zeros(len(rows))
    starts = np.searchsorted(s, s, side="left")  # first charger of each one's site
    for t in range(t_n):
        need += add[:, t]
        cap = np.where(active[:, t], np.minimum(ev_max, need / dt_h), 0.0)
        cum = np.cumsum(cap)
        before = cum - cap - (cum[starts] - cap[starts])
        give = np.clip(site_kw[t, s] - before, 0.0, cap)
        need = np.maximum(need - give * dt_h, 0.0)
        out[t, rows] = np.where(active[:, t], give, np.nan)
        ev_kw[t, rows] = give
    return ev_kw
