"""The command link of the leader: setpoints out over MQTT, their states into the registry.

:class:`MqttCommandLink` is the :class:`api.live.types.CommandLink` of a live
leader: the MQTT adapter's :class:`~adapters.mqtt.commands.CommandPublisher`
publishes versioned setpoints and follows their acknowledgements; the
registry's :class:`~adapters.registry.command_store.SqlCommandStore` keeps the
versions and writes every state change behind, and calls ``on_change`` with the
registry record (the runtime pushes it on the WebSocket and to the alerts).
After a command is handed over, only the publisher moves its state.

A plan step of :data:`BURST` or more commands makes the store hold its writes
for a moment, so the database work comes after the delivery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from adapters.mqtt.commands import CommandPublisher
from adapters.registry import Registry
from adapters.registry.command_store import SqlCommandStore
from twin.fleet import Fleet
from twin.limits import takes_setpoint

log = logging.getLogger(__name__)

BURST = 64  # commands sent at once after which the command store holds its writes


class MqttCommandLink:
    """Setpoints over MQTT, versions and states in the registry.

    Parameters
    ----------
    fleet : Fleet
        The devices that take setpoints.
    registry : Registry
        Where commands and versions live.
    url : str
        Broker URL.
    clock : callable
        ``() -> Unix s``.
    on_change : callable
        ``fn(record)`` with each command's registry record after a state change.
    client_id : str
        The publisher's MQTT client id (fixed: a persistent session).
    """

    def __init__(self, fleet: Fleet, registry: Registry, url: str, *,
                 clock: Callable[[], float], on_change: Callable[[dict[str, Any]], None],
                 client_id: str = "ecogrid-service-commands"):
        self.url = url
        self.registry = registry
        self.clock = clock
        self.on_change = on_change
        self.client_id = client_id
        self._fleet = fleet
        self.store: SqlCommandStore | None = None
        self.publisher: CommandPublisher | None = None

    # -- life cycle ------------------------------------------------------------------
    def start(self, wait_s: float = 10.0) -> None:
        """Connect the publisher; reserve every device's next versions in the background
        (the first approval then writes none)."""
        self.store = SqlCommandStore(self.registry, on_change=self.on_change)
        self.publisher = CommandPublisher(self._fleet, self.store, client_id=self.client_id,
                                          clock=self.clock)
        self.publisher.start(self.url, wait_s=wait_s)
        threading.Thread(target=self._reserve_all, name="ecogrid-versions", daemon=True).start()

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        if self.store is not None:
            self.store.close()

    def _parts(self) -> tuple[CommandPublisher, SqlCommandStore]:
        if self.publisher is None or self.store is None:
            raise ConnectionError("the command publisher is not started")
        return self.publisher, self.store

    def _reserve_all(self) -> None:
        fleet = self._fleet
        takes = takes_setpoint(fleet.device_type)
        try:
            self._parts()[1].reserve(fleet.device_id[takes].tolist())
        except Exception:
            log.exception("reserving command versions failed; they are reserved when sent")

    def set_fleet(self, fleet: Fleet) -> None:
        self._fleet = fleet
        if self.publisher is not None:
            self.publisher.set_fleet(fleet)

    # -- CommandLink -----------------------------------------------------------------
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.subscribed.is_set()

    def reserve(self, device_ids: list[str]) -> None:
        self._parts()[1].reserve(device_ids)

    def send_new(self, items: list[dict[str, Any]], now_s: float) -> None:
        self._parts()[1].reserve([it["device_id"] for it in items])
        self._send([(it, {"source": it["source"], "plan_id": it.get("plan_id"),
                          "created_by": it.get("created_by"), "due_s": it["due_s"],
                          "created_s": now_s}) for it in items], now_s)

    def send_many(self, commands: list[dict[str, Any]], now_s: float
                  ) -> list[tuple[dict[str, Any], str]]:
        try:
            self._send([(c, c["id"]) for c in commands], now_s)
            return []
        except (ValueError, ConnectionError) as exc:
            # A batch is all or nothing: send one by one to find the refused ones.
            log.info("batch of %d commands refused (%s); sending one by one", len(commands),
                     exc)
        refused = []
        for c in commands:
            try:
                self._send([(c, c["id"])], now_s)
            except (ValueError, ConnectionError) as exc:
                refused.append((c, str(exc)))
        return refused

    def _send(self, commands: list[tuple[dict[str, Any], Any]], now_s: float) -> None:
        """Tie each command to its registry row (an id, or the fields of a row the store
        writes later) and publish them all; a refused batch leaves no tie behind."""
        publisher, store = self._parts()
        for c, row in commands:
            store.adopt(c["device_id"], row)
        if len(commands) >= BURST:  # a plan step: its rows are written after it is out
            store.hold()
        try:
            publisher.send_many([(c["device_id"], c["value"],
                                  max(c["valid_until_s"], now_s + 1.0))
                                 for c, _ in commands], now_s=now_s)
        except (ValueError, ConnectionError):
            store.forget([c["device_id"] for c, _ in commands])
            raise
