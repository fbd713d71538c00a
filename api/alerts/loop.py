"""Alerts in the live service: observe the twin's telemetry, evaluate, persist, push, mail.

:class:`AlertLoop` is one part of the live runtime (:mod:`api.live.runtime`) and runs
one evaluation every ``alert_eval_s``: it reads a consistent copy of the
telemetry arrays, the setpoints the devices applied (from the registry's
command records), the enabled alert rules (so rule changes take effect on
the next pass, without a restart), runs :class:`~api.alerts.watch.FleetWatch`
and hands the conditions to the :class:`~api.alerts.manager.AlertManager`.
Command rejections, expiries and failures, and plans that fell back, arrive as
events through :meth:`AlertLoop.on_command` and :meth:`AlertLoop.on_plan`;
gateway status messages through :meth:`AlertLoop.on_gateway`, which opens or
clears the site's ``gateway_offline`` alert at once (the periodic pass keeps it
in line with the twin's ``site_online`` flags, also after a restart). A fleet
change reaches it through :meth:`AlertLoop.set_fleet`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import func, select

from adapters.mqtt.types import APPLIED, EXPIRED, REJECTED
from adapters.registry import Registry
from adapters.registry import alerts as alert_repo
from adapters.registry import audit as audit_repo
from adapters.registry.models import CommandRow
from api.alerts.email import EmailNotifier
from api.alerts.manager import AlertManager, Condition
from api.alerts.watch import FleetObservation, FleetWatch, gateway_offline
from api.settings import Settings
from twin.fleet import Fleet
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)

# Command states that open an alert for the device (an applied one clears it).
COMMAND_TROUBLE: frozenset[str] = frozenset({REJECTED, EXPIRED})


def email_from_settings(settings: Settings) -> EmailNotifier | None:
    """The e-mail notifier the settings ask for (None without ``smtp_host``)."""
    host = settings.smtp_host
    if not host:
        return None
    to = [a.strip() for a in (settings.smtp_to or "").split(",") if a.strip()]
    if not to:
        raise ValueError("ECOGRID_SMTP_HOST is set but ECOGRID_SMTP_TO names no recipient")
    return EmailNotifier(host, settings.smtp_port, settings.smtp_from, to,
                         min_severity=settings.smtp_min_severity,
                         username=settings.smtp_user, password=settings.smtp_password,
                         starttls=settings.smtp_starttls)


class AlertLoop:
    """The live service's alerting.

    Parameters
    ----------
    fleet : Fleet
        The fleet at start (:meth:`set_fleet` takes a new one).
    telemetry : Telemetry
        The twin's live arrays.
    registry : Registry
        Rules, alerts, applied commands.
    notify : callable
        ``notify(channel, message)`` for the WebSocket hub.
    settings : Settings
        ``alert_eval_s`` and the SMTP settings.
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, fleet: Fleet, telemetry: Telemetry, registry: Registry,
                 notify: Callable[[str, dict[str, Any]], None], settings: Settings,
                 clock: Callable[[], float]):
        self.fleet = fleet
        self.telemetry = telemetry
        self.registry = registry
        self.notify = notify
        self.settings = settings
        self.clock = clock
        self.watch = FleetWatch(fleet)
        self.manager = AlertManager(registry, notify, email_from_settings(settings),
                                    clear_after_by_kind={"gateway_offline": 0.0})
        self.evaluations = 0

    def start(self) -> None:
        """Reload the open alerts (before any status message: a gateway alert open before
        a restart is continued)."""
        self.manager.load_open()

    def set_fleet(self, fleet: Fleet, version: int) -> None:
        """Watch the devices of ``fleet`` from the next pass on (device windows are kept by
        id where the watch keeps any)."""
        self.fleet = fleet
        self.watch = FleetWatch(fleet, self.watch.config)

    def applied_setpoints(self, now_s: float) -> np.ndarray:
        """The setpoint each device applied and still holds [kW] (NaN: none)."""
        fleet = self.fleet
        out = np.full(fleet.n_devices, np.nan)
        latest = (select(CommandRow.device_id, func.max(CommandRow.version).label("v"))
                  .where(CommandRow.status == "applied", CommandRow.valid_until_s > now_s)
                  .group_by(CommandRow.device_id).subquery())
        q = select(CommandRow.device_id, CommandRow.value).join(
            latest, (CommandRow.device_id == latest.c.device_id) & (CommandRow.version == latest.c.v))
        with self.registry.session() as s:
            for device_id, value in s.execute(q):
                row = fleet.device_row.get(device_id)
                if row is not None:
                    out[row] = value
        return out

    def observation(self, now_s: float) -> FleetObservation:
        tel = self.telemetry
        tel.refresh_stale(now_s)
        snap = tel.snapshot()
        value = snap["value"]
        metrics = {m: value[:, i] for i, m in enumerate(snap["metrics"])}
        with tel.lock:
            reported = tel.reported_online.copy()
        return FleetObservation(now_s, metrics["p_kw"], metrics["soc"],
                           self.applied_setpoints(now_s), metrics=metrics,
                           reported_online=reported, stale=snap["stale"],
                           site_online=snap["site_online"])

    def evaluate(self, now_s: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """One pass at ``now_s`` (default: the service's clock)."""
        now = self.clock() if now_s is None else now_s
        if self.telemetry.fleet is not self.fleet:
            return {}  # a fleet change is under way: the next pass sees the new fleet
        with self.registry.session() as s:
            rules = alert_repo.list_rules(s, enabled_only=True)
        conds = self.watch.observe(self.observation(now), rules)
        conds = [c for c in conds if c.kind != "gateway_offline"]
        self.evaluations += 1
        return self.manager.evaluate(now, conds, late=self._gateway_conditions)

    def _gateway_conditions(self) -> list[Condition]:
        # read under the manager's pass: a status message handled since the observation
        # (on_gateway) is not undone by an older copy of the flags
        with self.telemetry.lock:
            site_online = self.telemetry.site_online.copy()
        return self.watch.gateway_conditions(site_online)

    async def run(self) -> None:
        """Evaluate every ``alert_eval_s`` until cancelled."""
        period = self.settings.alert_eval_s
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception:
                log.exception("alert evaluation failed; continuing")

    def acknowledge(self, alert_id: int, user: str) -> dict[str, Any]:
        """An operator acknowledges an alert (audited, announced as ``acknowledged``)."""
        now = self.clock()
        with self.registry.session() as s:
            rec = alert_repo.ack_alert(s, alert_id, user, now)
            audit_repo.record(s, now, user, "alert.ack", f"alert:{alert_id}")
        self.notify("alerts", {"event": "acknowledged", "alert": rec})
        return rec

    # -- events -----------------------------------------------------------------------
    def on_command(self, rec: dict[str, Any]) -> None:
        """A command changed state: rejected/expired/failed opens an alert for the device,
        an applied one clears it."""
        device = rec.get("device_id")
        if not device:
            return
        key = f"command:device:{device}"
        now = self.clock()
        status = rec.get("status")
        try:
            if status in COMMAND_TROUBLE:
                reason = f": {rec['reason']}" if rec.get("reason") else ""
                self.manager.event(now, Condition(
                    key, f"command_{status}", "warning",
                    f"setpoint {rec.get('value')} for {device} was {status}{reason}",
                    site_id=rec.get("site_id"), device_id=device))
            elif status == APPLIED:
                self.manager.resolve(now, key)
        except Exception:
            log.exception("command alert for %s failed", device)

    def on_gateway(self, site_rows: np.ndarray, online: np.ndarray) -> None:
        """Gateway status messages (its ``online``, or its Will's ``offline``): open the
        site's ``gateway_offline`` alert at once, or clear it at once when the gateway is
        back (a gateway that flaps is damped by the manager)."""
        now = self.clock()
        site_ids = self.fleet.site_id
        conds, keys = [], []
        for row, on in zip(np.asarray(site_rows).tolist(), np.asarray(online).tolist(),
                           strict=True):
            cond = gateway_offline(str(site_ids[row]))
            keys.append(cond.key)
            if not on:
                conds.append(cond)
        try:
            self.manager.evaluate(now, conds, only=keys)
        except Exception:
            log.exception("gateway alert for %s failed", keys)

    def on_plan(self, plan: dict[str, Any]) -> None:
        """A plan was computed: a fallback (or partial fallback) plan opens an alert,
        an optimal one clears it."""
        now = self.clock()
        status = str(plan.get("solver_status", ""))
        key = "optimizer_fallback:fleet"
        if status in ("fallback", "time_limit"):
            self.manager.event(now, Condition(
                key, "optimizer_fallback", "critical" if status == "fallback" else "warning",
                f"plan {plan.get('id')} was not optimal (solver status {status}); "
                "rule-based fallback setpoints were used"))
        else:
            self.manager.resolve(now, key)
