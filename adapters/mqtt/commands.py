"""Setpoints out: versioned, retained, acknowledged, retried, expired.

:class:`CommandPublisher` publishes one setpoint per device on
``sites/{site}/devices/{device}/commands/setpoint`` (QoS 1, retained) and
follows each command through ``queued -> sent -> received -> applied |
rejected | expired`` from the device's acknowledgements on
``.../commands/ack``:

* versions rise per device and come from a :class:`CommandStore`, so a
  restart with a durable store never reuses one;
* ``sent`` means the broker took the message (its PUBACK);
* a command not ``received`` within ``ack_timeout_s``, or ``received`` but
  neither ``applied`` nor ``rejected`` within ``final_ack_timeout_s``, is
  published again until ``valid_until`` (the device confirms a re-delivery,
  so a lost acknowledgement heals); a newer command for the same device
  supersedes (expires) the older one, so a retry never overwrites a newer
  setpoint;
* duplicate, late, unknown and malformed acknowledgements are ignored and
  counted;
* :meth:`CommandPublisher.send_many` publishes a whole plan step in one go
  (validated first, one store write per record, one pass over paho).

Records and versions live in a :class:`~adapters.mqtt.types.CommandStore`:
:class:`MemoryCommandStore` (tests, demos; lost with the process) or the
registry's durable :class:`adapters.registry.command_store.SqlCommandStore`.

Locking: paho calls ``on_publish`` and ``on_message`` while it holds its own
mutexes, and those callbacks take the publisher's lock. So the publisher
never calls paho while it holds that lock: records change under the lock,
then the messages go out under a separate send lock (which keeps versions
and publishes in order and which no paho callback takes). A PUBACK that
arrives before its message id was recorded is remembered and applied then,
and so is a device's acknowledgement that arrives before its command's record.

Typical use (the live service)::

    pub = CommandPublisher(fleet, SqlCommandStore(registry))
    pub.add_listener(on_change)          # fn(record: CommandRecord) on every state change
    pub.start("mqtt://broker:1883")
    pub.send("S0001-BAT01", 250.0, valid_for_s=900)
    pub.send_setpoints(setpoint_array, valid_for_s=900)   # twin setpoint array, NaN skipped
    pub.send_many([("S0001-BAT01", 250.0, t_end), ("S0001-PV01", 80.0, t_end)])
    pub.history("S0001-BAT01")
    pub.stop()
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt.client import connect, make_client, reason_failed
from adapters.mqtt.topics import ACK, ACK_FILTER, parse_command_topic, setpoint_topic
from adapters.mqtt.types import (
    ACK_STATUSES,
    APPLIED,
    EXPIRED,
    QUEUED,
    RECEIVED,
    REJECTED,
    SENT,
    TERMINAL_STATES,
    CommandRecord,
    CommandStore,
)
from twin.fleet import Fleet
from twin.limits import SETPOINT_KEY, takes_setpoint

log = logging.getLogger(__name__)

# QoS 1 setpoints in flight before paho holds the rest back for PUBACKs: none (0), so a
# whole plan step goes out at once, unless the broker announces a Receive Maximum. (With a
# limit, paho walks all unacknowledged messages on every PUBACK: quadratic in a burst.)
MAX_INFLIGHT = 0
# A broker announcing a smaller Receive Maximum runs with stock limits: warn once.
SMALL_RECEIVE_MAXIMUM = 1000


def _uuids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs from one ``os.urandom`` call, as text."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.tobytes().hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-"
            f"{h[i + 20:i + 32]}" for i in range(0, 32 * n, 32)]


class MemoryCommandStore:
    """A :class:`~adapters.mqtt.types.CommandStore` in dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._records: dict[str, CommandRecord] = {}

    def next_version(self, device_id: str) -> int:
        with self._lock:
            v = self._versions.get(device_id, 0) + 1
            self._versions[device_id] = v
            return v

    def save(self, record: CommandRecord) -> None:
        with self._lock:
            self._records[record.command_id] = record

    def get(self, command_id: str) -> CommandRecord | None:
        return self._records.get(command_id)

    def open_commands(self) -> list[CommandRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.state not in TERMINAL_STATES]

    def history(self, device_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        with self._lock:
            recs = [r for r in self._records.values()
                    if device_id is None or r.device_id == device_id]
        recs.sort(key=lambda r: (r.issued_at_s, r.version), reverse=True)
        return recs[:limit]


class CommandPublisher:
    """Publish setpoints and track their acknowledgements.

    Parameters
    ----------
    fleet : Fleet
        Devices that may receive setpoints (batteries, PV, EV chargers).
    store : CommandStore, optional
        Records and versions; in memory when omitted.
    client_id : str
        MQTT client id (persistent session: acks sent while away arrive later).
    clock : callable
        ``() -> Unix s``.
    ack_timeout_s : float
        Publish again when no ``received`` came within this time [s].
    final_ack_timeout_s : float
        Publish again when a ``received`` command got no ``applied`` or ``rejected``
        within this time after its last publish [s].
    check_interval_s : float
        How often retries and expiry are checked [s].
    persistent : bool
        Persistent session, so acks sent while the publisher is away arrive later.
    ca_file : str, optional
        CA bundle for ``mqtts://`` brokers with a private CA.
    """

    def __init__(self, fleet: Fleet, store: CommandStore | None = None, *,
                 client_id: str = "ecogrid-commands", clock: Callable[[], float] = time.time,
                 ack_timeout_s: float = 5.0, final_ack_timeout_s: float = 10.0,
                 check_interval_s: float = 0.5, persistent: bool = True,
                 ca_file: str | None = None):
        self.fleet = fleet
        self.store: CommandStore = store if store is not None else MemoryCommandStore()
        self.client_id = client_id
        self.clock = clock
        self.ack_timeout_s = float(ack_timeout_s)
        self.final_ack_timeout_s = float(final_ack_timeout_s)
        self._warned_limits = False
        self.check_interval_s = float(check_interval_s)
        self.persistent = persistent
        self.ca_file = ca_file
        self.ignored_acks: Counter[str] = Counter()
        # _lock guards the records below; paho is never called while it is held.
        self._lock = threading.RLock()
        # _send_lock orders version reservation and publishing; no paho callback takes it.
        self._send_lock = threading.Lock()
        self._open: dict[str, CommandRecord] = {}
        self._by_device: dict[str, dict[str, None]] = {}  # device -> its open command ids
        self._latest: dict[str, int] = {}
        for c in self.store.open_commands():
            self._track(c)
            self._latest[c.device_id] = max(self._latest.get(c.device_id, 0), c.version)
        self._mid: dict[int, str] = {}
        self._topics: dict[str, bytes] = {}  # device -> its setpoint topic, encoded
        self._early_mids: set[int] = set()  # PUBACKs that came before their mid was recorded
        self._sending = 0  # send_many calls between their publish and their records
        self._early_acks: list[tuple[str, bytes, float]] = []  # acks that came before those
        self._listeners: list[Callable[[CommandRecord], None]] = []
        self._client: Any = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.subscribed = threading.Event()

    # -- hooks -----------------------------------------------------------------
    def set_fleet(self, fleet: Fleet) -> None:
        """Take setpoints for the devices of ``fleet`` from now on (commands already out
        keep being followed by their ids)."""
        with self._lock:
            self.fleet = fleet

    def add_listener(self, fn: Callable[[CommandRecord], None]) -> None:
        """Call ``fn(record)`` after every state change (from the network or ticker thread)."""
        self._listeners.append(fn)

    # -- lifecycle -------------------------------------------------------------
    def start(self, url: str, wait_s: float = 10.0) -> CommandPublisher:
        """Connect, subscribe to acknowledgements and start the retry/expiry ticker.

        Commands still open in the store (from before a restart) are tracked
        and retried. Raises ``ConnectionError`` when the broker did not answer
        within ``wait_s``.
        """
        client = make_client(self.client_id, persistent=self.persistent,
                             max_inflight=MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.raw_sink = self._on_raw  # acks as (topic, payload), without paho's messages
        client.on_publish = self._on_publish
        self._client = client
        connect(client, url, blocking=False, ca_file=self.ca_file)
        client.loop_start()
        if wait_s and not self.subscribed.wait(wait_s):
            self.stop()
            raise ConnectionError(f"command publisher could not connect to {url} "
                                  f"within {wait_s} s")
        self._stop.clear()
        self._ticker = threading.Thread(target=self._run, name="commands-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
            self._ticker = None
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> CommandPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sending ---------------------------------------------------------------
    def send(self, device_id: str, value_kw: float, *, valid_for_s: float | None = None,
             valid_until_s: float | None = None, now_s: float | None = None) -> CommandRecord:
        """Queue and publish one setpoint.

        Parameters
        ----------
        device_id : str
            A battery (``value_kw`` is ``p_kw``, positive = discharge), a PV
            inverter or an EV charger (``value_kw`` is ``p_limit_kw``).
        value_kw : float
            The setpoint [kW].
        valid_for_s, valid_until_s : float
            Validity, relative [s] or absolute [Unix s]; one is required.
        now_s : float, optional
            Issue time [Unix s]; the publisher's clock when omitted.
        """
        now = self.clock() if now_s is None else float(now_s)
        if valid_until_s is None:
            if valid_for_s is None or valid_for_s <= 0:
                raise ValueError("give valid_for_s > 0 or valid_until_s")
            valid_until_s = now + float(valid_for_s)
        return self.send_many([(device_id, value_kw, float(valid_until_s))], now_s=now)[0]

    def send_many(self, items: Sequence[tuple[str, float, float]], *,
                  now_s: float | None = None) -> list[CommandRecord]:
        """Queue and publish many setpoints in one go (a plan step, a group).

        Every item is checked before anything goes out: one bad item raises
        ``ValueError`` naming it, and nothing is sent. A device named twice
        gets two versions; the later one supersedes the earlier.

        Parameters
        ----------
        items : sequence of (str, float, float)
            ``(device_id, value_kw [kW], valid_until_s [Unix s])``.
        now_s : float, optional
            Issue time [Unix s]; the publisher's clock when omitted.

        Returns
        -------
        list of CommandRecord
            The records as they stand after publishing, in the order of ``items``.
        """
        now = self.clock() if now_s is None else float(now_s)
        checked = [self._check(d, v, u, now) for d, v, u in items]
        with self._send_lock:
            client = self._client
            # Published now (when connected): the first attempt is counted at creation.
            attempts, sent_s = (1, now) if client is not None else (0, None)
            recs = [CommandRecord(cid, site_id, device_id, self.store.next_version(device_id),
                                  {key: value_kw}, now, until, QUEUED, attempts=attempts,
                                  last_sent_s=sent_s, transitions=((QUEUED, now),))
                    for cid, (site_id, device_id, key, value_kw, until)
                    in zip(_uuids(len(checked)), checked, strict=True)]
            # A device named twice: only its last command goes out (the others are
            # superseded below). Out first: the devices do not wait for the bookkeeping.
            last = {r.device_id: r for r in recs}
            out = [r for r in recs if last[r.device_id] is r]
            with self._lock:
                self._sending += 1  # an ack before the records below waits for them
            mids = self._send_packets(client, out)
            with self._lock:
                self._sending -= 1
                early, self._early_acks = self._early_acks, []
                for rec in recs:
                    for old_id in list(self._by_device.get(rec.device_id, ())):
                        old = self._open[old_id]
                        self._change(old.moved(EXPIRED, now,
                                               f"superseded by version {rec.version}"))
                    self._latest[rec.device_id] = rec.version
                    self._change(rec)
                self._map_mids(mids, out)
            for topic, payload, t_s in early:
                self.handle_ack(topic, payload, t_s)
        with self._lock:
            return [self._open.get(r.command_id) or self.store.get(r.command_id) or r
                    for r in recs]

    def _check(self, device_id: str, value_kw: float, valid_until_s: float, now: float
               ) -> tuple[str, str, str, float, float]:
        row = self.fleet.device_row.get(device_id)
        if row is None:
            raise ValueError(f"unknown device {device_id!r}")
        key = SETPOINT_KEY.get(int(self.fleet.device_type[row]))
        if key is None:
            raise ValueError(f"device {device_id!r} is a load; it takes no setpoint")
        value_kw = float(value_kw)
        if not math.isfinite(value_kw):
            raise ValueError(f"setpoint for {device_id!r} must be a finite number, "
                             f"got {value_kw}")
        if not valid_until_s > now:
            raise ValueError(f"valid_until_s {valid_until_s} for {device_id!r} is not after "
                             f"the issue time {now}")
        site_id = str(self.fleet.site_id[self.fleet.device_site[row]])
        return site_id, device_id, key, value_kw, float(valid_until_s)

    def send_setpoints(self, setpoint: np.ndarray, *, valid_for_s: float,
                       now_s: float | None = None) -> list[CommandRecord]:
        """Send the twin's setpoint array (one value per device row; NaN and loads skipped)."""
        setpoint = np.asarray(setpoint, dtype=np.float64)
        if setpoint.shape != (self.fleet.n_devices,):
            raise ValueError(f"setpoint has shape {setpoint.shape}, expected "
                             f"({self.fleet.n_devices},)")
        if valid_for_s is None or valid_for_s <= 0:
            raise ValueError("give valid_for_s > 0")
        now = self.clock() if now_s is None else float(now_s)
        rows = np.flatnonzero(np.isfinite(setpoint) & takes_setpoint(self.fleet.device_type))
        until = now + float(valid_for_s)
        return self.send_many([(str(self.fleet.device_id[r]), float(setpoint[r]), until)
                               for r in rows], now_s=now)

    @staticmethod
    def _attempt(rec: CommandRecord, now: float) -> CommandRecord:
        return replace(rec, attempts=rec.attempts + 1, last_sent_s=now)

    def _publish(self, client: Any, recs: list[CommandRecord]) -> None:
        """Publish tracked records (their attempt already counted); call holding
        ``_send_lock`` and not ``_lock``."""
        mids = self._send_packets(client, recs)
        with self._lock:
            self._map_mids(mids, recs)

    def _send_packets(self, client: Any, recs: list[CommandRecord]) -> list[int]:
        """Hand the records' setpoints to paho; returns their message ids ([] when not
        started: they stay queued and the ticker publishes them after start)."""
        if client is None or not recs:
            return []
        topics = self._topics
        messages = []
        for r in recs:
            topic = topics.get(r.device_id)
            if topic is None:
                topic = topics[r.device_id] = setpoint_topic(r.site_id, r.device_id).encode()
            messages.append((topic, orjson.dumps(r.payload())))
        return client.publish_many(messages, retain=True)  # few wake-ups, few sends

    def _map_mids(self, mids: list[int], recs: list[CommandRecord]) -> None:
        """Tie message ids to their commands (holding ``_lock``, records tracked); a
        PUBACK that came first marks its command sent now."""
        for mid, rec in zip(mids, recs, strict=False):  # no mids: not started
            if mid in self._early_mids:
                self._early_mids.discard(mid)
                self._mark_sent(rec.command_id)
            else:
                self._mid[mid] = rec.command_id

    # -- state changes ---------------------------------------------------------
    def _emit(self, rec: CommandRecord) -> None:
        for fn in self._listeners:
            try:
                fn(rec)
            except Exception:
                log.exception("command listener failed")

    def _track(self, rec: CommandRecord) -> None:
        if rec.terminal:
            self._open.pop(rec.command_id, None)
            ids = self._by_device.get(rec.device_id)
            if ids is not None:
                ids.pop(rec.command_id, None)
                if not ids:
                    del self._by_device[rec.device_id]
        else:
            self._open[rec.command_id] = rec
            self._by_device.setdefault(rec.device_id, {})[rec.command_id] = None

    def _change(self, rec: CommandRecord) -> None:
        self._track(rec)
        self.store.save(rec)
        self._emit(rec)

    def _mark_sent(self, command_id: str) -> None:
        rec = self._open.get(command_id)
        if rec is not None and rec.state == QUEUED:
            self._change(rec.moved(SENT, self.clock()))

    def tick(self, now_s: float | None = None) -> None:
        """Expire commands past ``valid_until`` and publish again those not acknowledged
        in time (not ``received``, or ``received`` without a final acknowledgement)."""
        now = self.clock() if now_s is None else float(now_s)
        with self._send_lock:
            again = []
            with self._lock:
                client = self._client
                for rec in list(self._open.values()):
                    if now >= rec.valid_until_s:
                        self._change(rec.moved(EXPIRED, now, "valid_until passed"))
                    elif client is not None and self._overdue(rec, now) \
                            and self._latest.get(rec.device_id) == rec.version:
                        log.info("no %s for %s v%d; publishing again",
                                 "final ack" if rec.state == RECEIVED else "ack",
                                 rec.device_id, rec.version)
                        rec = self._attempt(rec, now)
                        self._change(rec)
                        again.append(rec)
            self._publish(client, again)

    def _overdue(self, rec: CommandRecord, now: float) -> bool:
        """Whether an open command waited too long for its next acknowledgement."""
        if rec.last_sent_s is None:
            return rec.state in (QUEUED, SENT)
        waited = now - rec.last_sent_s
        if rec.state == RECEIVED:
            return waited >= self.final_ack_timeout_s
        return waited >= self.ack_timeout_s

    def _run(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("command ticker failed")

    # -- paho callbacks (paho holds its own locks here: never call paho back) ----
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason_failed(reason):
            log.warning("command publisher: connection refused: %s", reason)
            return
        limit = int(getattr(properties, "ReceiveMaximum", 0) or 0)  # MQTT 5: the broker's
        client.limit_inflight(limit or MAX_INFLIGHT)
        if 0 < limit < SMALL_RECEIVE_MAXIMUM and not self._warned_limits:
            self._warned_limits = True
            log.warning("the broker allows only %d unacknowledged messages per client "
                        "(Mosquitto: max_inflight_messages; its other defaults, such as "
                        "max_queued_messages 1000, drop messages to us in a plan step's "
                        "burst): set them as in deploy/mosquitto/mosquitto.conf "
                        "(docs/mqtt-scaling.md, broker limits)", limit)
        client.subscribe([(ACK_FILTER, SubscribeOptions(qos=1))])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any = None) -> None:
        if not any(reason_failed(rc) for rc in reason_codes):
            self.subscribed.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None,
                    properties: Any = None) -> None:
        with self._lock:
            cid = self._mid.pop(mid, None)
            if cid is None:
                self._early_mids.add(mid)  # the sender records this mid in a moment
                return
            self._mark_sent(cid)

    def _on_raw(self, topic: str, payload: bytes) -> None:
        try:  # on paho's network thread: an error here must not stop it
            self.handle_ack(topic, payload)
        except Exception:
            log.exception("acknowledgement on %s could not be applied", topic)

    def handle_ack(self, topic: str, payload: bytes, now_s: float | None = None) -> str:
        """Apply one acknowledgement; returns what happened (``"received"``,
        ``"applied"``, ``"rejected"``, the reason it was ignored, or ``"early"``: its
        command may be one of a batch being recorded, and it is applied after that)."""
        now = self.clock() if now_s is None else now_s
        top = parse_command_topic(topic)
        try:
            ack = orjson.loads(payload)
            cid, version, status = ack["command_id"], int(ack["version"]), ack["status"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.ignored_acks["malformed"] += 1
            return "malformed"
        if status not in ACK_STATUSES or top is None or top.command != ACK:
            self.ignored_acks["malformed"] += 1
            return "malformed"
        with self._lock:
            rec = self._open.get(cid)
            if rec is None and self._sending:  # its command may be one still being recorded
                self._early_acks.append((topic, payload, now))
                return "early"
            if rec is None:
                why = "late_or_duplicate" if self.store.get(cid) else "unknown"
                self.ignored_acks[why] += 1
                return why
            if rec.version != version or rec.device_id != top.device_id:
                self.ignored_acks["mismatch"] += 1
                return "mismatch"
            if status == "received":
                if rec.state not in (QUEUED, SENT):
                    self.ignored_acks["late_or_duplicate"] += 1
                    return "late_or_duplicate"
                self._change(rec.moved(RECEIVED, now))
            else:
                reason = ack.get("reason") if isinstance(ack.get("reason"), str) else None
                self._change(rec.moved(APPLIED if status == "applied" else REJECTED, now,
                                       reason))
            return status

    # -- read-outs ---------------------------------------------------------------
    def get(self, command_id: str) -> CommandRecord | None:
        """The current record of one command."""
        with self._lock:
            return self._open.get(command_id) or self.store.get(command_id)

    def history(self, device_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        """Newest first, of one device or of all."""
        return self.store.history(device_id, limit)

    def open_commands(self) -> list[CommandRecord]:
        with self._lock:
            return list(self._open.values())
