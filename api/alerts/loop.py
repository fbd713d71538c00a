"""Alerts in the live service: observe the twin's telemetry, evaluate, persist, push, mail.

:class:`LiveAlerts` is made by :class:`api.live.service.LiveService` and runs one
evaluation every ``alert_eval_s``: it reads a consistent copy of the
telemetry arrays, the setpoints the devices applied (from the registry's
command records), the enabled alert rules (so rule changes take effect on
the next pass, without a restart), runs :class:`~api.alerts.watch.FleetWatch`
and hands the conditions to the :class:`~api.alerts.manager.AlertManager`.
Command rejections, expiries and failures, and plans that fell back, arrive as
events through :meth:`LiveAlerts.on_command` and :meth:`LiveAlerts.on_plan`;
gateway status messages through :meth:`LiveAlerts.on_gateway`, which opens or
clears the site's ``gateway_offline`` alert at once (the periodic pass keeps it
in line with the twin's ``site_online`` flags, also after a restart).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select

from adapters.registry import alerts as alert_repo
from adapters.registry.models import Command
from api.alerts.email import EmailNotifier
from api.alerts.manager import AlertManager, Condition
from api.alerts.watch import FleetWatch, Observation, gateway_offline

log = logging.getLogger(__name__)

COMMAND_TROUBLE: frozenset[str] = frozenset({"rejected", "expired", "failed"})


def email_from_settings(settings: Any) -> EmailNotifier | None:
    """The e-mail notifier the settings ask for (None without ``smtp_host``)."""
    host = getattr(settings, "smtp_host", None)
    if not host:
        return None
    to = [a.strip() for a in (settings.smtp_to or "").split(",") if a.strip()]
    if not to:
        raise ValueError("ECOGRID_SMTP_HOST is set but ECOGRID_SMTP_TO names no recipient")
    return EmailNotifier(host, settings.smtp_port, settings.smtp_from, to,
                         min_severity=settings.smtp_min_severity,
                         username=settings.smtp_user, password=settings.smtp_password,
                         starttls=settings.smtp_starttls)


class LiveAlerts:
    """The live service's alerting.

    Parameters
    ----------
    svc : LiveService
        Gives the fleet, telemetry, registry, clock, settings and ``notify``.
    """

    def __init__(self, svc: Any):
        self.svc = svc
        self.watch = FleetWatch(svc.fleet)
        self.manager = AlertManager(svc.registry, svc.notify, email_from_settings(svc.settings),
                                    clear_after_by_kind={"gateway_offline": 0.0})
        # before any status message: a gateway alert open before a restart is continued
        self.manager.load_open()
        self.evaluations = 0

    def applied_setpoints(self, now_s: float) -> np.ndarray:
        """The setpoint each device applied and still holds [kW] (NaN: none)."""
        fleet = self.svc.fleet
        out = np.full(fleet.n_devices, np.nan)
        latest = (select(Command.device_id, func.max(Command.version).label("v"))
                  .where(Command.status == "applied", Command.valid_until_s > now_s)
                  .group_by(Command.device_id).subquery())
        q = select(Command.device_id, Command.value).join(
            latest, (Command.device_id == latest.c.device_id) & (Command.version == latest.c.v))
        with self.svc.registry.session() as s:
            for device_id, value in s.execute(q):
                row = fleet.device_row.get(device_id)
                if row is not None:
                    out[row] = value
        return out

    def observation(self, now_s: float) -> Observation:
        tel = self.svc.telemetry
        tel.refresh_stale(now_s)
        snap = tel.snapshot()
        value = snap["value"]
        metrics = {m: value[:, i] for i, m in enumerate(snap["metrics"])}
        with tel.lock:
            reported = tel.reported_online.copy()
        return Observation(now_s, metrics["p_kw"], metrics["soc"],
                           self.applied_setpoints(now_s), metrics=metrics,
                           reported_online=reported, stale=snap["stale"],
                           site_online=snap["site_online"])

    def evaluate(self, now_s: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """One pass at ``now_s`` (default: the service's clock)."""
        now = self.svc.clock() if now_s is None else now_s
        with self.svc.registry.session() as s:
            rules = alert_repo.list_rules(s, enabled_only=True)
        conds = self.watch.observe(self.observation(now), rules)
        conds = [c for c in conds if c.kind != "gateway_offline"]
        self.evaluations += 1
        return self.manager.evaluate(now, conds, late=self._gateway_conditions)

    def _gateway_conditions(self) -> list[Condition]:
        # read under the manager's pass: a status message handled since the observation
        # (on_gateway) is not undone by an older copy of the flags
        with self.svc.telemetry.lock:
            site_online = self.svc.telemetry.site_online.copy()
        return self.watch.gateway_conditions(site_online)

    async def run(self) -> None:
        """Evaluate every ``alert_eval_s`` until cancelled."""
        period = float(getattr(self.svc.settings, "alert_eval_s", 5.0))
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self.evaluate)
            except Exception:
                log.exception("alert evaluation failed; continuing")

    # -- events -----------------------------------------------------------------------
    def on_command(self, rec: dict[str, Any]) -> None:
        """A command changed state: rejected/expired/failed opens an alert for the device,
        an applied one clears it."""
        device = rec.get("device_id")
        if not device:
            return
        key = f"command:device:{device}"
        now = self.svc.clock()
        status = rec.get("status")
        try:
            if status in COMMAND_TROUBLE:
                reason = f": {rec['reason']}" if rec.get("reason") else ""
                self.manager.event(now, Condition(
                    key, f"command_{status}", "warning",
                    f"setpoint {rec.get('value')} for {device} was {status}{reason}",
                    site_id=rec.get("site_id"), device_id=device))
            elif status == "applied":
                self.manager.resolve(now, key)
        except Exception:
            log.exception("command alert for %s failed", device)

    def on_gateway(self, site_rows: np.ndarray, online: np.ndarray) -> None:
        """Gateway status messages (its ``online``, or its Will's ``offline``): open the
        site's ``gateway_offline`` alert at once, or clear it at once when the gateway is
        back (a gateway that flaps is damped by the manager)."""
        now = self.svc.clock()
        site_ids = self.svc.fleet.site_id
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
        now = self.svc.clock()
        status = str(plan.get("solver_status", ""))
        key = "optimizer_fallback:fleet"
        if status in ("fallback", "time_limit"):
            self.manager.event(now, Condition(
                key, "optimizer_fallback", "critical" if status == "fallback" else "warning",
                f"plan {plan.get('id')} was not optimal (solver status {status}); "
                "rule-based fallback setpoints were used"))
        else:
            self.manager.resolve(now, key)
