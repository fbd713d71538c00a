"""Boundary types of the MQTT adapter: reject reasons, command states and records, the
store protocol.

A :class:`CommandStore` keeps command records and, per device, the last
setpoint version handed out, so versions keep rising across restarts.
:class:`adapters.mqtt.commands.MemoryCommandStore` keeps them in memory;
:class:`adapters.registry.command_store.SqlCommandStore` in the SQL registry
(durable: the live service's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Why an inbound message (or one value in it) was refused; counted per reason.
REJECT_REASONS: tuple[str, ...] = (
    "bad_topic",         # topic does not match the protocol
    "too_large",         # payload over MAX_PAYLOAD_BYTES
    "malformed_json",    # payload is not JSON
    "wrong_type",        # JSON of the wrong shape or a value that is not a number
    "not_finite",        # NaN or infinity
    "bad_timestamp",     # ts missing a number or not positive
    "future_timestamp",  # ts more than MAX_FUTURE_S ahead of the ingest's clock
    "unknown_site",
    "unknown_device",    # device id unknown or not at that site
    "out_of_range",      # value outside the metric's physical range
    "too_many_metrics",  # a new metric name beyond the telemetry's column limit
    "bad_status",        # status payload other than online/offline
)

# Command states, in life-cycle order (docs/protocol.md, "Command life cycle").
# The publisher's states (the MQTT protocol's; a CommandRecord is in one of them):
# queued -> sent (broker PUBACK) -> received (device ack) -> applied | rejected | expired.
QUEUED, SENT, RECEIVED, APPLIED, REJECTED, EXPIRED = (
    "queued", "sent", "received", "applied", "rejected", "expired")
PUBLISHER_STATES: tuple[str, ...] = (QUEUED, SENT, RECEIVED, APPLIED, REJECTED, EXPIRED)
TERMINAL_STATES = frozenset({APPLIED, REJECTED, EXPIRED})  # the publisher's final states
# States only the registry's commands have: before the publisher, scheduled (due
# later) or pending (due, not yet handed out); instead of it, cancelled (by an
# operator) or superseded (a newer command or plan for the device replaced it).
SCHEDULED, PENDING, CANCELLED, SUPERSEDED = "scheduled", "pending", "cancelled", "superseded"
PRE_STATES: tuple[str, ...] = (SCHEDULED, PENDING)
COMMAND_STATES: tuple[str, ...] = (*PRE_STATES, *PUBLISHER_STATES, CANCELLED, SUPERSEDED)
OPEN_STATES: tuple[str, ...] = (SCHEDULED, PENDING, QUEUED, SENT, RECEIVED)
FINAL_STATES = frozenset(COMMAND_STATES) - frozenset(OPEN_STATES)
# What a device's acknowledgement may say.
ACK_STATUSES = frozenset({RECEIVED, APPLIED, REJECTED})


@dataclass(frozen=True)
class CommandRecord:
    """One setpoint command and where it stands.

    ``setpoint`` is the protocol's setpoint object (``{"p_kw": x}`` or
    ``{"p_limit_kw": x}``); times are Unix seconds; ``transitions`` lists
    ``(state, t_s)`` from ``queued`` on; ``attempts`` counts publishes.
    """

    command_id: str
    site_id: str
    device_id: str
    version: int
    setpoint: dict[str, float]
    issued_at_s: float
    valid_until_s: float
    state: str = QUEUED
    reason: str | None = None
    attempts: int = 0
    last_sent_s: float | None = None
    transitions: tuple[tuple[str, float], ...] = field(default=())

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def moved(self, state: str, t_s: float, reason: str | None = None) -> CommandRecord:
        """A copy in ``state`` with the transition recorded."""
        # The constructor, not dataclasses.replace (half the cost, and a plan step makes
        # thousands of these on the network thread).
        return CommandRecord(self.command_id, self.site_id, self.device_id, self.version,
                             self.setpoint, self.issued_at_s, self.valid_until_s, state,
                             reason if reason is not None else self.reason, self.attempts,
                             self.last_sent_s, (*self.transitions, (state, t_s)))

    def payload(self) -> dict[str, Any]:
        """The protocol's setpoint message body."""
        return {"command_id": self.command_id, "version": self.version,
                "issued_at": self.issued_at_s, "valid_until": self.valid_until_s,
                "setpoint": dict(self.setpoint)}

    def to_dict(self) -> dict[str, Any]:
        return {"command_id": self.command_id, "site_id": self.site_id,
                "device_id": self.device_id, "version": self.version,
                "setpoint": dict(self.setpoint), "issued_at_s": self.issued_at_s,
                "valid_until_s": self.valid_until_s, "state": self.state,
                "reason": self.reason, "attempts": self.attempts,
                "last_sent_s": self.last_sent_s,
                "transitions": [list(t) for t in self.transitions]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CommandRecord:
        return cls(d["command_id"], d["site_id"], d["device_id"], int(d["version"]),
                   dict(d["setpoint"]), float(d["issued_at_s"]), float(d["valid_until_s"]),
                   d["state"], d.get("reason"), int(d.get("attempts", 0)),
                   d.get("last_sent_s"),
                   tuple((str(s), float(t)) for s, t in d.get("transitions", ())))


class CommandStore(Protocol):
    """Where command records and per-device setpoint versions live.

    Implementations must be safe to call from two threads (the publisher's
    network thread and its caller).
    """

    def next_version(self, device_id: str) -> int:
        """Reserve and persist the next setpoint version of a device (1, 2, ...)."""
        ...

    def save(self, record: CommandRecord) -> None:
        """Insert or replace the record with this ``command_id``."""
        ...

    def get(self, command_id: str) -> CommandRecord | None:
        """The record with this id, or None."""
        ...

    def open_commands(self) -> list[CommandRecord]:
        """Records not in a terminal state (to resume tracking after a restart)."""
        ...

    def history(self, device_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        """Newest first: the last ``limit`` records, of one device or of all."""
        ...
