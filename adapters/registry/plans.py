"""Dispatch plans and their life cycle.

Status moves ``proposed -> approved | rejected | superseded | expired`` and
``approved -> dispatched`` (its first setpoints went out) or ``superseded``
(a newer plan was approved). :func:`set_status` refuses any other move.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapters.registry.db import RegistryError
from adapters.registry.models import PlanRow

PLAN_STATUSES: tuple[str, ...] = ("proposed", "approved", "rejected", "superseded", "expired",
                                  "dispatched")
_MOVES: dict[str, tuple[str, ...]] = {
    "proposed": ("approved", "rejected", "superseded", "expired"),
    "approved": ("dispatched", "superseded", "expired"),
    "dispatched": ("superseded", "expired"),
}


def plan_record(p: PlanRow, with_setpoints: bool = True) -> dict[str, Any]:
    out = {"id": p.id, "created_s": p.created_s, "start_s": p.start_s, "step_s": p.step_s,
           "n_steps": p.n_steps, "horizon_s": p.step_s * p.n_steps, "status": p.status,
           "initial_state": p.initial_state, "kpis": p.kpis, "solver_status": p.solver_status,
           "solver_time_s": p.solver_time_s, "decided_by": p.decided_by,
           "decided_s": p.decided_s, "reason": p.reason}
    if with_setpoints:
        out["setpoints"] = p.setpoints
    return out


def add_plan(s: Session, plan: dict[str, Any]) -> dict[str, Any]:
    """Store a new plan (status ``proposed``).

    ``plan`` needs ``id``, ``created_s``, ``start_s``, ``step_s``, ``n_steps``,
    ``initial_state``, ``setpoints`` (``{"kind": {device_id: [value per step]}}``),
    ``kpis``, ``solver_status`` and ``solver_time_s``.
    """
    row = PlanRow(id=plan["id"], created_s=plan["created_s"], start_s=plan["start_s"],
               step_s=plan["step_s"], n_steps=plan["n_steps"], status="proposed",
               initial_state=plan["initial_state"], setpoints=plan["setpoints"],
               kpis=plan["kpis"], solver_status=plan["solver_status"],
               solver_time_s=plan["solver_time_s"])
    s.add(row)
    s.flush()
    return plan_record(row)


def get_plan(s: Session, plan_id: str, with_setpoints: bool = True) -> dict[str, Any] | None:
    if with_setpoints:
        p = s.get(PlanRow, plan_id)
        return None if p is None else plan_record(p)
    cols = [c for c in PlanRow.__table__.columns if c.name != "setpoints"]
    row = s.execute(select(*cols).where(PlanRow.id == plan_id)).first()
    if row is None:
        return None
    d = dict(row._mapping)
    d["horizon_s"] = d["step_s"] * d["n_steps"]
    return d


def list_plans(s: Session, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if status is not None and status not in PLAN_STATUSES:
        raise RegistryError(f"plan status {status!r} is not one of {PLAN_STATUSES}")
    q = select(PlanRow).order_by(PlanRow.created_s.desc()).limit(limit)
    if status:
        q = q.where(PlanRow.status == status)
    return [plan_record(p, with_setpoints=False) for p in s.scalars(q)]


def plans_in(s: Session, statuses: tuple[str, ...], with_setpoints: bool = True
             ) -> list[dict[str, Any]]:
    """Plans in any of ``statuses``, oldest first (setpoints are not loaded when not asked)."""
    if with_setpoints:
        q = select(PlanRow).where(PlanRow.status.in_(statuses)).order_by(PlanRow.created_s)
        return [plan_record(p) for p in s.scalars(q)]
    cols = [c for c in PlanRow.__table__.columns if c.name != "setpoints"]
    rows = s.execute(select(*cols).where(PlanRow.status.in_(statuses)).order_by(PlanRow.created_s))
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["horizon_s"] = d["step_s"] * d["n_steps"]
        out.append(d)
    return out


def set_status(s: Session, plan_id: str, status: str, *, user: str | None = None,
               t_s: float | None = None, reason: str | None = None) -> dict[str, Any]:
    """Move a plan to ``status`` and return its record; raises RegistryError for an
    unknown plan or a bad move."""
    move_status(s, plan_id, status, user=user, t_s=t_s, reason=reason)
    rec = get_plan(s, plan_id, with_setpoints=False)
    assert rec is not None
    return rec


def move_status(s: Session, plan_id: str, status: str, *, user: str | None = None,
                t_s: float | None = None, reason: str | None = None) -> None:
    """:func:`set_status` without reading the record back (for several moves in one
    transaction, read once after them)."""
    # Only the status row is read and locked: the setpoint series can be megabytes.
    current = s.execute(select(PlanRow.status).where(PlanRow.id == plan_id).with_for_update()
                        ).scalar_one_or_none()
    if current is None:
        raise RegistryError(f"no plan {plan_id!r}")
    if status not in _MOVES.get(current, ()):
        raise PlanStateError(f"plan {plan_id} is {current}; it cannot become {status}")
    values: dict[str, Any] = {"status": status}
    if status in ("approved", "rejected"):
        values.update(decided_by=user, decided_s=t_s)
    if reason:
        values["reason"] = reason
    s.execute(update(PlanRow).where(PlanRow.id == plan_id).values(**values)
              .execution_options(synchronize_session=False))


class PlanStateError(RegistryError):
    """A plan status move that its life cycle does not allow."""
