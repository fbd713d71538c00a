"""Sites as virtual devices: the numbers of the dispatch LP, for every site at once.

Devices of one type at one site are aggregated into one virtual device (one
battery, one PV plant, one EV charger, one load). :func:`build_site_data`
turns fleet, starting state, forecast and configuration into the bounds,
costs and right-hand sides of every site's LP, as ``(n_sites, n_steps)``
arrays keyed by the names of the Pyomo variables and constraints in
:mod:`optimizer.model`. Both the Pyomo statement (the oracle) and the
matrix fast path read these same arrays, so the data is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.types import EvSessions, Forecast, OptimizerConfig, OptimizerInputError
from optimizer.validate import check_initial_soc
from twin.fleet import BATTERY, PV, Fleet
from twin.limits import setpoint_bounds_kw
from twin.state import TwinState

INF = np.inf
EFF_DECIMALS = 4  # virtual battery efficiencies are rounded so sites share compiled blocks

# Variables of the site block: per-step (n_sites, n_steps) unless listed in SCALAR_VARS.
STEP_VARS = ("pv", "ch", "dis", "e", "ev", "evc", "evu", "imp", "exp", "impx", "expx")
SCALAR_VARS = ("peak", "term_short")
# Constraints of the site block with a data right-hand side.
STEP_ROWS = ("bal", "soc", "evb", "pk")
SCALAR_ROWS = ("term",)


@dataclass
class Sessions:
    """EV sessions mapped onto the horizon's steps (only those in the fleet)."""

    charger_row: np.ndarray  # (k,) device row
    site: np.ndarray  # (k,) site row
    first: np.ndarray  # (k,) first step it can charge
    last: np.ndarray  # (k,) last step it can charge (may be >= n_steps)
    need_kwh: np.ndarray  # (k,)


@dataclass
class SiteData:
    """Bounds, costs and right-hand sides of every site's LP.

    ``lb``, ``ub`` and ``cost`` map a variable name to an array of shape
    ``(n_sites, n_steps)`` (or ``(n_sites,)`` for scalar variables);
    ``rhs`` maps a constraint name likewise. ``eta_c`` and ``eta_d`` are the
    virtual batteries' efficiencies (they enter the matrix, so sites are
    grouped by ``site_sig`` into ``signatures``).
    """

    n_sites: int
    n_steps: int
    dt_h: float
    lb: dict[str, np.ndarray]
    ub: dict[str, np.ndarray]
    cost: dict[str, np.ndarray]
    rhs: dict[str, np.ndarray]
    signatures: list[tuple[float, float]]
    site_sig: np.ndarray
    # Coupling
    feeder_sites: list[np.ndarray]  # sites of each coupled feeder
    feeder_import_kw: np.ndarray
    feeder_export_kw: np.ndarray
    feeder_row: np.ndarray  # fleet feeder row of each coupled feeder
    groups: list[np.ndarray]  # sites of each independent LP
    vpp_export_kw: np.ndarray | None
    limit_penalty: float  # [EUR/kWh]
    vpp_penalty: float  # [EUR/kWh]
    # For disaggregation and KPIs
    e0_device_kwh: np.ndarray  # (n_devices,)
    device_ok: np.ndarray  # (n_devices,) bool
    sessions: Sessions
    price: np.ndarray  # (n_steps, n_sites) [EUR/MWh]
    feed_in: np.ndarray
    co2: np.ndarray  # [kg/MWh]
    load_kw: np.ndarray  # (n_steps, n_sites)
    pv_kw: np.ndarray  # (n_steps, n_sites), available
    pv_device_kw: np.ndarray  # (n_steps, n_devices), available per PV row


