"""Telemetry ingest: MQTT messages in, the twin's telemetry arrays out.

:class:`TelemetryIngest` owns one paho connection
(:class:`adapters.mqtt.client.FastClient`), whose network thread only appends
``(topic, payload)`` of each PUBLISH to a queue; a worker thread takes everything
queued, decodes it in one :class:`~adapters.mqtt.decode.BatchDecoder` call and
writes the arrays into a :class:`twin.telemetry.Telemetry` in one vectorized
step, then applies status events and refreshes the stale flags.

Scale-out, two ways (docs/mqtt-scaling.md):

* ``shared_group="ecogrid-ingest"`` subscribes to every site filter as an MQTT
  shared subscription (``$share/ecogrid-ingest/sites/+/telemetry``, ...): the
  broker hands each message to one member of the group, so any number of
  workers split the load, but any worker may see any device, and each
  worker's arrays hold only what it saw (:class:`adapters.history.History`
  merges their histories by time stamp);
* ``partition=(k, n)`` subscribes only to the sites whose id hashes to ``k``
  modulo ``n`` (CRC-32), so ``n`` workers share the fleet and each device's
  state (values, online and stale flags) lives in exactly one worker.

Typical use (the live service)::

    telemetry = Telemetry(fleet, expected_interval_s=1.0)
    ingest = TelemetryIngest(fleet, telemetry, client_id="ecogrid-ingest-0")
    ingest.add_listener("batch", on_batch)        # fn(batch: Batch)
    ingest.add_listener("status", on_status)      # fn(event: StatusEvent)
    ingest.start("mqtt://broker:1883")
    ...
    ingest.counters()                             # messages, values, rejects by reason
    ingest.stop()
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt.client import connect, make_client, reason_failed
from adapters.mqtt.decode import Batch, BatchDecoder
from adapters.mqtt.topics import telemetry_filters, validate_group
from twin.fleet import Fleet
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusEvent:
    """Online/offline or stale flags that changed.

    ``kind`` is ``"gateway"`` (``rows`` are site rows), ``"device"`` (device
    rows whose effective online flag changed) or ``"stale"`` (device rows
    whose stale flag changed); ``values`` holds the new flags; ``t_s`` the time
    of the change [Unix s].
    """

    kind: str
    rows: np.ndarray
    values: np.ndarray
    t_s: float


def owns_site(site_id: str, partition: tuple[int, int]) -> bool:
    """Whether worker ``k`` of ``n`` owns a site (CRC-32 of the id modulo ``n``)."""
    k, n = partition
    return n <= 1 or zlib.crc32(site_id.encode()) % n == k


class RateLimitedLog:
    """At most one warning per ``interval_s`` summarizing the rejects since the last one."""

    def __init__(self, interval_s: float = 10.0):
        self.interval_s = interval_s
        self._last = -float("inf")
        self._pending: Counter[str] = Counter()

    def add(self, rejects: Counter[str], now: float) -> None:
        self._pending.update(rejects)
        if self._pending and now - self._last >= self.interval_s:
            log.warning("telemetry refused: %s", dict(self._pending))
            self._pending.clear()
            self._last = now


class TelemetryIngest:
    """Subscribe to telemetry and status topics and keep :class:`Telemetry` up to date.

    Parameters
    ----------
    fleet : Fleet
        The fleet whose devices are accepted.
    telemetry : Telemetry, optional
        Arrays to write into; a new one (1 s expected interval) when omitted.
    client_id : str
        MQTT client id; keep it stable so a persistent session is found again.
    partition : (int, int)
        ``(k, n)``: this worker takes the sites owned by worker ``k`` of ``n``.
    shared_group : str, optional
        Subscribe as a member of this MQTT shared-subscription group
        (``$share/{group}/sites/+/...``): each message goes to one member;
        every member may get any device's messages. Excludes a partition
        with ``n > 1``. Retained messages (the gateways' last status) are not
        delivered to shared subscriptions, and the online and stale flags
        only reflect what this member saw.
    persistent : bool
        Persistent session (clean start off, session expiry), so QoS 1
        messages sent while the ingest was away arrive when it returns.
    clock : callable
        ``() -> Unix s``; the receive time used for values without a time stamp,
        for the future-time stamp check and the stale flags.
    batch_interval_s : float
        How long the worker waits for more messages before decoding [s].
    stale_check_s : float
        How often the stale flags are refreshed [s].
    qos : int
        Subscription QoS (1: nothing is lost while the session lives).
    ca_file : str, optional
        CA bundle for ``mqtts://`` brokers with a private CA.
    mqtt_version : int
        5 (default: session expiry) or 311 (cheaper per message in paho; the
        broker decides how long a persistent session lives).
    """

    def __init__(self, fleet: Fleet, telemetry: Telemetry | None = None, *,
                 client_id: str = "ecogrid-ingest", partition: tuple[int, int] = (0, 1),
                 shared_group: str | None = None,
                 persistent: bool = True, clock: Callable[[], float] = time.time,
                 batch_interval_s: float = 0.02, stale_check_s: float = 1.0,
                 qos: int = 1, ca_file: str | None = None, mqtt_version: int = 5):
        k, n = partition
        if not (n >= 1 and 0 <= k < n):
            raise ValueError(f"partition must be (k, n) with 0 <= k < n, got {partition}")
        if shared_group is not None:
            validate_group(shared_group)
            if n > 1:
                raise ValueError(f"shared_group={shared_group!r} and partition={partition} are "
                                 "alternatives: a shared group already splits the messages")
        self.fleet = fleet
        self.telemetry = telemetry if telemetry is not None else Telemetry(fleet)
        self.client_id = client_id
        self.partition = (int(k), int(n))
        self.shared_group = shared_group
        self.persistent = persistent
        self.clock = clock
        self.batch_interval_s = batch_interval_s
        self.stale_check_s = stale_check_s
        self.qos = qos
        self.ca_file = ca_file
        self.mqtt_version = mqtt_version
        self.decoder = BatchDecoder(fleet, self.telemetry.metric_column)
        self.sites = [s for s in fleet.site_id.tolist() if owns_site(s, self.partition)]
        self._queue: deque[tuple[str, bytes]] = deque()
        self._received = 0  # PUBLISH packets received (network thread)
        self._unsubscribed = threading.Event()
        self._leaving = False  # a shared-group member on its way out: do not resubscribe
        self._listeners: dict[str, list[Callable[[Any], None]]] = {"batch": [], "status": [],
                                                                   "fleet": []}
        self._rejects: Counter[str] = Counter()
        self._messages = 0
        self._values = 0
        self._batches = 0
        self._stats_lock = threading.Lock()
        self._ratelog = RateLimitedLog()
        self._client = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._process_lock = threading.RLock()  # set_fleet decodes inside it
        self._pauses = 0  # open paused() blocks
        self._pause_max_s = 1.0
        self._pause_lock = threading.Lock()
        self._resumed = threading.Event()
        self._resumed.set()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connects = 0

    # -- hooks -----------------------------------------------------------------
    def add_listener(self, event: str, fn: Callable[[Any], None]) -> None:
        """Call ``fn`` on ``"batch"`` (a :class:`Batch` written into the twin),
        ``"status"`` (a :class:`StatusEvent`) or ``"fleet"`` (the new :class:`Fleet`, from
        :meth:`set_fleet`, before any batch of its rows). Listeners run on the worker
        thread and must be quick; an exception in one is logged, not raised."""
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; use one of {sorted(self._listeners)}")
        self._listeners[event].append(fn)

    def _emit(self, event: str, arg: Any) -> None:
        for fn in self._listeners[event]:
            try:
                fn(arg)
            except Exception:
                log.exception("%s listener failed", event)

    # -- subscriptions ---------------------------------------------------------
    def topic_filters(self) -> list[str]:
        """The topic filters this worker subscribes to."""
        if self.shared_group is not None:
            return telemetry_filters(shared_group=self.shared_group)
        if self.partition[1] == 1:
            return telemetry_filters()
        return telemetry_filters(self.sites)

    def set_fleet(self, fleet: Fleet) -> None:
        """Take a new fleet: what is queued is decoded for the old one first, then the
        twin's arrays are resized (rows kept by device id) and the decoder switched, in one
        step that no decoding interleaves. A site partition subscribes to its new sites'
        topics and leaves those of sites that went."""
        with self._process_lock:
            self.process_pending()
            old_sites = set(self.sites)
            self.telemetry.resize(fleet)
            self.fleet = fleet
            self.decoder = BatchDecoder(fleet, self.telemetry.metric_column)
            self.sites = [s for s in fleet.site_id.tolist() if owns_site(s, self.partition)]
            self._emit("fleet", fleet)  # before the next batch, which has the new rows
        client = self._client
        if client is None or self.partition[1] == 1 or self.shared_group is not None:
            return  # wildcard subscriptions cover every site
        added = [s for s in self.sites if s not in old_sites]
        gone = sorted(old_sites - set(self.sites))
        opts: Any = SubscribeOptions(qos=self.qos) if self.mqtt_version == 5 else self.qos
        if added:
            client.subscribe([(f, opts) for f in telemetry_filters(added)])
        if gone:
            client.unsubscribe(telemetry_filters(gone))

    # -- lifecycle -------------------------------------------------------------
    def start(self, url: str, wait_s: float = 10.0) -> TelemetryIngest:
        """Connect to the broker at ``url``, subscribe and start decoding.

        Waits up to ``wait_s`` for the subscription (0: do not wait); the
        client keeps reconnecting with back-off in the background either way.
        Raises ``ConnectionError`` when the broker did not answer in time.
        """
        client = make_client(self.client_id, persistent=self.persistent,
                             mqtt_version=self.mqtt_version)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.raw_sink = self._on_raw  # (topic, payload) without paho's message objects
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        self._client = client
        self._leaving = False
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name=f"ingest-{self.client_id}",
                                        daemon=True)
        self._worker.start()
        connect(client, url, blocking=False, ca_file=self.ca_file)
        client.loop_start()
        if wait_s and not self.subscribed.wait(wait_s):
            self.stop()
            raise ConnectionError(f"ingest could not connect and subscribe to {url} "
                                  f"within {wait_s} s")
        return self

    def stop(self, leave_timeout_s: float = 5.0) -> None:
        """Disconnect, decode what is still queued and stop the worker.

        A shared-group member first leaves the group (UNSUBSCRIBE) and takes
        what the broker had already sent it, waiting up to ``leave_timeout_s``
        for the unsubscribe acknowledgement and a quiet connection: otherwise
        the broker would keep handing this member's share to its persistent
        session, where nobody reads it while the worker is gone (a scaled-down
        pod may never come back).
        """
        client = self._client
        if client is not None and self.shared_group is not None:
            self._leave_group(client, leave_timeout_s)
        self._client = None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None
        self.process_pending()

    def _leave_group(self, client: Any, timeout_s: float, quiet_s: float = 0.2) -> None:
        if not self.connected.is_set():
            return  # the session keeps its subscriptions; nothing to take now
        self._unsubscribed.clear()
        self._leaving = True
        deadline = time.monotonic() + timeout_s
        client.unsubscribe(self.topic_filters())
        if not self._unsubscribed.wait(timeout_s):
            log.warning("ingest %s: no UNSUBACK within %g s; leaving the group anyway",
                        self.client_id, timeout_s)
            return
        # PUBLISH packets sent before the UNSUBACK came before it on the wire; more may
        # follow from the session's queue (broker in-flight window): wait for quiet.
        seen = -1
        while seen != self._received and time.monotonic() < deadline:
            seen = self._received
            time.sleep(quiet_s)
        log.info("ingest %s left shared group %s", self.client_id, self.shared_group)

    def __enter__(self) -> TelemetryIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho callbacks (network thread) ---------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason_failed(reason):
            log.warning("ingest %s: connection refused: %s", self.client_id, reason)
            return
        self.connects += 1
        self.connected.set()
        if self._leaving:
            return
        opts: Any = SubscribeOptions(qos=self.qos) if self.mqtt_version == 5 else self.qos
        filters = self.topic_filters()
        for i in range(0, len(filters), 500):  # several SUBSCRIBE packets for big partitions
            client.subscribe([(f, opts) for f in filters[i:i + 500]])
        log.info("ingest %s connected (session present: %s)", self.client_id,
                 getattr(flags, "session_present", None))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any = None) -> None:
        if any(reason_failed(rc) for rc in reason_codes):
            log.error("ingest %s: subscription refused: %s", self.client_id, reason_codes)
            return
        self.subscribed.set()

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                        properties: Any = None) -> None:
        self._unsubscribed.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        self.connected.clear()
        if self._client is not None:
            log.warning("ingest %s disconnected (%s); reconnecting", self.client_id, reason)

    def _on_raw(self, topic: str, payload: bytes) -> None:
        self._queue.append((topic, payload))
        self._received += 1
        if len(self._queue) >= 20_000:
            self._wake.set()

    # -- decoding (worker thread) ------------------------------------------------
    @contextlib.contextmanager
    def paused(self, max_s: float = 1.0) -> Iterator[None]:
        """Hold the worker's decoding back inside the block, for at most ``max_s`` [s]
        (messages keep queueing; nothing is lost). The live service sends a plan step
        in one: its setpoints get the CPU before the telemetry that arrives meanwhile."""
        with self._pause_lock:
            self._pauses += 1
            self._resumed.clear()
        self._pause_max_s = max_s
        try:
            yield
        finally:
            with self._pause_lock:
                self._pauses -= 1
                if not self._pauses:
                    self._resumed.set()

    def _run(self) -> None:
        next_stale = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.batch_interval_s)
            self._wake.clear()
            if not self._resumed.is_set():
                self._resumed.wait(self._pause_max_s)
            try:
                self.process_pending()
                now = self.clock()
                if now >= next_stale:
                    next_stale = now + self.stale_check_s
                    change = self.telemetry.refresh_stale(now)
                    if len(change.rows):
                        self._emit("status", StatusEvent("stale", change.rows, change.values,
                                                         now))
            except Exception:  # never let a bug stop ingest
                log.exception("ingest worker failed on a batch")

    def process_pending(self, now_s: float | None = None) -> Batch | None:
        """Decode and write everything queued now; returns the batch (None if empty).

        The worker thread calls this; tests may call it directly.
        """
        with self._process_lock:
            q = self._queue
            n = len(q)
            if n == 0:
                return None
            messages = [q.popleft() for _ in range(n)]
            now = self.clock() if now_s is None else now_s
            batch = self.decoder.decode(messages, now)
            tel = self.telemetry
            written = tel.write(batch.rows, batch.cols, batch.values, batch.ts_s)
            with self._stats_lock:
                self._messages += batch.messages
                self._values += written
                self._batches += 1
                self._rejects.update(batch.rejects)
            if batch.rejects:
                self._ratelog.add(batch.rejects, time.monotonic())
            for site_row, online, t in batch.site_status:
                change = tel.set_site_online([site_row], [int(online)], t)
                self._emit("status", StatusEvent("gateway", np.array([site_row]),
                                                 np.array([online]), t))
                if len(change.rows):
                    self._emit("status", StatusEvent("device", change.rows, change.values, t))
            for row, online, t in batch.device_status:
                change = tel.set_device_online([row], [int(online)], t)
                if len(change.rows):
                    self._emit("status", StatusEvent("device", change.rows, change.values, t))
            self._emit("batch", batch)
            return batch

    # -- read-outs -------------------------------------------------------------
    @property
    def rejects(self) -> dict[str, int]:
        """Refused messages and values so far, by reason."""
        with self._stats_lock:
            return dict(self._rejects)

    def counters(self) -> dict[str, Any]:
        """Messages decoded, values written, batches, reconnects and rejects by reason."""
        with self._stats_lock:
            return {"messages": self._messages, "values": self._values,
                    "batches": self._batches, "connects": self.connects,
                    "queued": len(self._queue), "rejects": dict(self._rejects)}
