"""The audit log: who did what, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.registry.models import AuditRow


def record(s: Session, t_s: float, user: str, action: str, target: str,
           detail: dict[str, Any] | None = None) -> None:
    """Append one entry (``action`` such as ``plan.approve``, ``target`` such as ``plan:ab12``)."""
    s.add(AuditRow(t_s=t_s, user=user, action=action, target=target, detail=detail or {}))


def entries(s: Session, *, user: str | None = None, action: str | None = None,
            limit: int = 100) -> list[dict[str, Any]]:
    q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if user:
        q = q.where(AuditRow.user == user)
    if action:
        q = q.where(AuditRow.action == action)
    return [{"id": e.id, "t_s": e.t_s, "user": e.user, "action": e.action, "target": e.target,
             "detail": e.detail} for e in s.scalars(q)]
