"""The MQTT adapter's ``CommandStore`` on the SQL registry, with write-behind.

The command publisher saves a record several times per command (queued,
published, sent, received, applied) while holding its lock, so
:class:`SqlCommandStore` keeps the newest record per command in memory and a
writer thread stores the changes in one transaction every ``flush_s``
(50 ms by default); :meth:`flush` writes at once. After :meth:`hold` (a
burst of setpoints just went out) the writer waits ``burst_hold_s`` (0.5 s)
before its next write: the database work then comes after the delivery, not
during it, and the burst's acknowledgements are folded into that write (one
INSERT per command instead of an INSERT and two UPDATEs). Versions are reserved in
blocks (``version_block`` per device and database write): after a crash the
next version starts above the block, so a version is never reused (versions
keep rising, with a gap).

A registry command created by the live service (``scheduled``/``pending``)
is tied to the publisher's record by :meth:`adopt`: the next new record for
that device takes over the registry row. :meth:`adopt` with the row's fields
instead of a row id lets a command go out *before* its row exists (a plan
step published at once); the writer then inserts the row with those fields.

A record the publisher expired because a newer version replaced it is stored
as ``superseded`` (not a failure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.mqtt.types import (
    EXPIRED,
    FINAL_STATES,
    PRE_STATES,
    PUBLISHER_STATES,
    QUEUED,
    RECEIVED,
    SENT,
    SUPERSEDED,
    TERMINAL_STATES,
    CommandRecord,
)
from adapters.registry.db import Registry
from adapters.registry.models import CommandRow, DeviceVersionRow

log = logging.getLogger(__name__)


class SqlCommandStore:
    """``adapters.mqtt.types.CommandStore`` backed by the registry's ``commands`` table.

    Parameters
    ----------
    registry : Registry
        An open registry.
    on_change : callable, optional
        Called with the registry record (dict) of each command after it is stored.
    flush_s : float
        Period of the writer thread [s].
    version_block : int
        Versions reserved per device and database write.
    burst_hold_s : float
        How long the writer waits after :meth:`hold` [s].
    """

    def __init__(self, registry: Registry, on_change: Callable[[dict[str, Any]], None] | None = None,
                 flush_s: float = 0.05, version_block: int = 1000, burst_hold_s: float = 0.5):
        self.registry = registry
        self.on_change = on_change
        self.flush_s = flush_s
        self.version_block = version_block
        self.burst_hold_s = burst_hold_s
        self._hold_until = 0.0  # time.monotonic() before which the writer does not write
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._cache: dict[str, Any] = {}  # command_id -> newest CommandRecord
        self._dirty: dict[str, Any] = {}
        # device_id -> registry row id, or the fields of a row to create, waiting for its record
        self._adopt: dict[str, int | dict[str, Any]] = {}
        self._row_of: dict[str, int] = {}  # command_id -> registry row id
        self._new_fields: dict[str, dict[str, Any]] = {}  # command_id -> fields of a new row
        self._version: dict[str, int] = {}  # device -> last version handed out
        self._reserved: dict[str, int] = {}  # device -> highest version persisted as reserved
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="command-store", daemon=True)
        self._thread.start()

    # -- the protocol ----------------------------------------------------------------
    def next_version(self, device_id: str) -> int:
        """Reserve the next version of ``device_id`` (durable before it is returned)."""
        with self._lock:
            if device_id not in self._version:
                with self.registry.session() as s:
                    row = s.get(DeviceVersionRow, device_id)
                    top = row.version if row is not None else 0
                self._version[device_id] = top
                self._reserved[device_id] = top
            v = self._version[device_id] + 1
            if v > self._reserved[device_id]:
                top = v + self.version_block - 1
                with self.registry.session() as s:
                    row = s.get(DeviceVersionRow, device_id, with_for_update=True)
                    if row is None:
                        s.add(DeviceVersionRow(device_id=device_id, version=top))
                    else:
                        v = max(v, row.version + 1)
                        top = v + self.version_block - 1
                        row.version = top
                self._reserved[device_id] = top
            self._version[device_id] = v
            return v

    def reserve(self, device_ids: list[str]) -> None:
        """Make sure the next version of each device is reserved, in one transaction
        (so that sending to thousands of devices needs no database write per device)."""
        with self._lock:
            need = [d for d in dict.fromkeys(device_ids)
                    if d not in self._version or self._version[d] + 1 > self._reserved[d]]
            if not need:
                return
            with self.registry.session() as s:
                held: dict[str, int] = {}
                for i in range(0, len(need), 5000):
                    part = need[i:i + 5000]
                    for r in s.execute(select(DeviceVersionRow.device_id, DeviceVersionRow.version)
                                       .where(DeviceVersionRow.device_id.in_(part))
                                       .with_for_update()):
                        held[r.device_id] = r.version
                new_rows, old_rows = [], []
                for d in need:
                    start = max(self._version.get(d, 0), held.get(d, 0))
                    top = start + self.version_block
                    self._version[d], self._reserved[d] = start, top
                    if d in held:
                        old_rows.append({"d": d, "v": top})
                    else:
                        new_rows.append({"device_id": d, "version": top})
                t = DeviceVersionRow.__table__
                if new_rows:
                    s.execute(insert(t), new_rows)
                if old_rows:
                    s.execute(update(t).where(t.c.device_id == bindparam("d"))
                              .values(version=bindparam("v")), old_rows)

    def adopt(self, device_id: str, row: int | dict[str, Any]) -> None:
        """The next new record for ``device_id`` belongs to registry row ``row`` (its id), or
        to a row to create with these fields (``source``, ``plan_id``, ``created_by``,
        ``due_s``, ``created_s``; the rest comes from the record)."""
        with self._lock:
            self._adopt[device_id] = row

    def hold(self) -> None:
        """A burst of commands goes out now: the writer's next write waits ``burst_hold_s``
        (an explicit :meth:`flush` does not). A hold in force is not extended, so that
        bursts in quick succession cannot keep the writer waiting."""
        with self._lock:
            now = time.monotonic()
            if now >= self._hold_until:
                self._hold_until = now + self.burst_hold_s

    def forget(self, device_ids: list[str]) -> None:
        """Drop what :meth:`adopt` left for these devices (their send was refused)."""
        with self._lock:
            for d in device_ids:
                self._adopt.pop(d, None)

    def save(self, record: Any) -> None:
        with self._lock:
            cid = record.command_id
            if cid not in self._cache and cid not in self._row_of and cid not in self._new_fields:
                row = self._adopt.pop(record.device_id, None)
                if isinstance(row, dict):
                    self._new_fields[cid] = row
                elif row is not None:
                    self._row_of[cid] = row
            self._cache[cid] = record
            self._dirty[cid] = record

    def get(self, command_id: str) -> Any:
        with self._lock:
            rec = self._cache.get(command_id)
        if rec is not None:
            return rec
        with self.registry.session() as s:
            c = s.scalar(select(CommandRow).where(CommandRow.command_id == command_id))
            if c is None or c.version is None:
                return None
            rec, row, final = to_command_record(c), c.id, c.status in FINAL_STATES
        if not final:  # it may be saved again: keep its row
            self._known_rows({command_id: row})
        return rec

    def open_commands(self) -> list[Any]:
        self.flush()
        with self.registry.session() as s:
            rows = s.scalars(select(CommandRow).where(
                CommandRow.status.in_((QUEUED, SENT, RECEIVED)))).all()
            recs = [to_command_record(c) for c in rows]
            row_of = {c.command_id: c.id for c in rows}
        self._known_rows(row_of)
        return recs

    def _known_rows(self, row_of: dict[str, int]) -> None:
        """Commands read back from the registry have their rows: saved later (superseded,
        acknowledged late), they must not take a row :meth:`adopt` left for a new command."""
        with self._lock:
            for cid, row in row_of.items():
                self._row_of.setdefault(cid, row)

    def history(self, device_id: str | None = None, limit: int = 100) -> list[Any]:
        self.flush()
        q = select(CommandRow).where(CommandRow.version.is_not(None)).order_by(
            CommandRow.issued_at_s.desc(), CommandRow.version.desc()).limit(limit)
        if device_id is not None:
            q = q.where(CommandRow.device_id == device_id)
        with self.registry.session() as s:
            return [to_command_record(c) for c in s.scalars(q)]

    # -- writing -----------------------------------------------------------------------
    def flush(self) -> int:
        """Write every pending change now; returns how many records were written."""
        with self._flush_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, {}
                rows = {cid: self._row_of.get(cid) for cid in dirty}
                fields = {cid: self._new_fields[cid] for cid in dirty if cid in self._new_fields}
            if not dirty:
                return 0
            try:
                recs = self._write(dirty, rows, fields)
            except IntegrityError:
                recs = self._write_apart(dirty, rows, fields)
            except Exception:
                self._keep(dirty)
                raise
            self._done(dirty, fields)
        if self.on_change is not None:
            for r in recs:
                try:
                    self.on_change(r)
                except Exception:
                    log.exception("command change listener failed")
        return len(recs)

    def _keep(self, dirty: dict[str, Any]) -> None:
        """Keep unwritten changes for the next flush (newer ones win)."""
        with self._lock:
            self._dirty = {**dirty, **self._dirty}

    def _done(self, dirty: dict[str, Any], fields: dict[str, dict[str, Any]]) -> None:
        """Forget what a flush no longer needs of these records (written or dropped)."""
        with self._lock:
            for cid, rec in dirty.items():
                if cid in fields:
                    self._new_fields.pop(cid, None)  # the row exists now
                if rec.terminal and cid not in self._dirty:
                    self._cache.pop(cid, None)
                    self._row_of.pop(cid, None)

    def _write_apart(self, dirty: dict[str, Any], rows: dict[str, int | None],
                     fields: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """After a batch broke a constraint: each record in its own transaction, so that
        one conflicting with the stored commands cannot hold the others back. Retrying it
        cannot help, so it is logged and dropped. Another error keeps the records not yet
        written for the next flush."""
        out: list[dict[str, Any]] = []
        items = list(dirty.items())
        for i, (cid, rec) in enumerate(items):
            try:
                out += self._write({cid: rec}, {cid: rows[cid]},
                                   {cid: fields[cid]} if cid in fields else {})
            except IntegrityError as exc:
                first = str(exc.orig).splitlines()[0] if exc.orig is not None else exc
                log.error("command %s (device %s, version %s, %s) conflicts with the stored "
                          "commands and is not stored: %s", cid, rec.device_id, rec.version,
                          rec.state, first)
            except Exception:
                self._done(dict(items[:i]), fields)
                self._keep(dict(items[i:]))
                raise
        return out

    def _write(self, dirty: dict[str, Any], rows: dict[str, int | None],
               fields: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Store the changed records in one transaction: Core rows, one executemany
        UPDATE and one INSERT (a plan step changes thousands of commands at once; ORM
        objects for them held the GIL for a second)."""
        t = CommandRow.__table__
        known = [cid for cid in dirty if cid not in fields]  # rows made here are new
        row_ids = [r for r in rows.values() if r is not None]
        with self.registry.session() as s:
            by_cid = {r.command_id: dict(r._mapping) for r in s.execute(
                select(t).where(t.c.command_id.in_(known)))} if known else {}
            by_row = {r.id: dict(r._mapping) for r in s.execute(
                select(t).where(t.c.id.in_(row_ids)))} if row_ids else {}
            out, changed, new = [], [], []
            for cid, rec in dirty.items():
                c = by_cid.get(cid) or by_row.get(rows[cid])  # type: ignore[arg-type]
                if c is None:
                    c = _new_row(rec, fields.get(cid))
                    new.append(c)
                else:
                    changed.append(c)
                _apply(c, rec)
                out.append(c)
            if changed:
                s.execute(update(t).where(t.c.id == bindparam("row_id"))
                          .values({k: bindparam(f"new_{k}") for k in _UPDATED}),
                          [{"row_id": c["id"], **{f"new_{k}": c[k] for k in _UPDATED}}
                           for c in changed])
            if new:
                ids = dict(s.execute(insert(t).returning(t.c.command_id, t.c.id), new).all())
                for c in new:
                    c["id"] = ids[c["command_id"]]
            return [{k: c.get(k) for k in _RECORD_KEYS} for c in out]

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            if time.monotonic() < self._hold_until:
                continue
            try:
                self.flush()
            except Exception:
                log.exception("writing command states failed; retrying")

    def close(self) -> None:
        """Stop the writer thread after a last flush. A last flush that fails is logged
        with what it could not store (there is no later one), not raised."""
        self._stop.set()
        self._thread.join(5)
        try:
            self.flush()
        except Exception:
            log.exception("the last write of command states failed: %d changes are not "
                          "stored", len(self._dirty))


