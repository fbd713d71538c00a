"""The leader's WebSocket events over MQTT, for the API replicas.

With ``ECOGRID_EVENTS_RELAY=true`` the leader's :class:`EventsRelay` publishes
every event of its WebSocket hub in :data:`RELAYED` channels to
``ecogrid/events/{channel}`` (QoS 0, not retained; consecutive messages of a
channel batched as one JSON array); each replica's :class:`EventsFeed`
subscribes to ``ecogrid/events/#`` and hands them to its own hub. Topics come
from :mod:`adapters.mqtt.topics`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from adapters.mqtt.client import connect, make_client
from adapters.mqtt.topics import EVENTS_FILTER, events_topic

log = logging.getLogger(__name__)

#: Channels the leader relays to its replicas.
RELAYED: frozenset[str] = frozenset({"plans", "commands", "alerts", "kpis", "fleet"})


class EventsRelay:
    """The leader's side: every hub event also goes to ``ecogrid/events/{channel}``.

    :meth:`tap` is the hub's tap (the live service's WebSocket hub, on its event loop): it
    serializes the message and queues it; a thread publishes what piled up,
    consecutive messages of one channel as one JSON array (QoS 0, not retained).
    """

    def __init__(self, client_id: str = "ecogrid-service-events", max_queued: int = 100_000):
        self.client_id = client_id
        self.max_queued = max_queued
        self._queue: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self.published = 0  # MQTT messages (batches) sent
        self.dropped = 0

    def tap(self, channel: str, text: str) -> None:
        """Queue one event of ``channel``, already serialized as a JSON object."""
        if channel not in RELAYED:
            return
        with self._lock:
            if len(self._queue) >= self.max_queued:  # the broker is away: keep the newest
                self._queue.pop(0)
                self.dropped += 1
            self._queue.append((channel, text))
        self._wake.set()

    def start(self, url: str, wait_s: float = 10.0) -> EventsRelay:
        client = make_client(self.client_id)
        connected = threading.Event()
        client.on_connect = lambda c, u, flags, reason, props: connected.set()
        connect(client, url, blocking=False)
        client.loop_start()
        self._client = client
        if wait_s and not connected.wait(wait_s):
            self.stop()
            raise ConnectionError(f"events relay could not connect to {url} within {wait_s} s")
        self._thread = threading.Thread(target=self._run, name="ecogrid-events-relay",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Publish everything queued, in order, one message per run of one channel."""
        with self._lock:
            out, self._queue = self._queue, []
        if not out or self._client is None:
            return
        runs: list[tuple[str, list[str]]] = []
        for channel, text in out:
            if runs and runs[-1][0] == channel:
                runs[-1][1].append(text)
            else:
                runs.append((channel, [text]))
        with self._client.corked():
            for channel, texts in runs:
                payload = "[" + ",".join(texts) + "]"
                self._client.publish(events_topic(channel), payload, qos=0,
                                     retain=False)
                self.published += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()


class EventsFeed:
    """The replica's side: ``ecogrid/events/#`` into the replica's hub.

    Parameters
    ----------
    hub : object
        Where the events go: its ``publish_threadsafe(channel, message)`` is called from
        the MQTT thread (the replica's WebSocket hub).
    client_id : str
        MQTT client id (a non-persistent session).
    on_message : callable, optional
        ``fn(channel, message)`` for each event (the service keeps the newest KPIs).
    """

    def __init__(self, hub: Any, client_id: str,
                 on_message: Callable[[str, dict[str, Any]], None] | None = None):
        self.hub = hub
        self.client_id = client_id
        self.on_message = on_message
        self.subscribed = threading.Event()
        self.received = 0
        self._client: Any = None

    def start(self, url: str, wait_s: float = 10.0) -> EventsFeed:
        client = make_client(self.client_id, persistent=False)

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            if not getattr(reason, "is_failure", False):
                c.subscribe(EVENTS_FILTER, qos=0)

        client.on_connect = on_connect
        client.on_subscribe = lambda c, u, mid, codes, props: self.subscribed.set()
        client.on_disconnect = lambda c, u, flags, reason, props: self.subscribed.clear()
        client.on_message = self._on_message
        connect(client, url, blocking=False)
        client.loop_start()
        self._client = client
        if wait_s and not self.subscribed.wait(wait_s):
            self.stop()
            raise ConnectionError(f"events feed could not subscribe to {EVENTS_FILTER} at "
                                  f"{url} within {wait_s} s")
        return self

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        channel = msg.topic.rsplit("/", 1)[-1]
        if channel not in RELAYED:
            return
        try:
            items = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("events feed: %s is not JSON; ignored", msg.topic)
            return
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                continue
            self.received += 1
            if self.on_message is not None:
                self.on_message(channel, item)
            self.hub.publish_threadsafe(channel, item)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
