"""Commands (setpoints) to devices: scheduling, versions, states and acknowledgements.

Before it goes out a command is ``scheduled`` (due later) or ``pending`` (due,
not yet handed to the publisher); it may be ``cancelled`` then, or
``superseded`` by a newer command for the same device. From the publisher on
it follows the MQTT protocol's states (``adapters.mqtt.types``): ``queued``,
``sent``, ``received``, then ``applied``, ``rejected`` or ``expired``.
Versions per device only rise, across restarts: :class:`DeviceVersion`
keeps the last one handed out. :class:`SqlCommandStore` implements the MQTT
adapter's ``CommandStore`` protocol on these tables.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from adapters.mqtt.types import (
    CANCELLED,
    COMMAND_STATES,
    EXPIRED,
    FINAL_STATES,
    PENDING,
    PRE_STATES,
    QUEUED,
    RECEIVED,
    REJECTED,
    SCHEDULED,
    SENT,
    SUPERSEDED,
    TERMINAL_STATES,
)
from adapters.registry.db import RegistryError
from adapters.registry.models import CommandRow, DeviceVersionRow
from twin.limits import SETPOINT_KEY

KINDS: tuple[str, ...] = tuple(sorted(set(SETPOINT_KEY.values())))  # setpoint keys


def command_record(c: CommandRow) -> dict[str, Any]:
    return {"id": c.id, "command_id": c.command_id, "site_id": c.site_id,
            "device_id": c.device_id, "version": c.version, "kind": c.kind, "value": c.value,
            "source": c.source, "plan_id": c.plan_id, "status": c.status,
            "created_s": c.created_s, "due_s": c.due_s, "valid_until_s": c.valid_until_s,
            "issued_at_s": c.issued_at_s, "last_sent_s": c.last_sent_s, "attempts": c.attempts,
            "acked_s": c.acked_s, "reason": c.reason, "transitions": c.transitions,
            "created_by": c.created_by}


def next_versions(s: Session, device_ids: list[str]) -> dict[str, list[int]]:
    """Reserve the next versions: one per occurrence of a device in ``device_ids``.

    Returns the reserved versions per device, in rising order; versions
    only ever rise (the last one is kept in :class:`DeviceVersion`).
    """
    wanted: dict[str, int] = {}
    for d in device_ids:
        wanted[d] = wanted.get(d, 0) + 1
    last: dict[str, int] = {}
    keys = list(wanted)
    for i in range(0, len(keys), 5000):
        part = keys[i:i + 5000]
        for row in s.execute(select(DeviceVersionRow.device_id, DeviceVersionRow.version)
                             .where(DeviceVersionRow.device_id.in_(part)).with_for_update()):
            last[row.device_id] = row.version
    new_rows = [{"device_id": d, "version": n} for d, n in wanted.items() if d not in last]
    old_rows = [{"d": d, "v": last[d] + n} for d, n in wanted.items() if d in last]
    if new_rows:
        s.execute(insert(DeviceVersionRow), new_rows)
    if old_rows:
        t = DeviceVersionRow.__table__
        s.execute(update(t).where(t.c.device_id == bindparam("d"))
                  .values(version=bindparam("v")), old_rows)
    return {d: list(range(last.get(d, 0) + 1, last.get(d, 0) + n + 1))
            for d, n in wanted.items()}


def add_commands(s: Session, items: list[dict[str, Any]], t_s: float) -> list[dict[str, Any]]:
    """Store new commands.

    Each item has ``site_id``, ``device_id``, ``kind``, ``value``, ``due_s``,
    ``valid_until_s`` and ``source``, optionally ``plan_id`` and
    ``created_by``. Due ones (``due_s <= t_s``) get status ``pending``, later
    ones ``scheduled``. Versions are reserved when the command is handed to
    the publisher, not here.
    """
    for it in items:
        if it["kind"] not in KINDS:
            raise RegistryError(f"command kind {it['kind']!r} is not one of {KINDS}")
    if not items:
        return []
    rows = []
    for it in items:
        status = PENDING if it["due_s"] <= t_s else SCHEDULED
        rows.append({"command_id": uuid.uuid4().hex, "site_id": it["site_id"],
                     "device_id": it["device_id"], "version": None, "kind": it["kind"],
                     "value": float(it["value"]), "source": it["source"],
                     "plan_id": it.get("plan_id"), "status": status, "created_s": t_s,
                     "due_s": float(it["due_s"]), "valid_until_s": float(it["valid_until_s"]),
                     "issued_at_s": None, "last_sent_s": None, "attempts": 0, "acked_s": None,
                     "reason": None, "transitions": [[status, t_s]],
                     "created_by": it.get("created_by")})
    # RETURNING in batches (no parameter order: that falls back to one INSERT per row on
    # SQLite); rows are matched back by their unique command id.
    t = CommandRow.__table__
    ids = dict(s.execute(insert(t).returning(t.c.command_id, t.c.id), rows).all())
    for r in rows:
        r["id"] = ids[r["command_id"]]
    return rows


def due_commands(s: Session, t_s: float, limit: int = 100_000) -> list[dict[str, Any]]:
    """Commands due at ``t_s`` that have not been handed out (``scheduled`` or ``pending``)."""
    t = CommandRow.__table__  # Core rows: thousands of commands at one plan step
    q = (select(t).where(t.c.status.in_(PRE_STATES), t.c.due_s <= t_s)
         .order_by(t.c.due_s, t.c.id).limit(limit))
    return [dict(r._mapping) for r in s.execute(q)]


def mark_queued(s: Session, commands: list[dict[str, Any]], t_s: float) -> None:
    """Reserve versions for ``commands`` and move them to ``queued`` (sets ``version``)."""
    if not commands:
        return
    versions = next_versions(s, [c["device_id"] for c in commands])
    params = []
    for c in commands:
        c["version"] = versions[c["device_id"]].pop(0)
        c["status"] = QUEUED
        c["issued_at_s"] = t_s
        c["transitions"] = [*c.get("transitions", []), [QUEUED, t_s]]
        params.append({"i": c["id"], "v": c["version"], "tr": c["transitions"]})
    t = CommandRow.__table__
    s.execute(update(t).where(t.c.id == bindparam("i"))
              .values(version=bindparam("v"), status=QUEUED, issued_at_s=t_s,
                      transitions=bindparam("tr")), params)


def mark_handed_out(s: Session, ids: list[int], t_s: float) -> None:
    """Move due commands to ``queued``: the publisher has them (it sets the version)."""
    for i in range(0, len(ids), 5000):
        part = ids[i:i + 5000]
        s.execute(update(CommandRow).where(CommandRow.id.in_(part), CommandRow.status.in_(PRE_STATES))
                  .values(status=QUEUED, issued_at_s=t_s)
                  .execution_options(synchronize_session=False))


def refuse(s: Session, row_id: int, t_s: float, reason: str) -> None:
    """The publisher refused the command: it ends ``rejected`` with the reason."""
    c = s.get(CommandRow, row_id)
    if c is not None:
        _move(c, REJECTED, t_s, reason)


def set_state(s: Session, device_id: str, version: int, status: str, t_s: float,
              reason: str | None = None) -> dict[str, Any] | None:
    """Record a device's answer (or a publisher state) for ``version``; None when unknown.

    A command in a final state keeps it.
    """
    if status not in COMMAND_STATES:
        raise RegistryError(f"command status {status!r} is not one of {COMMAND_STATES}")
    c = s.scalar(select(CommandRow).where(CommandRow.device_id == device_id,
                                       CommandRow.version == version))
    if c is None:
        return None
    _move(c, status, t_s, reason)
    return command_record(c)


def _move(c: CommandRow, status: str, t_s: float, reason: str | None) -> None:
    if c.status in FINAL_STATES or c.status == status:
        return
    c.status = status
    c.transitions = [*(c.transitions or []), [status, t_s]]
    if status == SENT:
        c.last_sent_s = t_s
        c.attempts = (c.attempts or 0) + 1
    if status in TERMINAL_STATES:
        c.acked_s = t_s
    if reason:
        c.reason = reason


def cancel(s: Session, command_id: int, t_s: float) -> dict[str, Any]:
    c = s.get(CommandRow, command_id)
    if c is None:
        raise RegistryError(f"no command {command_id}")
    if c.status not in PRE_STATES:
        raise CommandStateError(f"command {command_id} is {c.status}; only scheduled or pending "
                                "commands can be cancelled")
    _move(c, CANCELLED, t_s, None)
    return command_record(c)


def supersede(s: Session, ids: list[int], t_s: float, reason: str) -> None:
    for c in s.scalars(select(CommandRow).where(CommandRow.id.in_(ids))):
        if c.status in PRE_STATES:
            _move(c, SUPERSEDED, t_s, reason)


def cancel_device_commands(s: Session, device_ids: list[str], t_s: float, reason: str
                           ) -> list[dict[str, Any]]:
    """Cancel the scheduled and pending commands of these devices (they were deleted);
    returns the cancelled records. Commands already handed to the publisher run their
    course there."""
    if not device_ids:
        return []
    rows = s.scalars(select(CommandRow).where(CommandRow.device_id.in_(device_ids),
                                           CommandRow.status.in_(PRE_STATES))).all()
    for c in rows:
        _move(c, "cancelled", t_s, reason)
    return [command_record(c) for c in rows]


def cancel_plan_commands(s: Session, plan_id: str, t_s: float) -> int:
    rows = s.scalars(select(CommandRow).where(CommandRow.plan_id == plan_id,
                                           CommandRow.status.in_(PRE_STATES))).all()
    for c in rows:
        _move(c, SUPERSEDED, t_s, f"plan {plan_id} no longer in force")
    return len(rows)


def expire_overdue(s: Session, t_s: float, timeout_s: float) -> list[dict[str, Any]]:
    """``queued``/``sent``/``received`` commands past ``valid_until_s`` or without an
    answer ``timeout_s`` after they were issued become ``expired``."""
    rows = s.scalars(select(CommandRow).where(CommandRow.status.in_((QUEUED, SENT, RECEIVED)),
                                           (CommandRow.valid_until_s < t_s)
                                           | (CommandRow.issued_at_s < t_s - timeout_s))).all()
    for c in rows:
        _move(c, EXPIRED, t_s, f"no final acknowledgement within {timeout_s:g} s")
    return [command_record(c) for c in rows]


def get_command(s: Session, command_id: int) -> dict[str, Any] | None:
    c = s.get(CommandRow, command_id)
    return None if c is None else command_record(c)


def list_commands(s: Session, *, site_id: str | None = None, device_id: str | None = None,
                  status: str | None = None, plan_id: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Commands, newest first, narrowed by whichever filters are given."""
    if status is not None and status not in COMMAND_STATES:
        raise RegistryError(f"command status {status!r} is not one of {COMMAND_STATES}")
    q = select(CommandRow).order_by(CommandRow.id.desc()).limit(limit)
    if site_id:
        q = q.where(CommandRow.site_id == site_id)
    if device_id:
        q = q.where(CommandRow.device_id == device_id)
    if status:
        q = q.where(CommandRow.status == status)
    if plan_id:
        q = q.where(CommandRow.plan_id == plan_id)
    return [command_record(c) for c in s.scalars(q)]


def last_plan_command_s(s: Session, plan_id: str) -> float | None:
    """When the newest command of a plan was created [s] (None: the plan has none)."""
    return s.scalar(select(func.max(CommandRow.created_s)).where(CommandRow.plan_id == plan_id))


def count_by_status(s: Session) -> dict[str, int]:
    rows = s.execute(select(CommandRow.status, func.count()).group_by(CommandRow.status)).all()
    return {status: int(n) for status, n in rows}


class CommandStateError(RegistryError):
    """A command state change its life cycle does not allow."""