# Columns a record change writes, and the keys of the registry record (commands.command_record).
_UPDATED: tuple[str, ...] = ("command_id", "version", "issued_at_s", "valid_until_s", "attempts",
                             "last_sent_s", "status", "acked_s", "reason", "transitions")
_RECORD_KEYS: tuple[str, ...] = ("id", "command_id", "site_id", "device_id", "version", "kind",
                                 "value", "source", "plan_id", "status", "created_s", "due_s",
                                 "valid_until_s", "issued_at_s", "last_sent_s", "attempts",
                                 "acked_s", "reason", "transitions", "created_by")


def _new_row(rec: Any, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The column values of a registry row for a record it has none for yet."""
    kind, value = next(iter(rec.setpoint.items()))
    f = fields or {}
    return {"command_id": rec.command_id, "site_id": rec.site_id, "device_id": rec.device_id,
            "kind": kind, "value": float(value), "source": f.get("source", "mqtt"),
            "plan_id": f.get("plan_id"), "created_by": f.get("created_by"),
            "status": rec.state, "created_s": f.get("created_s", rec.issued_at_s),
            "due_s": f.get("due_s", rec.issued_at_s), "valid_until_s": rec.valid_until_s,
            "transitions": [], "attempts": 0, "acked_s": None}


def _apply(c: dict[str, Any], rec: Any) -> None:
    """Bring the row values ``c`` up to the publisher's record ``rec``."""
    c["command_id"] = rec.command_id
    c["version"] = rec.version
    c["issued_at_s"] = rec.issued_at_s
    c["valid_until_s"] = rec.valid_until_s
    c["attempts"] = rec.attempts
    c["last_sent_s"] = rec.last_sent_s
    if c["status"] not in FINAL_STATES:
        c["status"] = rec.state
        if rec.state == EXPIRED and (rec.reason or "").startswith("superseded"):
            c["status"] = SUPERSEDED  # a newer version replaced it: not a failure
        if rec.state in TERMINAL_STATES and rec.transitions:
            c["acked_s"] = rec.transitions[-1][1]
    c["reason"] = rec.reason
    before = [t for t in (c.get("transitions") or []) if t[0] in PRE_STATES]
    c["transitions"] = before + [[st, t] for st, t in rec.transitions]


def to_command_record(c: CommandRow) -> CommandRecord:
    """The registry row as an ``adapters.mqtt.types.CommandRecord``."""
    state = c.status if c.status in PUBLISHER_STATES else EXPIRED
    return CommandRecord(c.command_id, c.site_id, c.device_id, int(c.version or 0),
                         {c.kind: c.value}, float(c.issued_at_s or c.created_s),
                         float(c.valid_until_s), state, c.reason, int(c.attempts or 0),
                         c.last_sent_s,
                         tuple((str(st), float(t)) for st, t in (c.transitions or [])
                               if st in PUBLISHER_STATES))
