"""Alerts, alert rules and alert life cycles in the registry.

* ``alerts``: raised by the live service (the alert manager, :mod:`api.alerts`), acknowledged
  by operators;
* ``alert_rules``: threshold rules that admins manage through ``/api/v1/alert-rules``
  (metric, operator, threshold, duration, severity and an optional scope: site, device,
  device type);
* ``alert_states``: one row per alert, holding its dedup key, first and last seen,
  occurrences and when it cleared.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.registry.db import RegistryError
from adapters.registry.models import AlertRow, AlertRuleRow, AlertStateRow

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
RULE_FIELDS: tuple[str, ...] = ("name", "metric", "op", "threshold", "duration_s", "severity",
                                "site_id", "device_id", "device_type", "enabled")


def _record(a: AlertRow) -> dict[str, Any]:
    return {"id": a.id, "created_s": a.created_s, "severity": a.severity, "kind": a.kind,
            "message": a.message, "site_id": a.site_id, "device_id": a.device_id,
            "acked_by": a.acked_by, "acked_s": a.acked_s}


def raise_alert(s: Session, t_s: float, severity: str, kind: str, message: str, *,
                site_id: str | None = None, device_id: str | None = None) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise RegistryError(f"severity {severity!r} is not one of {SEVERITIES}")
    a = AlertRow(created_s=t_s, severity=severity, kind=kind, message=message, site_id=site_id,
              device_id=device_id)
    s.add(a)
    s.flush()
    return _record(a)


def list_alerts(s: Session, *, acked: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
    if acked is True:
        q = q.where(AlertRow.acked_s.is_not(None))
    elif acked is False:
        q = q.where(AlertRow.acked_s.is_(None))
    return [_record(a) for a in s.scalars(q)]


def ack_alert(s: Session, alert_id: int, user: str, t_s: float) -> dict[str, Any]:
    a = s.get(AlertRow, alert_id)
    if a is None:
        raise RegistryError(f"no alert {alert_id}")
    if a.acked_s is None:
        a.acked_by, a.acked_s = user, t_s
    return _record(a)


# -- rules -----------------------------------------------------------------------
def rule_record(r: AlertRuleRow) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "metric": r.metric, "op": r.op,
            "threshold": r.threshold, "duration_s": r.duration_s, "severity": r.severity,
            "site_id": r.site_id, "device_id": r.device_id, "device_type": r.device_type,
            "enabled": r.enabled, "created_by": r.created_by, "created_s": r.created_s,
            "updated_s": r.updated_s}


def create_rule(s: Session, fields: dict[str, Any], user: str, t_s: float) -> dict[str, Any]:
    r = AlertRuleRow(**{k: fields[k] for k in RULE_FIELDS if k in fields}, created_by=user,
                  created_s=t_s, updated_s=t_s)
    s.add(r)
    s.flush()
    return rule_record(r)


def list_rules(s: Session, enabled_only: bool = False) -> list[dict[str, Any]]:
    q = select(AlertRuleRow).order_by(AlertRuleRow.id)
    if enabled_only:
        q = q.where(AlertRuleRow.enabled.is_(True))
    return [rule_record(r) for r in s.scalars(q)]


def get_rule(s: Session, rule_id: int) -> dict[str, Any]:
    r = s.get(AlertRuleRow, rule_id)
    if r is None:
        raise RegistryError(f"no alert rule {rule_id}")
    return rule_record(r)


def update_rule(s: Session, rule_id: int, fields: dict[str, Any], t_s: float) -> dict[str, Any]:
    r = s.get(AlertRuleRow, rule_id)
    if r is None:
        raise RegistryError(f"no alert rule {rule_id}")
    for k in RULE_FIELDS:
        if k in fields:
            setattr(r, k, fields[k])
    r.updated_s = t_s
    return rule_record(r)


def delete_rule(s: Session, rule_id: int) -> None:
    r = s.get(AlertRuleRow, rule_id)
    if r is None:
        raise RegistryError(f"no alert rule {rule_id}")
    s.delete(r)


# -- alert life cycles -------------------------------------------------------------
def alert_record(a: AlertRow, st: AlertStateRow | None) -> dict[str, Any]:
    rec = _record(a)
    rec.update({"key": st.key if st else None, "rule_id": st.rule_id if st else None,
                "first_seen_s": st.first_seen_s if st else a.created_s,
                "last_seen_s": st.last_seen_s if st else a.created_s,
                "occurrences": st.occurrences if st else 1,
                "flapping": bool(st.flapping) if st else False,
                "cleared_s": st.cleared_s if st else None})
    return rec


def open_alert(s: Session, key: str, t_s: float, severity: str, kind: str, message: str, *,
               site_id: str | None = None, device_id: str | None = None,
               rule_id: int | None = None) -> dict[str, Any]:
    rec = raise_alert(s, t_s, severity, kind, message, site_id=site_id,
                                 device_id=device_id)
    st = AlertStateRow(alert_id=rec["id"], key=key, rule_id=rule_id, first_seen_s=t_s,
                    last_seen_s=t_s, occurrences=1, flapping=False)
    s.add(st)
    s.flush()
    return alert_record(s.get(AlertRow, rec["id"]), st)  # type: ignore[arg-type]


def touch_alerts(s: Session, alert_ids: list[int], t_s: float) -> None:
    """Set ``last_seen_s`` of open alerts."""
    for st in s.scalars(select(AlertStateRow).where(AlertStateRow.alert_id.in_(alert_ids))):
        st.last_seen_s = t_s


def reopen_alert(s: Session, alert_id: int, t_s: float, flapping: bool) -> dict[str, Any]:
    """A cleared alert whose condition came back within the damping window."""
    st = s.get(AlertStateRow, alert_id)
    a = s.get(AlertRow, alert_id)
    if st is None or a is None:
        raise RegistryError(f"no alert {alert_id}")
    st.cleared_s = None
    st.last_seen_s = t_s
    st.occurrences += 1
    st.flapping = st.flapping or flapping
    return alert_record(a, st)


def clear_alert(s: Session, alert_id: int, t_s: float) -> dict[str, Any]:
    st = s.get(AlertStateRow, alert_id)
    a = s.get(AlertRow, alert_id)
    if st is None or a is None:
        raise RegistryError(f"no alert {alert_id}")
    st.cleared_s = t_s
    return alert_record(a, st)


def open_alerts(s: Session) -> list[dict[str, Any]]:
    """Alerts not cleared yet, with their keys (the manager reloads them at start)."""
    q = (select(AlertRow, AlertStateRow).join(AlertStateRow, AlertStateRow.alert_id == AlertRow.id)
         .where(AlertStateRow.cleared_s.is_(None)).order_by(AlertRow.id))
    return [alert_record(a, st) for a, st in s.execute(q)]


def list_alert_states(s: Session, *, open_only: bool = False, kind: str | None = None,
                      site_id: str | None = None, device_id: str | None = None,
                      limit: int = 200) -> list[dict[str, Any]]:
    """Alerts with their life cycle, newest first (alerts raised elsewhere included)."""
    q = (select(AlertRow, AlertStateRow).join(AlertStateRow, AlertStateRow.alert_id == AlertRow.id,
                                        isouter=True).order_by(AlertRow.id.desc()).limit(limit))
    if open_only:
        q = q.where(AlertStateRow.cleared_s.is_(None))
    if kind:
        q = q.where(AlertRow.kind == kind)
    if site_id:
        q = q.where(AlertRow.site_id == site_id)
    if device_id:
        q = q.where(AlertRow.device_id == device_id)
    return [alert_record(a, st) for a, st in s.execute(q)]