def initial_energy(fleet: Fleet, initial: TwinState | float | np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Stored energy per device row [kWh] and a working flag, from a twin state or SoC."""
    kwh = np.nan_to_num(fleet.battery_kwh, nan=0.0)
    lo = np.nan_to_num(fleet.soc_min, nan=0.0) * kwh
    hi = np.nan_to_num(fleet.soc_max, nan=0.0) * kwh
    if isinstance(initial, TwinState):
        if len(initial.e_kwh) != fleet.n_devices:
            raise OptimizerInputError(f"initial twin state has {len(initial.e_kwh)} device "
                                      f"rows, the fleet {fleet.n_devices}")
        e = np.asarray(initial.e_kwh, dtype=np.float64)
        if not np.all(np.isfinite(e)):
            raise OptimizerInputError("initial twin state e_kwh has NaN or infinite values")
        ok = np.asarray(initial.device_ok) != 0
    else:
        soc = np.broadcast_to(np.asarray(0.5 if initial is None else initial,
                                         dtype=np.float64), (fleet.n_devices,))
        is_bat = fleet.device_type == BATTERY
        check_initial_soc(np.where(is_bat, soc, 0.5))
        e = np.where(is_bat, soc, 0.0) * kwh
        ok = np.ones(fleet.n_devices, dtype=bool)
    return np.clip(e, lo, hi), ok


def map_sessions(fleet: Fleet, forecast: Forecast, config: OptimizerConfig,
                 t0_s: float) -> Sessions:
    """Steps in which each session can charge: those starting in [arrival, departure)."""
    ses = forecast.ev_sessions if forecast.ev_sessions is not None else EvSessions()
    rows = np.asarray(ses.charger_row, dtype=np.int64)
    arr = np.asarray(ses.arrival_s, dtype=np.float64)
    dep = np.asarray(ses.departure_s, dtype=np.float64)
    need = np.asarray(ses.need_kwh, dtype=np.float64)
    first = np.maximum(np.ceil((arr - t0_s) / config.dt_s - 1e-9), 0).astype(np.int64)
    with np.errstate(invalid="ignore"):
        last_f = np.ceil((dep - t0_s) / config.dt_s - 1e-9) - 1
    last = np.minimum(np.nan_to_num(last_f, posinf=1e9), 1e9).astype(np.int64)
    # Keep sessions that overlap the horizon (or are due in it) with energy to deliver.
    keep = (last >= 0) & (first < config.n_steps) & (need > 0)
    return Sessions(rows[keep], fleet.device_site[rows[keep]].astype(np.int64), first[keep],
                    last[keep], need[keep])


def build_site_data(fleet: Fleet, initial: TwinState | float | np.ndarray | None,
                    series: dict, config: OptimizerConfig, t0_s: float,
                    forecast: Forecast) -> SiteData:
    """Aggregate devices per site and state every bound, cost and right-hand side.

    ``series`` is the checked forecast from :func:`optimizer.validate.check_forecast`.
    """
    s_n, t_n, dt_h = fleet.n_sites, config.n_steps, config.dt_h
    site, kind = fleet.device_site, fleet.device_type
    e_dev, ok = initial_energy(fleet, initial)

    def per_site(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(site[mask], weights=values[mask], minlength=s_n)

    bat = (kind == BATTERY) & ok
    kwh = np.nan_to_num(fleet.battery_kwh, nan=0.0)
    lo_kw, hi_kw = setpoint_bounds_kw(fleet)  # each device's own limits (twin.limits)
    ch_max = per_site(np.nan_to_num(-lo_kw, nan=0.0), bat)
    dis_max = per_site(np.nan_to_num(hi_kw, nan=0.0), bat)
    e_min = per_site(np.nan_to_num(fleet.soc_min, nan=0.0) * kwh, bat)
    e_max = per_site(np.nan_to_num(fleet.soc_max, nan=0.0) * kwh, bat)
    cap = per_site(kwh, bat)
    e0 = np.clip(per_site(e_dev, bat), e_min, e_max)
    # Power-weighted efficiencies of the virtual battery, rounded so sites share blocks.
    weight = per_site(np.nan_to_num(fleet.charge_kw, nan=0.0) + 1e-9, bat)
    eta_c = per_site((np.nan_to_num(fleet.charge_kw, nan=0.0) + 1e-9)
                     * np.nan_to_num(fleet.charge_eff, nan=1.0), bat)
    eta_d = per_site((np.nan_to_num(fleet.charge_kw, nan=0.0) + 1e-9)
                     * np.nan_to_num(fleet.discharge_eff, nan=1.0), bat)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta_c = np.where(weight > 0, eta_c / weight, np.nan)
        eta_d = np.where(weight > 0, eta_d / weight, np.nan)
    # Sites without a battery take the most common signature (their battery is fixed at 0).
    has = ~np.isnan(eta_c)
    eta_c = np.round(np.where(has, eta_c, _mode(eta_c[has], 0.95)), EFF_DECIMALS)
    eta_d = np.round(np.where(has, eta_d, _mode(eta_d[has], 0.95)), EFF_DECIMALS)
    sig_pairs = list(zip(eta_c.tolist(), eta_d.tolist(), strict=True))
    signatures = sorted(set(sig_pairs))
    sig_index = {sig: i for i, sig in enumerate(signatures)}
    site_sig = np.array([sig_index[p] for p in sig_pairs], dtype=np.int64)

    # PV: available per device (clipped to its inverter, zero when failed); site = sum.
    pv_all = np.flatnonzero(kind == PV)
    inv = np.nan_to_num(fleet.inverter_kw, nan=0.0)
    pv_dev = np.zeros((t_n, fleet.n_devices))
    if series["pv_device_kw"] is not None:
        pv_dev[:, pv_all] = series["pv_device_kw"][:, pv_all]
    else:
        share = np.zeros(fleet.n_devices)
        tot = per_site(inv, kind == PV)
        with np.errstate(invalid="ignore", divide="ignore"):
            share[pv_all] = np.where(tot[site[pv_all]] > 0,
                                     inv[pv_all] / tot[site[pv_all]], 0.0)
        pv_dev[:, pv_all] = series["pv_kw"][:, site[pv_all]] * share[None, pv_all]
    pv_dev[:, pv_all] = np.minimum(pv_dev[:, pv_all], inv[pv_all]) * ok[pv_all]
    to_site = sp.csr_array((np.ones(len(pv_all)), (pv_all, site[pv_all])),
                           shape=(fleet.n_devices, s_n))
    pv_kw = np.asarray(to_site.T @ pv_dev.T).T

    # EV: per-site power cap, cumulative requirement and total energy wanted.
    sessions = map_sessions(fleet, forecast, config, t0_s)
    sessions_ok = ok[sessions.charger_row]
    ev_cap, req_due, need_total = _ev_site_arrays(fleet, sessions, sessions_ok, t_n, dt_h,
                                                  hi_kw)
    need_total = np.maximum(need_total, 0.0)
    req_cum = np.minimum(np.cumsum(req_due, axis=1), need_total[:, None])  # no 1e-14 crossings

    load = series["load_kw"]
    price, feed_in, co2 = (series["import_price_eur_per_mwh"], series["feed_in_eur_per_mwh"],
                           series["co2_kg_per_mwh"])

    def steps(x: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=np.float64).reshape(-1, 1)
                               if np.ndim(x) == 1 else np.asarray(x, dtype=np.float64),
                               (s_n, t_n)).copy()

    zero, inf = steps(0.0), steps(INF)
    lb = {"pv": zero, "ch": zero, "dis": zero, "e": steps(e_min), "ev": zero,
          "evc": req_cum, "evu": zero, "imp": zero, "exp": zero, "impx": zero, "expx": zero,
          "peak": np.zeros(s_n), "term_short": np.zeros(s_n)}
    ub = {"pv": pv_kw.T.copy(), "ch": steps(ch_max), "dis": steps(dis_max), "e": steps(e_max),
          "ev": ev_cap, "evc": steps(need_total), "evu": req_due,
          "imp": steps(fleet.import_limit_kw),
          "exp": steps(fleet.export_limit_kw), "impx": inf, "expx": inf,
          "peak": np.full(s_n, INF), "term_short": np.full(s_n, INF)}
    energy_eur = dt_h * 0.001  # kW over one step -> MWh
    buy = energy_eur * (price + config.co2_price_eur_per_t * 0.001 * co2).T
    sell = energy_eur * feed_in.T
    penalty = dt_h * config.limit_penalty_eur_per_kwh
    wear = dt_h * config.degradation_eur_per_kwh
    e_cost = zero.copy()
    e_cost[:, -1] = -config.terminal_value_eur_per_kwh
    cost = {"pv": steps(-dt_h * config.curtail_cost_eur_per_kwh), "ch": steps(wear),
            "dis": steps(wear), "e": e_cost, "ev": zero, "evc": zero,
            "evu": steps(config.ev_unmet_penalty_eur_per_kwh), "imp": buy, "exp": -sell,
            "impx": buy + penalty, "expx": -sell + penalty,
            "peak": np.full(s_n, config.peak_charge_eur_per_kw),
            "term_short": np.full(s_n, config.terminal_penalty_eur_per_kwh)}
    soc_rhs = zero.copy()
    soc_rhs[:, 0] = e0
    target = (np.clip(config.terminal_soc * cap, e_min, e_max) if config.terminal_soc is not None
              else e_min)
    rhs = {"bal": load.T.copy(), "soc": soc_rhs, "evb": zero.copy(), "pk": zero.copy(),
           "term": target}

    feeder_sites, f_imp, f_exp, f_row = _coupled_feeders(fleet)
    vpp = (None if config.vpp_export_kw is None
           else np.asarray(config.vpp_export_kw, dtype=np.float64)[:t_n].copy())
    groups = _groups(fleet, config, vpp is not None)
    return SiteData(
        n_sites=s_n, n_steps=t_n, dt_h=dt_h, lb=lb, ub=ub, cost=cost, rhs=rhs,
        signatures=signatures, site_sig=site_sig, feeder_sites=feeder_sites,
        feeder_import_kw=f_imp, feeder_export_kw=f_exp, feeder_row=f_row, groups=groups,
        vpp_export_kw=vpp, limit_penalty=config.limit_penalty_eur_per_kwh,
        vpp_penalty=config.vpp_penalty_eur_per_kwh, e0_device_kwh=e_dev, device_ok=ok,
        sessions=sessions, price=price, feed_in=feed_in, co2=co2, load_kw=load, pv_kw=pv_kw,
        pv_device_kw=pv_dev,
    )


def _ev_site_arrays(fleet: Fleet, ses: Sessions, ses_ok: np.ndarray, t_n: int,
                    dt_h: float, hi_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s_n = fleet.n_sites
    req = np.zeros((s_n, t_n + 1))
    # A session due in the horizon must be served by its last step; one that cannot
    # charge at all (last < first) is due at once and shows up as unmet.
    due = ses.last < t_n
    np.add.at(req, (ses.site[due], np.maximum(ses.last[due], 0)), ses.need_kwh[due])
    need_total = np.bincount(ses.site, weights=ses.need_kwh, minlength=s_n)
    active = charger_active(ses, ses_ok, fleet.n_devices, t_n)
    ev_max = np.nan_to_num(hi_kw, nan=0.0)  # a charger's limit, shared by its sessions
    ev_cap = np.zeros((s_n, t_n))
    rows = np.flatnonzero(active.any(axis=1))
    np.add.at(ev_cap, fleet.device_site[rows], active[rows] * ev_max[rows, None])
    return ev_cap, req[:, :t_n], need_total


def charger_active(ses: Sessions, ses_ok: np.ndarray, n_devices: int, t_n: int) -> np.ndarray:
    """(n_devices, n_steps) bool: charger has a session that may charge in the step."""
    diff = np.zeros((n_devices, t_n + 1), dtype=np.int64)
    first = np.minimum(ses.first, t_n)
    stop = np.minimum(ses.last + 1, t_n)
    live = ses_ok & (stop > first)
    np.add.at(diff, (ses.charger_row[live], first[live]), 1)
    np.add.at(diff, (ses.charger_row[live], stop[live]), -1)
    return np.cumsum(diff[:, :t_n], axis=1) > 0


def _coupled_feeders(fleet: Fleet) -> tuple[list[np.ndarray], np.ndarray, np.ndarray,
                                            np.ndarray]:
    """Feeders whose limits can bind beyond their sites' own limits."""
    sites_of: list[np.ndarray] = []
    f_imp, f_exp, f_row = [], [], []
    order = np.argsort(fleet.site_feeder, kind="stable")
    bounds = np.searchsorted(fleet.site_feeder[order], np.arange(fleet.n_feeders + 1))
    for f in range(fleet.n_feeders):
        members = order[bounds[f]:bounds[f + 1]]
        if len(members) == 0:
            continue
        imp, exp = fleet.feeder_import_limit_kw[f], fleet.feeder_export_limit_kw[f]
        if (imp < fleet.import_limit_kw[members].sum()
                or exp < fleet.export_limit_kw[members].sum()):
            sites_of.append(np.sort(members))
            f_imp.append(imp)
            f_exp.append(exp)
            f_row.append(f)
    return sites_of, np.array(f_imp), np.array(f_exp), np.array(f_row, dtype=np.int64)


def _groups(fleet: Fleet, config: OptimizerConfig, has_vpp: bool) -> list[np.ndarray]:
    """Independent LPs: one per feeder, or the whole fleet when something couples all."""
    if has_vpp or not config.decompose:
        return [np.arange(fleet.n_sites)]
    order = np.argsort(fleet.site_feeder, kind="stable")
    bounds = np.searchsorted(fleet.site_feeder[order], np.arange(fleet.n_feeders + 1))
    feeders = [order[bounds[f]:bounds[f + 1]] for f in range(fleet.n_feeders)
               if bounds[f + 1] > bounds[f]]
    # Pack whole feeders into batches of about ``batch_sites`` sites: one HiGHS
    # instance per batch (block-diagonal, still separable) keeps memory down.
    groups, current = [], []
    for members in feeders:
        if current and sum(len(m) for m in current) + len(members) > config.batch_sites:
            groups.append(np.sort(np.concatenate(current)))
            current = []
        current.append(members)
    if current:
        groups.append(np.sort(np.concatenate(current)))
    return groups


def _mode(values: np.ndarray, default: float) -> float:
    if len(values) == 0:
        return default
    vals, counts = np.unique(np.round(values, EFF_DECIMALS), return_counts=True)
    return float(vals[np.argmax(counts)])
