"""Approvals: plans in, versioned setpoints out, acknowledgements back.

:class:`Approvals` owns the rules: a plan is approved or rejected only while
``proposed``; approving supersedes any plan in force; a plan in force
releases the setpoints of each step when the step starts (only values that
changed, all of them at the first step); manual, group and scheduled
setpoints are checked against each device's limits and go the same way.
Commands are handed to a :class:`api.live.types.CommandLink` (the MQTT command
publisher, :class:`api.live.commands.MqttCommandLink`): due commands in one
batch per tick (``send_many``); a plan step before its rows are written
(``send_new``): a crash in between loses only those rows, and the step is
released again (new versions, same values) after the restart. After hand-out
only the link moves a command's state. Devices deleted from the fleet get no
setpoint (:meth:`Approvals.set_fleet`), not even from a plan made before.
Every change is written to the registry (with the audit log) and announced
through ``notify(channel, msg)``. Time comes in as ``now_s`` (default: the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from adapters.registry import Registry, RegistryError
from adapters.registry import audit as audit_repo
from adapters.registry import commands as cmd_repo
from adapters.registry import fleet as fleet_repo
from adapters.registry import plans as plan_repo
from api.live.logs import log_context
from api.live.metrics import Metrics
from api.live.types import Clock, CommandLink, Notify
from twin.fleet import DEVICE_TYPES, Fleet
from twin.limits import SETPOINT_KEY, record_setpoint_bounds_kw

log = logging.getLogger(__name__)

IN_FORCE: tuple[str, ...] = ("approved", "dispatched")
SEND_CHUNK = 256  # commands of a plan step handed to the link at a time


class SetpointError(ValueError):
    """A setpoint refused before it goes out (unknown device, out of limits...)."""


class Approvals:
    """Plan decisions and command dispatch for one fleet.

    Parameters
    ----------
    registry : Registry
        Where plans, commands and the audit log live.
    fleet : Fleet
        The fleet (device ids, sites, types and limits).
    link : CommandLink or None
        Publishes commands; None keeps due commands ``pending`` (offline mode).
    notify : callable
        ``notify(channel, message)`` for the WebSocket hub.
    ack_timeout_s : float
        A sent command without an acknowledgement becomes ``failed`` after this [s].
    valid_for_s : float
        Validity of a manual setpoint [s].
    clock : callable
        ``() -> Unix s``, the time of calls that do not give ``now_s``.
    metrics : Metrics, optional
        Counts plans decided and commands sent.
    """

    def __init__(self, registry: Registry, fleet: Fleet, link: CommandLink | None,
                 notify: Notify, ack_timeout_s: float = 30.0, valid_for_s: float = 900.0, *,
                 clock: Clock = time.time, metrics: Metrics | None = None):
        self.registry = registry
        self.link = link
        self.notify = notify
        self.ack_timeout_s = ack_timeout_s
        self.valid_for_s = valid_for_s
        self.clock = clock
        self.metrics = metrics
        self._lock = threading.RLock()
        self.set_fleet(fleet)
        self._sent_step: dict[str, int] = {}  # plan id -> last step released
        self._plan_cache: dict[str, dict[str, Any]] = {}
        # Every plan step goes out inside this (the live service: telemetry decoding and
        # the garbage collector wait, so the step's commands get the CPU first).
        self.sending: Callable[[], contextlib.AbstractContextManager[Any]] = (
            contextlib.nullcontext)

    def set_fleet(self, fleet: Fleet) -> None:
        """Take the devices of ``fleet`` from now on (a deleted device gets no setpoint,
        not even from a plan made before it went)."""
        with self._lock:
            self.fleet = fleet
            self._site_of = {d: fleet.site_id[fleet.device_site[i]]
                             for i, d in enumerate(fleet.device_id.tolist())}
            self._records = {r["id"]: r for r in fleet.device_records()}

    def _now(self, now_s: float | None) -> float:
        return self.clock() if now_s is None else now_s

    def _sent(self, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.commands_sent.inc(n)

    def _decided(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.plans.labels(outcome).inc()

    async def run(self, tick_s: float, plan_ttl_s: float) -> None:
        """Every ``tick_s`` [s]: expire old plans, release plan steps, send due commands."""
        while True:
            await asyncio.sleep(tick_s)
            try:
                await asyncio.to_thread(self._tick_now, plan_ttl_s)
            except Exception:
                log.exception("dispatch tick failed; continuing")

    def _tick_now(self, plan_ttl_s: float) -> None:
        now = self.clock()
        self.expire(now, plan_ttl_s)
        self.tick(now)

    # -- plans ---------------------------------------------------------------------
    def add_plan(self, plan: dict[str, Any], now_s: float | None = None) -> dict[str, Any]:
        """Store a freshly computed plan as ``proposed``; older proposals are superseded."""
        with self._lock, self.registry.session() as s:
            for old in plan_repo.plans_in(s, ("proposed",), with_setpoints=False):
                plan_repo.set_status(s, old["id"], "superseded", reason=f"newer plan {plan['id']}")
                self.notify("plans", {"event": "superseded", "plan_id": old["id"]})
            rec = plan_repo.add_plan(s, plan)
        self.registry.checkpoint()  # now, not in the commit of its approval
        # Keep the newest proposal's series at hand: approving it then reads no JSON.
        self._plan_cache = {plan["id"]: plan["setpoints"]}
        self.notify("plans", {"event": "proposed", "plan": _summary(rec)})
        return rec

    def approve(self, plan_id: str, user: str, now_s: float | None = None) -> dict[str, Any]:
        """Approve a proposed plan and release its current step's setpoints at once."""
        # Inside ``sending`` from the start: the approval's own transaction comes first too.
        with log_context(plan_id=plan_id), self.sending():
            t0 = time.perf_counter()
            rec = self._approve(plan_id, user, self._now(now_s))
            log.info("plan approved by %s; its current step went out in %.0f ms", user,
                     (time.perf_counter() - t0) * 1000.0)
        self._decided("approved")
        return rec

    def _approve(self, plan_id: str, user: str, now_s: float) -> dict[str, Any]:
        with self._lock:
            with self.registry.session() as s:
                plan = plan_repo.get_plan(s, plan_id, with_setpoints=False)
                if plan is None:
                    raise RegistryError(f"no plan {plan_id!r}")
                if plan["status"] == "proposed" and now_s >= plan["start_s"] + plan["horizon_s"]:
                    plan_repo.move_status(s, plan_id, "expired", reason="horizon over")
                    s.commit()  # the expiry stays; the refusal below rolls back nothing
                    self.notify("plans", {"event": "expired", "plan_id": plan_id})
                    raise plan_repo.PlanStateError(f"plan {plan_id} has expired (its horizon "
                                                   "is over)")
                plan_repo.move_status(s, plan_id, "approved", user=user, t_s=now_s)
                for old in plan_repo.plans_in(s, IN_FORCE, with_setpoints=False):
                    if old["id"] != plan_id:
                        plan_repo.move_status(s, old["id"], "superseded",
                                              reason=f"plan {plan_id} approved")
                        cmd_repo.cancel_plan_commands(s, old["id"], now_s)
                        self._sent_step.pop(old["id"], None)
                audit_repo.record(s, now_s, user, "plan.approve", f"plan:{plan_id}")
                if self.link is not None:  # its current step goes out right below
                    plan_repo.move_status(s, plan_id, "dispatched")
                rec = plan_repo.get_plan(s, plan_id, with_setpoints=False)
                assert rec is not None
                approved = {**rec, "status": "approved"}
            self.notify("plans", {"event": "approved", "plan": approved})
            if rec["status"] == "dispatched":
                self.notify("plans", {"event": "dispatched", "plan_id": plan_id})
            # Straight to the devices: no tick, no second look at the registry.
            _, queued = self._release_step(rec, now_s, fresh=True)
            if queued:
                self.dispatch_due(now_s)
        return rec

    def reject(self, plan_id: str, user: str, now_s: float | None = None,
               reason: str | None = None) -> dict[str, Any]:
        now_s = self._now(now_s)
        with log_context(plan_id=plan_id), self._lock, self.registry.session() as s:
            rec = plan_repo.set_status(s, plan_id, "rejected", user=user, t_s=now_s,
                                       reason=reason)
            audit_repo.record(s, now_s, user, "plan.reject", f"plan:{plan_id}",
                              {"reason": reason} if reason else None)
        self.notify("plans", {"event": "rejected", "plan": rec})
        self._decided("rejected")
        return rec

    def expire(self, now_s: float, ttl_s: float) -> None:
        """Expire proposals older than ``ttl_s`` and plans in force past their horizon."""
        with self._lock, self.registry.session() as s:
            for p in plan_repo.plans_in(s, ("proposed", *IN_FORCE), with_setpoints=False):
                over = now_s >= p["start_s"] + p["horizon_s"]
                stale = p["status"] == "proposed" and now_s >= p["created_s"] + ttl_s
                if over or stale:
                    plan_repo.set_status(s, p["id"], "expired",
                                         reason="horizon over" if over else "not decided in time")
                    self._sent_step.pop(p["id"], None)
                    self.notify("plans", {"event": "expired", "plan_id": p["id"]})

    def _release_plan_steps(self, now_s: float) -> tuple[int, int]:
        """Create the commands of the current step of the plan in force (once per step);
        returns how many went out at once and how many were queued as ``pending``."""
        sent = queued = 0
        with self.registry.session() as s:
            in_force = plan_repo.plans_in(s, IN_FORCE, with_setpoints=False)
        for plan in in_force:
            n_sent, n_queued = self._release_step(plan, now_s)
            sent += n_sent
            queued += n_queued
        return sent, queued

    def _release_step(self, plan: dict[str, Any], now_s: float, fresh: bool = False
                      ) -> tuple[int, int]:
        """Release ``plan``'s step at ``now_s`` unless it went out already (``fresh``: the
        plan was just approved, nothing of it went out); returns (sent, queued)."""
        k = math.floor((now_s - plan["start_s"]) / plan["step_s"])
        if k < 0 or k >= plan["n_steps"]:
            return 0, 0
        last = self._sent_step.get(plan["id"])
        if last is None and plan["status"] == "dispatched" and not fresh:
            # After a restart: the last step released is that of the plan's newest command.
            with self.registry.session() as s:
                t_last = cmd_repo.last_plan_command_s(s, plan["id"])
            if t_last is not None:
                last = math.floor((t_last - plan["start_s"]) / plan["step_s"])
        if last is not None and last >= k:
            return 0, 0
        items = []
        site_of = self._site_of
        for kind, series in self._setpoints(plan["id"]).items():
            for device_id, values in series.items():
                if device_id not in site_of:  # deleted from the fleet since the plan was made
                    continue
                v = values[k]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if last is not None and values[last] == v:
                    continue
                items.append({"device_id": device_id, "site_id": site_of[device_id],
                              "kind": kind, "value": v, "due_s": now_s,
                              "valid_until_s": plan["start_s"] + (k + 1) * plan["step_s"],
                              "source": "plan", "plan_id": plan["id"],
                              "created_by": plan["decided_by"]})
        if plan["status"] == "approved" and self.link is not None:  # approved while offline
            with self.registry.session() as s:
                plan_repo.move_status(s, plan["id"], "dispatched")
            self.notify("plans", {"event": "dispatched", "plan_id": plan["id"]})
        left = self._send_new(items, now_s)
        if left:
            with self.registry.session() as s:
                cmd_repo.add_commands(s, left, now_s)  # pending: dispatch_due sends them
        self._sent_step[plan["id"]] = k
        return len(items) - len(left), len(left)

    def _send_new(self, items: list[dict[str, Any]], now_s: float) -> list[dict[str, Any]]:
        """Publish a plan step's commands before their registry rows exist (the link's
        command store writes them behind): an approval reaches the devices without
        waiting for the database. They go in chunks of :data:`SEND_CHUNK`, so that the
        broker works on the first while the next are prepared. Returns the items not
        sent (all when the link cannot send new commands; from the chunk on that the
        link refused, which then went out in none of its commands)."""
        if self.link is None:
            return items
        with self.sending():
            for start in range(0, len(items), SEND_CHUNK):
                chunk = items[start:start + SEND_CHUNK]
                try:
                    self.link.send_new(chunk, now_s)
                except (ValueError, ConnectionError) as exc:
                    log.info("%d commands of a plan step refused (%s); queueing them",
                             len(items) - start, exc)
                    return items[start:]
                self._sent(len(chunk))
        return []

    def _setpoints(self, plan_id: str) -> dict[str, Any]:
        cached = self._plan_cache.get(plan_id)
        if cached is None:
            with self.registry.session() as s:
                plan = plan_repo.get_plan(s, plan_id)
            cached = plan["setpoints"] if plan else {}
            self._plan_cache = {plan_id: cached}  # only the plan in force is kept
        return cached

    # -- setpoints -----------------------------------------------------------------
    def check_setpoint(self, device_id: str, value: float, kind: str | None = None) -> str:
        """Validate a setpoint against the device's limits; returns its kind."""
        rec = self._records.get(device_id)
        if rec is None:
            raise SetpointError(f"no device {device_id!r}")
        expected = SETPOINT_KEY.get(rec["type"])
        if expected is None:
            raise SetpointError(f"device {device_id!r} is a {rec['type']} and takes no setpoint")
        if kind is not None and kind != expected:
            raise SetpointError(f"device {device_id!r} ({rec['type']}) takes {expected!r}, "
                                f"not {kind!r}")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise SetpointError(f"setpoint for {device_id!r} must be a finite number [kW]")
        lo, hi = record_setpoint_bounds_kw(rec)
        if not lo <= value <= hi:
            raise SetpointError(f"setpoint {value} kW for {device_id!r} is outside its limits "
                                f"[{lo:g}, {hi:g}] kW")
        return expected

    def send_setpoints(self, targets: list[tuple[str, float]], user: str,
                       now_s: float | None = None, due_s: list[float] | None = None,
                       source: str = "manual") -> list[dict[str, Any]]:
        """Queue manual setpoints ``(device_id, value [kW])``, at ``due_s`` (default now).

        Every target is checked first; one bad target refuses the whole request.
        """
        now_s = self._now(now_s)
        if not targets:
            raise SetpointError("no device to send a setpoint to")
        problems, items = [], []
        times = due_s if due_s is not None else [now_s] * len(targets)
        if len(times) != len(targets):
            raise SetpointError("give one time per setpoint")
        for (device_id, value), t in zip(targets, times, strict=True):
            try:
                kind = self.check_setpoint(device_id, value)
            except SetpointError as exc:
                problems.append(str(exc))
                continue
            due = max(t, now_s)
            items.append({"device_id": device_id, "site_id": self._site_of[device_id],
                          "kind": kind, "value": value, "due_s": due,
                          "valid_until_s": due + self.valid_for_s, "source": source,
                          "created_by": user})
        if problems:
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise SetpointError("; ".join(problems[:10]) + more)
        with self._lock:
            with self.registry.session() as s:
                recs = cmd_repo.add_commands(s, items, now_s)
                audit_repo.record(s, now_s, user, "setpoint.send",
                                  f"devices:{len(items)}",
                                  {"devices": [it["device_id"] for it in items[:50]],
                                   "values": [it["value"] for it in items[:50]],
                                   "due_s": [it["due_s"] for it in items[:50]]})
            for r in recs[:200]:
                self.notify("commands", {"event": r["status"], "command": r})
            if any(r["status"] == "pending" for r in recs):
                self.dispatch_due(now_s)
        return recs

    def select_devices(self, *, site_id: str | None = None, feeder_id: str | None = None,
                       type: str | None = None, tag: str | None = None,
                       tags: dict[str, list[str]] | None = None) -> list[str]:
        """Device ids of a group: by site, feeder, type and/or tag (all given must match)."""
        f = self.fleet
        mask = np.ones(f.n_devices, dtype=bool)
        if site_id is not None:
            if site_id not in f.site_row:
                raise SetpointError(f"no site {site_id!r}")
            mask &= f.device_site == f.site_row[site_id]
        if feeder_id is not None:
            if feeder_id not in f.feeder_row:
                raise SetpointError(f"no feeder {feeder_id!r}")
            mask &= f.site_feeder[f.device_site] == f.feeder_row[feeder_id]
        if type is not None:
            if type not in DEVICE_TYPES:
                raise SetpointError(f"type {type!r} is not one of {DEVICE_TYPES}")
            mask &= f.device_type == DEVICE_TYPES.index(type)
        ids = f.device_id[mask].tolist()
        if tag is not None:
            tagged = set((tags or {}).get(tag, []))
            ids = [d for d in ids if d in tagged]
        if not ids:
            raise SetpointError("the group has no device")
        return ids

    def setpoint(self, device_id: str, value_kw: float, user: str,
                 at_s: list[float] | None = None, values_kw: list[float] | None = None
                 ) -> list[dict[str, Any]]:
        """One manual setpoint now, one at a time, or a series (``at_s`` with
        ``values_kw``) for one device."""
        if values_kw is not None:
            if at_s is None or len(at_s) != len(values_kw):
                raise SetpointError("a series needs as many times (at_s) as values "
                                    "(values_kw)")
            return self.send_setpoints([(device_id, v) for v in values_kw], user, due_s=at_s)
        return self.send_setpoints([(device_id, value_kw)], user, due_s=at_s)

    def group_setpoint(self, selector: dict[str, Any], value_kw: float, user: str,
                       at_s: float | None = None) -> list[dict[str, Any]]:
        """The same setpoint to every device of a group (``site_id``, ``feeder_id``,
        ``type``, ``tag``: all given must match), now or at ``at_s`` [Unix s]."""
        tags = None
        if selector.get("tag"):
            with self.registry.session() as s:
                page, _ = fleet_repo.list_devices(s, tag=selector["tag"], limit=10**9)
            tags = {selector["tag"]: [d["id"] for d in page]}
        ids = self.select_devices(**selector, tags=tags)
        now = self.clock()
        due = [at_s if at_s is not None else now] * len(ids)
        return self.send_setpoints([(d, value_kw) for d in ids], user, now, due_s=due)

    def cancel(self, command_id: int, user: str, now_s: float | None = None
               ) -> dict[str, Any]:
        now_s = self._now(now_s)
        with self._lock, self.registry.session() as s:
            rec = cmd_repo.cancel(s, command_id, now_s)
            audit_repo.record(s, now_s, user, "command.cancel", f"command:{command_id}")
        self.notify("commands", {"event": "cancelled", "command": rec})
        return rec

    # -- the loop ------------------------------------------------------------------
    def tick(self, now_s: float | None = None) -> int:
        """Release plan steps, send due commands, fail overdue ones; returns commands sent."""
        now_s = self._now(now_s)
        with self._lock:
            n = self.dispatch_due(now_s)  # first, so that a plan step released now wins
            sent, queued = self._release_plan_steps(now_s)
            n += sent
            if queued:
                n += self.dispatch_due(now_s)
            with self.registry.session() as s:
                expired = cmd_repo.expire_overdue(s, now_s, self.ack_timeout_s)
            for r in expired[:200]:
                self.notify("commands", {"event": "expired", "command": r})
            return n

    def dispatch_due(self, now_s: float) -> int:
        """Publish every due command (the newest per device; older ones are superseded)."""
        if self.link is None:
            return 0
        with self._lock:
            with self.registry.session() as s:
                due = cmd_repo.due_commands(s, now_s)
            if not due:
                return 0
            newest: dict[str, dict[str, Any]] = {}
            stale = []
            for c in due:
                prev = newest.get(c["device_id"])
                if prev is not None:
                    stale.append(prev)
                newest[c["device_id"]] = c
            out = list(newest.values())
            with self.registry.session() as s:
                cmd_repo.mark_handed_out(s, [c["id"] for c in out], now_s)
                if stale:
                    cmd_repo.supersede(s, [c["id"] for c in stale], now_s,
                                       "a newer setpoint for the device went out")
            self.link.reserve([c["device_id"] for c in out])
            refused = self.link.send_many(out, now_s)
            if refused:
                with self.registry.session() as s:
                    for c, why in refused:
                        cmd_repo.refuse(s, c["id"], now_s, why)
            self._sent(len(out) - len(refused))
            return len(out) - len(refused)


def _summary(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k != "setpoints"}
