"""Alerts: raised by the live service (rules come with the analytics issue), acknowledged by operators."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.registry.db import RegistryError
from adapters.registry.models import Alert

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")


def _record(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "created_s": a.created_s, "severity": a.severity, "kind": a.kind,
            "message": a.message, "site_id": a.site_id, "device_id": a.device_id,
            "acked_by": a.acked_by, "acked_s": a.acked_s}


def raise_alert(s: Session, t_s: float, severity: str, kind: str, message: str, *,
                site_id: str | None = None, device_id: str | None = None) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise RegistryError(f"severity {severity!r} is not one of {SEVERITIES}")
    a = Alert(created_s=t_s, severity=severity, kind=kind, message=message, site_id=site_id,
              device_id=device_id)
    s.add(a)
    s.flush()
    return _record(a)


def list_alerts(s: Session, *, acked: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if acked is True:
        q = q.where(Alert.acked_s.is_not(None))
    elif acked is False:
        q = q.where(Alert.acked_s.is_(None))
    return [_record(a) for a in s.scalars(q)]


def ack_alert(s: Session, alert_id: int, user: str, t_s: float) -> dict[str, Any]:
    a = s.get(Alert, alert_id)
    if a is None:
        raise RegistryError(f"no alert {alert_id}")
    if a.acked_s is None:
        a.acked_by, a.acked_s = user, t_s
    return _record(a)
