"""Control strategies of a scenario: ``none``, ``rule`` (self-consumption) and ``optimizer``.

A strategy turns an :class:`Observation` (what the controller knows before a
step) into one setpoint per device row, the twin's convention: battery
``p_kw`` (positive = discharge), PV and EV ``p_limit_kw``, NaN = no setpoint.
Everything is vectorized over sites and devices with ``numpy.bincount``.

* ``none``: no setpoints at all (batteries idle, nothing curtailed).
* ``rule``: each site charges its batteries from PV surplus and discharges
  them into its own load and EV charging, never to the grid, sharing the
  site's battery power in proportion to what each battery can take or give;
  with ``curtail_to_export_limit`` PV is curtailed (proportionally) when the
  export would exceed the site's connection limit.
* ``optimizer``: the dispatch optimizer (see :mod:`scenarios.optimized`).

:func:`island` is applied on top of any strategy for islanded sites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER, LOAD, PV, Fleet
from twin.state import TwinParams


@dataclass
class Observation:
    """What a controller knows before a step (``t_s``, ``dt_s``).

    ``pv_avail_kw`` per PV device (the step's irradiance, no curtailment) and
    ``pv_site_kw`` its sum per site over working devices; ``load_site_kw`` and
    ``ev_site_kw`` per site (negative: drawn);
    ``e_kwh`` per device row (batteries; stale for sites without
    communication); ``device_ok`` per device row. ``window(n)`` gives the
    inputs of the next ``n`` steps (see ``scenarios.runner.ChunkFeed.window``);
    the price factor and addition of a running price spike come along.
    """

    t_s: float
    dt_s: float
    pv_avail_kw: np.ndarray
    pv_site_kw: np.ndarray
    load_site_kw: np.ndarray
    ev_site_kw: np.ndarray
    e_kwh: np.ndarray
    device_ok: np.ndarray
    window: Callable[[int], dict[str, np.ndarray]] | None = None
    price_factor: float = 1.0
    price_add_eur_per_mwh: float = 0.0


class Strategy(Protocol):
    name: str

    def setpoints(self, obs: Observation) -> np.ndarray: ...

    def stats(self) -> dict[str, Any]: ...


class FleetIndex:
    """Row sets and per-site sums the strategies share, built once per fleet."""

    def __init__(self, fleet: Fleet, params: TwinParams):
        self.n_sites = fleet.n_sites
        self.n_devices = fleet.n_devices
        site = fleet.device_site.astype(np.int64)
        self.pv = np.flatnonzero(fleet.device_type == PV)
        self.bat = np.flatnonzero(fleet.device_type == BATTERY)
        self.ev = np.flatnonzero(fleet.device_type == EV_CHARGER)
        self.load = np.flatnonzero(fleet.device_type == LOAD)
        self.pv_site, self.bat_site = site[self.pv], site[self.bat]
        self.ev_site, self.load_site = site[self.ev], site[self.load]
        self.device_site = site
        p = params
        b = self.bat
        self.cap = p.battery_kwh[b]
        self.charge_kw, self.discharge_kw = p.charge_kw[b], p.discharge_kw[b]
        self.charge_eff, self.discharge_eff = p.charge_eff[b], p.discharge_eff[b]
        self.e_min, self.e_max = p.soc_min[b] * self.cap, p.soc_max[b] * self.cap
        self.export_limit_kw = params.export_limit_kw.copy()
        self.import_limit_kw = params.import_limit_kw.copy()
        self.load_peak_kw = p.load_peak_kw[self.load]
        self.load_profile = p.load_profile[self.load].astype(np.int64)
        self.ev_max_kw = p.ev_max_kw[self.ev]
        self.conn_charger = np.repeat(np.arange(len(self.ev)),
                                      (p.conn_stop - p.conn_start)[self.ev])

    def site_sum(self, site_of_row: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.bincount(site_of_row, values, minlength=self.n_sites)

    def battery_room(self, e_kwh: np.ndarray, ok: np.ndarray,
                     dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        """Power each battery can take and give over ``dt_h`` [kW] (0 when failed)."""
        e = e_kwh[self.bat]
        on = ok[self.bat] != 0
        room_in = np.where(on, np.minimum(self.charge_kw, np.maximum(self.e_max - e, 0.0)
                                          / (self.charge_eff * dt_h)), 0.0)
        room_out = np.where(on, np.minimum(self.discharge_kw, np.maximum(e - self.e_min, 0.0)
                                           * self.discharge_eff / dt_h), 0.0)
        return room_in, room_out

    def spread_battery(self, sp: np.ndarray, p_site: np.ndarray, room_in: np.ndarray,
                       room_out: np.ndarray) -> None:
        """Set battery setpoints so each site's batteries give ``p_site`` [kW] together."""
        p_bat = p_site[self.bat_site]
        room = np.where(p_bat > 0, room_out, room_in)
        total = self.site_sum(self.bat_site, room)[self.bat_site]
        share = np.divide(room, total, out=np.zeros_like(room), where=total > 0)
        sp[self.bat] = p_bat * share

    def curtail(self, sp: np.ndarray, obs: Observation, pv_site: np.ndarray,
                excess_kw: np.ndarray) -> None:
        """Limit PV so each site delivers ``excess_kw`` less, in proportion to availability."""
        if not np.any(excess_kw > 0):
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.where(excess_kw > 0,
                            np.clip(1.0 - excess_kw / pv_site, 0.0, 1.0), np.nan)
        sp[self.pv] = obs.pv_avail_kw * keep[self.pv_site]


class NoControl:
    """Strategy ``none``: no setpoints."""

    name = "none"

    def __init__(self, index: FleetIndex):
        self.base = np.full(index.n_devices, np.nan)

    def setpoints(self, obs: Observation) -> np.ndarray:
        return self.base.copy()

    def stats(self) -> dict[str, Any]:
        return {}


class SelfConsumptionRule:
    """Strategy ``rule``: store PV surplus, discharge into the site's own demand.

    Parameters
    ----------
    index : FleetIndex
        The fleet's rows.
    curtail_to_export_limit : bool
        Curtail PV when the export would exceed the site's export limit.
    """

    name = "rule"

    def __init__(self, index: FleetIndex, curtail_to_export_limit: bool = True):
        self.ix = index
        self.curtail = curtail_to_export_limit
        self.base = np.full(index.n_devices, np.nan)

    def setpoints(self, obs: Observation) -> np.ndarray:
        ix = self.ix
        sp = self.base.copy()
        pv_site = obs.pv_site_kw
        net = pv_site + obs.load_site_kw + obs.ev_site_kw  # before the battery, + = surplus
        room_in, room_out = ix.battery_room(obs.e_kwh, obs.device_ok, obs.dt_s / 3600.0)
        p_site = np.where(net > 0, -np.minimum(net, ix.site_sum(ix.bat_site, room_in)),
                          np.minimum(-net, ix.site_sum(ix.bat_site, room_out)))
        ix.spread_battery(sp, p_site, room_in, room_out)
        if self.curtail:
            ix.curtail(sp, obs, pv_site, np.maximum(net + p_site - ix.export_limit_kw, 0.0))
        return sp

    def stats(self) -> dict[str, Any]:
        return {}


def island(index: FleetIndex, sp: np.ndarray, obs: Observation, sites: np.ndarray,
           device_ok: np.ndarray) -> None:
    """Overwrite the setpoints of islanded ``sites`` so they neither import nor export.

    EV charging stops; batteries cover the load or store the PV surplus; PV is
    curtailed to what is used or stored; where the battery cannot carry the
    load, the site's loads are shed (``device_ok`` set to 0 for this step).
    Arrays are changed in place.
    """
    ix = index
    mask = np.zeros(ix.n_sites, dtype=bool)
    mask[sites] = True
    sp[ix.ev[mask[ix.ev_site]]] = 0.0
    pv_site = obs.pv_site_kw
    room_in, room_out = ix.battery_room(obs.e_kwh, obs.device_ok, obs.dt_s / 3600.0)
    rin, rout = ix.site_sum(ix.bat_site, room_in), ix.site_sum(ix.bat_site, room_out)
    load = obs.load_site_kw
    shed = mask & (pv_site + load + rout < 0)
    if shed.any():
        device_ok[ix.load[shed[ix.load_site]]] = 0
        load = np.where(shed, 0.0, load)
    net = pv_site + load
    p_site = np.where(net > 0, -np.minimum(net, rin), np.minimum(-net, rout))
    sub = np.full(ix.n_devices, np.nan)
    ix.spread_battery(sub, p_site, room_in, room_out)
    on_bat = ix.bat[mask[ix.bat_site]]
    sp[on_bat] = sub[on_bat]
    sub_pv = np.full(ix.n_devices, np.nan)
    ix.curtail(sub_pv, obs, pv_site, np.where(mask, np.maximum(net + p_site, 0.0), 0.0))
    on_pv = ix.pv[mask[ix.pv_site]]
    sp[on_pv] = sub_pv[on_pv]
