"""The fleet watch: runs the detectors over one observation of the fleet and names the
conditions that are true.

:class:`FleetWatch` keeps a short window of past observations (one every
``sample_every_s``) for the detectors that need a history (a frozen meter, a
battery's SoC against its energy balance) and turns the detectors' boolean
arrays into :class:`~api.alerts.manager.Condition` objects for the
:class:`~api.alerts.manager.AlertManager`. The live service and the anomaly
benchmark feed it the same way; time is an argument.

The expected PV output is the twin's PV model under pvlib's clear sky
(:func:`optimizer.forecast.clear_sky_pv_forecast`) times the site's clear-sky
index, estimated as the median ratio of measured to clear-sky output over the
site's PV devices (a minority of faulty devices does not move the median).
Sites whose index is below ``min_site_csi`` (heavy cloud, where orientation
matters more than the rating) are not judged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.alerts import detectors as det
from api.alerts.manager import Condition
from optimizer.forecast import clear_sky_pv_forecast
from twin.fleet import BATTERY, DEVICE_TYPES, PV, Fleet
from twin.limits import rated_power_kw

ANOMALY_KINDS: tuple[str, ...] = ("setpoint_deviation", "pv_shortfall", "meter_frozen",
                                  "soc_drift")


@dataclass
class WatchConfig:
    """Thresholds and durations of the built-in detectors (durations in [s])."""

    stale_delay_s: float = 0.0
    offline_delay_s: float = 0.0
    setpoint_tolerance_kw: float = 1.0
    setpoint_tolerance_frac: float = 0.1
    setpoint_delay_s: float = 120.0
    pv_ratio: float = 0.75
    pv_min_frac: float = 0.1
    pv_delay_s: float = 300.0
    min_site_csi: float = 0.5
    min_site_pv: int = 3
    flatline_change_frac: float = 0.02
    soc_residual: float = 0.03
    site_limit_margin_kw: float = 1.0
    site_limit_delay_s: float = 60.0
    sample_every_s: float = 60.0
    window: int = 10


@dataclass
class FleetObservation:
    """What the twin knows about the fleet at one time.

    Parameters
    ----------
    t_s : float
        Time [Unix s].
    p_kw, soc : (n_devices,) array
        Measured power [kW] and state of charge [fraction] (NaN: none).
    setpoint_kw : (n_devices,) array
        Applied setpoints [kW] (NaN: none).
    metrics : dict
        Metric name -> (n_devices,) values, for threshold rules.
    reported_online, stale : (n_devices,) array, optional
        Device status (1/0/-1) and stale flags.
    site_online : (n_sites,) array, optional
        Gateway status (1/0/-1).
    """

    t_s: float
    p_kw: np.ndarray
    soc: np.ndarray
    setpoint_kw: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    reported_online: np.ndarray | None = None
    stale: np.ndarray | None = None
    site_online: np.ndarray | None = None


class FleetWatch:
    """Detectors over a fleet, with a short observation window.

    Parameters
    ----------
    fleet : Fleet
        The fleet (device rows, sites, ratings, limits).
    config : WatchConfig, optional
        Thresholds and durations.
    """

    def __init__(self, fleet: Fleet, config: WatchConfig | None = None):
        self.fleet = fleet
        self.config = config or WatchConfig()
        f = fleet.device_float
        self.rating_kw = rated_power_kw(fleet)
        self.is_pv = fleet.device_type == PV
        self.is_bat = fleet.device_type == BATTERY
        self.pv_rows = np.flatnonzero(self.is_pv)
        self.capacity_kwh = np.where(self.is_bat, f["battery_kwh"], np.nan)
        self.charge_eff, self.discharge_eff = f["charge_eff"], f["discharge_eff"]
        self.soc_min, self.soc_max = f["soc_min"], f["soc_max"]
        self.ids = fleet.device_id.tolist()
        self.site_ids = fleet.site_id.tolist()
        self.dev_site = fleet.device_site
        self._window: deque[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = deque(
            maxlen=self.config.window)

    # -- expected outputs -----------------------------------------------------------
    def clear_sky_pv_kw(self, t_s: float) -> np.ndarray:
        """Clear-sky PV output per device row at ``t_s`` [kW] (NaN off PV)."""
        _, dev = clear_sky_pv_forecast(self.fleet, np.array([t_s]))
        return np.where(self.is_pv, dev[0], np.nan)

    def site_csi(self, p_kw: np.ndarray, clear_kw: np.ndarray) -> np.ndarray:
        """Clear-sky index per site: median measured/clear-sky over judged PV devices
        (NaN where fewer than ``min_site_pv`` devices can be judged)."""
        c = self.config
        rows = self.pv_rows
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = np.isfinite(p_kw[rows]) & (clear_kw[rows] >= c.pv_min_frac * self.rating_kw[rows])
            ratio = p_kw[rows] / clear_kw[rows]
        out = np.full(self.fleet.n_sites, np.nan)
        sites = self.dev_site[rows][ok]
        vals = ratio[ok]
        if len(vals) == 0:
            return out
        order = np.lexsort((vals, sites))
        sites, vals = sites[order], vals[order]
        starts = np.flatnonzero(np.r_[True, sites[1:] != sites[:-1]])
        stops = np.r_[starts[1:], len(sites)]
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            if b - a >= c.min_site_pv:
                out[sites[a]] = float(np.median(vals[a:b]))
        return out

    # -- one pass ---------------------------------------------------------------------
    def observe(self, obs: FleetObservation, rules: list[dict[str, Any]] = ()) -> list[Condition]:
        """The conditions true at ``obs.t_s``."""
        c = self.config
        conds: list[Condition] = []
        p, soc, sp = obs.p_kw, obs.soc, obs.setpoint_kw
        gateway_ok = np.ones(self.fleet.n_sites, dtype=bool)
        if obs.site_online is not None:
            gateway_ok = np.asarray(obs.site_online) != 0
        dev_gateway_ok = gateway_ok[self.dev_site]

        conds.extend(self.gateway_conditions(obs.site_online))
        if obs.reported_online is not None and obs.site_online is not None:
            for r in np.flatnonzero(det.device_offline(obs.reported_online, obs.site_online,
                                                       self.dev_site)):
                conds.append(self._dev("device_offline", r, "warning",
                                       f"device {self.ids[r]} reports offline",
                                       c.offline_delay_s))
        if obs.stale is not None:
            for r in np.flatnonzero(np.asarray(obs.stale) & dev_gateway_ok):
                conds.append(self._dev("stale", r, "warning",
                                       f"no telemetry from device {self.ids[r]}",
                                       c.stale_delay_s))

        for r in np.flatnonzero(det.setpoint_deviation(
                p, sp, self.fleet.device_type, self.rating_kw, soc, self.soc_min, self.soc_max,
                c.setpoint_tolerance_kw, c.setpoint_tolerance_frac)):
            conds.append(self._dev("setpoint_deviation", r, "warning",
                                   f"device {self.ids[r]} runs at {p[r]:.1f} kW, not its "
                                   f"setpoint {sp[r]:.1f} kW", c.setpoint_delay_s))

        clear = self.clear_sky_pv_kw(obs.t_s)
        csi = self.site_csi(p, clear)
        judged = np.isfinite(csi) & (csi >= c.min_site_csi)
        expected = clear * np.where(judged, csi, np.nan)[self.dev_site]
        limit = np.where(self.is_pv, sp, np.nan)
        for r in np.flatnonzero(self.is_pv & det.pv_shortfall(
                p, expected, self.rating_kw, limit, c.pv_ratio, c.pv_min_frac)):
            conds.append(self._dev("pv_shortfall", r, "warning",
                                   f"PV {self.ids[r]} delivers {p[r]:.1f} kW where "
                                   f"{expected[r]:.1f} kW are expected", c.pv_delay_s))

        # expected power for the frozen-meter check: PV clear sky (capped), battery setpoint
        with np.errstate(invalid="ignore"):
            held = ((sp > 0) & (soc <= self.soc_min + 0.02)) | ((sp < 0) & (soc >= self.soc_max
                                                                          - 0.02))
        exp_bat = np.where(held, np.nan, sp)  # near empty or full: not judged
        exp_now = np.where(self.is_pv, np.fmin(clear, limit), np.where(self.is_bat, exp_bat,
                                                                       np.nan))
        self._push(obs.t_s, p, soc, exp_now)
        if len(self._window) >= 3:
            t_w = np.array([w[0] for w in self._window])
            p_w = np.stack([w[1] for w in self._window])
            soc_w = np.stack([w[2] for w in self._window])
            e_w = np.stack([w[3] for w in self._window])
            for r in np.flatnonzero(det.flatline(p_w, e_w, self.rating_kw,
                                                 c.flatline_change_frac) & dev_gateway_ok):
                conds.append(self._dev("meter_frozen", r, "warning",
                                       f"the meter of {self.ids[r]} repeats {p[r]:.2f} kW while "
                                       "the twin expects it to change", 0.0))
            res = det.soc_balance_residual(soc_w, p_w, t_w, self.capacity_kwh,
                                           self.charge_eff, self.discharge_eff)
            with np.errstate(invalid="ignore"):
                drift = self.is_bat & (np.abs(res) > c.soc_residual)
            for r in np.flatnonzero(drift):
                conds.append(self._dev("soc_drift", r, "warning",
                                       f"battery {self.ids[r]}: SoC moved {res[r]:+.3f} away "
                                       "from its energy balance", 0.0))

        net = det.site_sum(self.fleet, p)
        over = det.site_over_limit(net, self.fleet.import_limit_kw, self.fleet.export_limit_kw,
                                   c.site_limit_margin_kw) & gateway_ok
        for srow in np.flatnonzero(over):
            site = self.site_ids[srow]
            conds.append(Condition(f"site_over_limit:site:{site}", "site_over_limit",
                                   "critical", f"site {site} exchanges {net[srow]:+.1f} kW "
                                   "with the grid, beyond its limits", site_id=site,
                                   delay_s=c.site_limit_delay_s))
        conds.extend(self.rule_conditions(obs, rules))
        return conds

    def gateway_conditions(self, site_online: np.ndarray | None) -> list[Condition]:
        """``gateway_offline`` for each site whose gateway said ``offline`` (status 0; its
        Will); an unknown status (-1) is not judged."""
        if site_online is None:
            return []
        return [gateway_offline(self.site_ids[s])
                for s in np.flatnonzero(np.asarray(site_online) == 0).tolist()]

    def rule_conditions(self, obs: FleetObservation, rules: list[dict[str, Any]]
                        ) -> list[Condition]:
        """Conditions of the threshold rules (enabled ones) for one observation."""
        out: list[Condition] = []
        for rule in rules:
            if not rule.get("enabled", True):
                continue
            values = obs.metrics.get(rule["metric"])
            if values is None:
                continue
            mask = det.threshold(values, rule["op"], rule["threshold"])
            mask &= self.rule_scope(rule)
            for r in np.flatnonzero(mask):
                d = self.ids[r]
                out.append(Condition(
                    f"rule{rule['id']}:device:{d}", "threshold", rule["severity"],
                    f"{rule['name']}: {rule['metric']} of {d} is {values[r]:g} "
                    f"({rule['op']} {rule['threshold']:g})", site_id=self.site_ids[self.dev_site[r]],
                    device_id=d, rule_id=rule["id"], delay_s=float(rule.get("duration_s") or 0)))
        return out

    def rule_scope(self, rule: dict[str, Any]) -> np.ndarray:
        """Device rows a rule applies to."""
        mask = np.ones(self.fleet.n_devices, dtype=bool)
        if rule.get("device_id"):
            mask &= self.fleet.device_id == rule["device_id"]
        if rule.get("site_id"):
            srow = self.fleet.site_row.get(rule["site_id"])
            mask &= self.dev_site == (-1 if srow is None else srow)
        if rule.get("device_type"):
            code = DEVICE_TYPES.index(rule["device_type"]) if rule["device_type"] in \
                DEVICE_TYPES else -1
            mask &= self.fleet.device_type == code
        return mask

    def _push(self, t_s: float, p: np.ndarray, soc: np.ndarray, exp: np.ndarray) -> None:
        if self._window and t_s - self._window[-1][0] < self.config.sample_every_s:
            return
        self._window.append((t_s, np.array(p, dtype=np.float64), np.array(soc, dtype=np.float64),
                             np.array(exp, dtype=np.float64)))

    def _dev(self, kind: str, row: int, severity: str, message: str, delay_s: float
             ) -> Condition:
        d = self.ids[row]
        return Condition(f"{kind}:device:{d}", kind, severity, message,
                         site_id=self.site_ids[self.dev_site[row]], device_id=d,
                         delay_s=delay_s)


def gateway_offline(site_id: str) -> Condition:
    """The condition of a site's gateway being offline (key ``gateway_offline:site:ID``)."""
    return Condition(f"gateway_offline:site:{site_id}", "gateway_offline", "warning",
                     f"the gateway of site {site_id} went offline", site_id=site_id)
