"""Device emulator: every site's edge gateway, driven by the twin's physics.

:class:`Emulator` runs one MQTT connection per site gateway (client id
``gw-{site}``, Last Will ``offline`` on ``sites/{site}/status``), all on one
shared network loop in one thread (one ``selectors`` selector over the
gateways' sockets, which wakes for the ready ones only), so the reference
fleet (342 gateways, ~10,000 devices) runs at 1 Hz
in one process. Each tick advances a :class:`twin.model.Twin` to the current
time with clear-sky weather and publishes the whole site's telemetry on
``sites/{site}/telemetry``.

Setpoints follow docs/protocol.md: a setpoint is applied only when its version
is newer than the last applied one and its ``valid_until`` has not passed;
outside the device's limits (:func:`twin.limits.setpoint_bounds_kw`, the bounds
the twin's physics holds to and the API checks) it is rejected with a reason;
each is acknowledged ``received`` at once, then ``applied`` when the next tick
applies it (the physics uses a setpoint from its next step on) or ``rejected``
at once. The acknowledgements of one read of a gateway's socket go out
together, the ``applied`` ones of a tick too; when the validity of the applied
setpoint runs out the device returns to its safe default (NaN setpoint:
battery idle, no PV curtailment, EV at its own limit).

Fault injection: :meth:`Emulator.drop_gateway` cuts a gateway's connection
without a DISCONNECT (its Will fires); ``delay_s`` holds every telemetry
message back that long before sending it (stamped with the time it was
sampled), ``jitter_s`` adds a random extra delay of up to that much per
message; ``malformed_rate`` replaces that share of messages by a malformed
one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt.client import FastClient, parse_broker_url
from adapters.mqtt.topics import (
    SETPOINT,
    ack_topic,
    device_status_topic,
    parse_command_topic,
    setpoint_filter,
    site_status_topic,
    site_telemetry_topic,
)
from twin.fleet import BATTERY, PV, Fleet
from twin.limits import SETPOINT_KEY, setpoint_bounds_kw
from twin.model import Twin
from twin.solar import clear_sky, sun_position
from twin.state import StepInputs

log = logging.getLogger(__name__)

MISC_EVERY_S = 0.1  # keep-alive and reconnect checks of the gateways [s]

MALFORMED: tuple[bytes, ...] = (
    b"{not json", b'{"ts": "yesterday", "devices": {}}', b'{"ts": 1, "devices": [1, 2]}',
    b"NaN", b'{"ts": 4102444800, "devices": {}}',
)


def weather_inputs(fleet: Fleet, t_s: float) -> StepInputs:
    """Clear-sky step inputs for all sites at ``t_s`` [Unix s]."""
    zen, az = sun_position(fleet.lat_deg, fleet.lon_deg, np.array([t_s]))
    ghi, dni, dhi = clear_sky(zen, np.array([t_s]))
    x = StepInputs.constant(fleet.n_sites)
    x.ghi, x.dni, x.dhi = ghi[0], dni[0], dhi[0]
    x.zenith_deg, x.azimuth_deg = zen[0], az[0]
    return x


class Emulator:
    """All gateways of a fleet on one network loop.

    Parameters
    ----------
    fleet : Fleet
        The devices to emulate.
    url : str
        Broker URL (``mqtt://host:port``).
    interval_s : float
        Telemetry interval [s].
    credentials : dict, optional
        ``site_id -> (username, password)``; anonymous when omitted.
    jitter_s, delay_s, malformed_rate : float
        Fault injection (see the module docstring).
    sites : list of str, optional
        Emulate only these sites (several emulator processes can share a fleet).
    seed : int
        Seed of the fault-injection and EV-arrival randomness.
    ev_arrivals_per_h : float
        Mean EV arrivals per charger and hour.
    """

    def __init__(self, fleet: Fleet, url: str, *, interval_s: float = 1.0,
                 credentials: dict[str, tuple[str, str]] | None = None,
                 jitter_s: float = 0.0, delay_s: float = 0.0, malformed_rate: float = 0.0,
                 sites: list[str] | None = None, seed: int = 0,
                 ev_arrivals_per_h: float = 0.5):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.fleet = fleet
        self.url = url
        self.target = parse_broker_url(url)
        self.interval_s = float(interval_s)
        self.credentials = credentials or {}
        self.jitter_s = float(jitter_s)
        self.delay_s = float(delay_s)
        self.malformed_rate = float(malformed_rate)
        self.ev_arrivals_per_h = float(ev_arrivals_per_h)
        self.rng = np.random.default_rng(seed)
        self.twin = Twin(fleet)
        n = fleet.n_devices
        self.setpoint = np.full(n, np.nan)
        self.applied_version = np.zeros(n, dtype=np.int64)
        self.valid_until_s = np.full(n, np.nan)
        self.e_kwh = np.zeros(n)  # energy meter, cumulative, signed as p_kw
        self.lo_kw, self.hi_kw = setpoint_bounds_kw(fleet)  # twin.limits: what it accepts
        wanted = set(sites) if sites is not None else None
        self.site_rows = [i for i, s in enumerate(fleet.site_id.tolist())
                          if wanted is None or s in wanted]
        self._ids = fleet.device_id.tolist()
        self._clients: dict[int, mqtt.Client] = {}
        self._dropped: set[int] = set()
        self._retry_at: dict[int, tuple[float, float]] = {}
        self._online: set[int] = set()
        self._pending: list[tuple[float, int, str, bytes]] = []  # delayed/jittered publishes
        self._requests: deque[Callable[[], None]] = deque()  # from other threads, run in poll
        self._acks_out: list[tuple[str, bytes]] = []  # of the socket being read, sent after it
        self._next_misc_s = 0.0  # time.monotonic() of the next keep-alive/reconnect round
        self._sel = selectors.DefaultSelector()
        self._watched: dict[int, tuple[socket.socket, int]] = {}  # site row -> (socket, events)
        self._rewatch = True  # sockets or write interests may have changed: look at all
        self._applied: dict[int, list[tuple[str, dict[str, Any]]]] = {}  # site row -> acks
        self.published = 0
        self.acks = {"received": 0, "applied": 0, "rejected": 0}
        self.t_s: float | None = None
        self.clock: Callable[[], float] = time.time
        self.faults = DeviceFaults(n)  # fault injection for alert tests and benchmarks
        self.weather: Callable[[Fleet, float], StepInputs] = weather_inputs  # replaceable
        self.measured_p_kw = np.zeros(n)  # last published p_kw (faults applied)

    # -- connections -------------------------------------------------------------
    def _make(self, site_row: int) -> mqtt.Client:
        site = str(self.fleet.site_id[site_row])
        # FastClient: buffered reads, setpoints as raw (topic, payload), acks written
        # together: a plan step sends thousands at once and the emulator answers each twice.
        c = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{site}",
                       protocol=mqtt.MQTTv5, userdata=site_row)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        user, password = self.credentials.get(site, (self.target.username, self.target.password))
        if user:
            c.username_pw_set(user, password)
        if self.target.tls:
            c.tls_set_context(ssl.create_default_context())
        c.will_set(site_status_topic(site), b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.raw_sink = lambda topic, payload: self._on_setpoint(c, site_row, topic, payload)
        c.on_disconnect = self._on_disconnect
        return c

    def connect(self, timeout_s: float = 30.0) -> None:
        """Connect every gateway and wait until all are online."""
        for row in self.site_rows:
            c = self._make(row)
            self._clients[row] = c
            c.connect(self.target.host, self.target.port, keepalive=30, clean_start=True)
        self._rewatch = True
        deadline = time.monotonic() + timeout_s
        while len(self._online) < len(self.site_rows) - len(self._dropped):
            if time.monotonic() > deadline:
                raise ConnectionError(f"only {len(self._online)} of {len(self.site_rows)} "
                                      f"gateways connected to {self.url} in {timeout_s} s")
            self.poll(0.05)

    def _on_connect(self, c: mqtt.Client, site_row: int, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            log.error("gateway %s refused: %s", self.fleet.site_id[site_row], reason)
            return
        site = str(self.fleet.site_id[site_row])
        # The broker's Receive Maximum, if it announces one; else no limit (paho then
        # does not walk the unacknowledged messages on every PUBACK).
        limit = getattr(properties, "ReceiveMaximum", None)
        c.limit_inflight(int(limit) if limit else 0)
        c.subscribe([(setpoint_filter(site), SubscribeOptions(qos=1))])
        c.publish(site_status_topic(site), b"online", qos=1, retain=True)
        for d in range(self.fleet.site_start[site_row], self.fleet.site_stop[site_row]):
            c.publish(device_status_topic(site, self._ids[d]), b"online", qos=1, retain=True)
        self._online.add(site_row)
        self._retry_at.pop(site_row, None)

    def _on_disconnect(self, c: mqtt.Client, site_row: int, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        self._online.discard(site_row)
        if site_row not in self._dropped:
            self._retry_at.setdefault(site_row, (time.monotonic() + 0.5, 0.5))

    def drop_gateway(self, site_id: str) -> None:
        """Cut a gateway's connection without DISCONNECT (its Will fires); it stays down.

        Safe from any thread: it takes effect on the emulator's next :meth:`poll`
        (``run`` polls all the time).
        """
        row = self.fleet.site_row[site_id]
        self._requests.append(lambda: self._drop(row))

    def restore_gateway(self, site_id: str) -> None:
        """Let a dropped gateway connect again (on the next poll; safe from any thread)."""
        row = self.fleet.site_row[site_id]

        def restore() -> None:
            self._dropped.discard(row)
            self._retry_at[row] = (time.monotonic(), 0.5)

        self._requests.append(restore)

    def _drop(self, row: int) -> None:
        self._dropped.add(row)
        c = self._clients.get(row)
        sock = c.socket() if c is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.loop_read()  # notices the closed socket, cleans up

    def stop(self) -> None:
        """Publish ``offline`` for every gateway and disconnect cleanly."""
        for row, c in self._clients.items():
            if row in self._online:
                c.publish(site_status_topic(self.fleet.site_id[row]), b"offline", qos=1,
                          retain=True)
        self.poll(0.05)
        for c in self._clients.values():
            if c.socket() is not None:
                c.disconnect()
                c.loop_write()
        self._clients.clear()
        self._online.clear()

    # -- network loop ------------------------------------------------------------
    def poll(self, timeout_s: float) -> None:
        """Serve the gateways' sockets for up to ``timeout_s`` [s] (one wait for events)."""
        while self._requests:
            self._requests.popleft()()
        if self._rewatch:
            self._rewatch = False
            for row in list(self._clients):
                self._watch(row)
        if self._watched:
            ready = self._sel.select(timeout_s)
        else:
            time.sleep(timeout_s)  # nothing connected (yet)
            ready = []
        for key, events in ready:
            row = key.data
            c = self._clients.get(row)
            if c is None:
                continue
            if events & selectors.EVENT_READ:
                c.loop_read(100)
                if self._acks_out:  # the setpoints just read, answered in one go
                    acks, self._acks_out = self._acks_out, []
                    c.publish_many(acks)
            if events & selectors.EVENT_WRITE and c.socket() is not None:
                c.loop_write()
            self._watch(row)  # closed, or still something to write
        self._misc()

    def _watch(self, row: int) -> None:
        """Keep the selector in step with gateway ``row``'s socket and write interest."""
        c = self._clients.get(row)
        sock = c.socket() if c is not None else None
        old = self._watched.get(row)
        if old is not None and old[0] is not sock:
            self._unwatch(row)
            old = None
        if sock is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.want_write() else 0)
        if old is None:
            stale = self._sel.get_map().get(sock.fileno())
            if stale is not None:  # a closed socket's number, reused by this one
                self._unwatch(stale.data)
            self._sel.register(sock, events, row)
        elif old[1] != events:
            self._sel.modify(sock, events, row)
        self._watched[row] = (sock, events)

    def _unwatch(self, row: int) -> None:
        sock, _ = self._watched.pop(row)
        with contextlib.suppress(KeyError, ValueError):  # already gone with its socket
            self._sel.unregister(sock)

    def _misc(self) -> None:
        now = time.monotonic()
        if now >= self._next_misc_s:  # keep-alives and reconnects: every MISC_EVERY_S
            self._next_misc_s = now + MISC_EVERY_S  # (each round visits all gateways)
            self._rewatch = True
            for row, c in self._clients.items():
                if c.socket() is not None:
                    c.loop_misc()
                elif row not in self._dropped:
                    at, backoff = self._retry_at.get(row, (now, 0.5))
                    if now >= at:
                        try:
                            c.reconnect()
                        except OSError:
                            backoff = min(backoff * 2, 30.0)
                            self._retry_at[row] = (now + backoff, backoff)
        if self._pending:
            due = [p for p in self._pending if p[0] <= now]
            if due:
                self._pending = [p for p in self._pending if p[0] > now]
                for _, row, topic, payload in due:
                    self._send(row, topic, payload)

    def _send(self, site_row: int, topic: str, payload: bytes) -> None:
        c = self._clients.get(site_row)
        if c is not None and site_row in self._online:
            c.publish(topic, payload, qos=1)
            self.published += 1

    # -- setpoints ---------------------------------------------------------------
    def _on_setpoint(self, c: mqtt.Client, site_row: int, topic: str, payload: bytes) -> None:
        top = parse_command_topic(topic)
        if top is None or top.command != SETPOINT or not payload:
            return
        acks = self.handle_setpoint(site_row, top.device_id, payload, self.clock())
        topic = ack_topic(top.site_id, top.device_id)
        for a in acks:
            if a["status"] == "applied" and len(acks) > 1:  # a new setpoint: at the tick
                self._applied.setdefault(site_row, []).append((topic, a))
            else:
                self._acks_out.append((topic, orjson.dumps(a)))
                self.acks[a["status"]] += 1

    def _send_applied(self, now_s: float) -> None:
        """Acknowledge ``applied`` what this tick applied for the first time."""
        pending, self._applied = self._applied, {}
        for site_row, acks in pending.items():
            c = self._clients.get(site_row)
            if c is None or site_row not in self._online:
                continue  # gone: EcoGrid publishes again, and the re-delivery is confirmed
            for _, a in acks:
                a["ts"] = now_s
            c.publish_many([(topic, orjson.dumps(a)) for topic, a in acks])
            self.acks["applied"] += len(acks)

    def handle_setpoint(self, site_row: int, device_id: str, payload: bytes,
                        now_s: float) -> list[dict[str, Any]]:
        """Apply one setpoint message per the protocol; returns the acks to send.

        A re-delivery of the version already applied is confirmed ``applied``
        again (a lost acknowledgement heals); an empty list means there is no
        command id to answer to.
        """
        try:
            cmd = orjson.loads(payload)
            cid, version = cmd["command_id"], cmd["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return []
        row = self.fleet.device_row.get(device_id)
        if row is None or self.fleet.device_site[row] != site_row:
            return [self._ack(cid, version, "rejected", now_s, "unknown device")]
        if not isinstance(version, int) or isinstance(version, bool):
            return [self._ack(cid, version, "rejected", now_s, "version is not an integer")]
        if version == self.applied_version[row]:  # re-delivery: confirm again, change nothing
            return [self._ack(cid, version, "applied", now_s)]
        acks = [self._ack(cid, version, "received", now_s)]
        reason = self._check(row, version, cmd, now_s)
        if reason:
            acks.append(self._ack(cid, version, "rejected", now_s, reason))
            return acks
        key = SETPOINT_KEY[int(self.fleet.device_type[row])]
        self.setpoint[row] = float(cmd["setpoint"][key])
        self.applied_version[row] = version
        self.valid_until_s[row] = float(cmd["valid_until"])
        acks.append(self._ack(cid, version, "applied", now_s))
        return acks

    def _check(self, row: int, version: int, cmd: dict[str, Any], now_s: float) -> str | None:
        if version < self.applied_version[row]:
            return f"version {version} is not newer than applied {self.applied_version[row]}"
        valid_until = cmd.get("valid_until")
        if not isinstance(valid_until, int | float) or valid_until <= now_s:
            return "valid_until has passed"
        if math.isnan(self.lo_kw[row]):
            return "device takes no setpoint"
        key = SETPOINT_KEY[int(self.fleet.device_type[row])]
        sp = cmd.get("setpoint")
        value = sp.get(key) if isinstance(sp, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(
                value):
            return f"setpoint must hold a number under {key!r}"
        lo, hi = self.lo_kw[row], self.hi_kw[row]
        if not lo <= value <= hi:
            return f"{key} {value} outside the device's limits [{lo:g}, {hi:g}] kW"
        return None

    @staticmethod
    def _ack(cid: Any, version: Any, status: str, now_s: float,
             reason: str | None = None) -> dict[str, Any]:
        ack = {"command_id": cid, "version": version, "status": status, "ts": now_s}
        if reason:
            ack["reason"] = reason
        return ack

    # -- telemetry ----------------------------------------------------------------
    def tick(self, now_s: float) -> int:
        """Advance the physics to ``now_s`` [Unix s] and publish every site's telemetry.

        Returns the number of messages handed to the network (or scheduled).
        """
        dt = self.interval_s if self.t_s is None else max(now_s - self.t_s, 1e-3)
        self.t_s = now_s
        expired = self.valid_until_s <= now_s
        self.setpoint[expired] = np.nan  # safe default once validity runs out
        self.valid_until_s[expired] = np.nan
        self._ev_arrivals(now_s, dt)
        inputs = self.weather(self.fleet, now_s)
        state = self.twin.step(now_s - dt, dt, inputs, self.faults.device_setpoint(self.setpoint))
        self._send_applied(now_s)
        p = self.faults.measure(state.p_kw)
        self.measured_p_kw = p
        self.e_kwh += np.where(self.faults.stuck_meter, 0.0, p * dt / 3600.0)
        soc = self.twin.soc()
        temp = inputs.temp_air_c[self.fleet.device_site] + 0.03 * np.nan_to_num(
            inputs.ghi[self.fleet.device_site]) * (self.fleet.device_type == PV)
        v = 230.0 + 0.002 * p / np.maximum(self.hi_kw_abs(), 1.0) * 230.0
        cols = [np.round(a, 4).tolist() for a in (p, np.zeros_like(p), v, self.e_kwh, temp)]
        soc_l = np.round(soc, 5).tolist()
        is_bat = (self.fleet.device_type == BATTERY).tolist()
        ts = now_s
        sent = 0
        for srow in self.site_rows:
            if srow in self._dropped or srow not in self._online:
                continue
            a, b = int(self.fleet.site_start[srow]), int(self.fleet.site_stop[srow])
            devices = {}
            for d in range(a, b):
                m = {"p_kw": cols[0][d], "q_kvar": cols[1][d], "v": cols[2][d],
                     "e_kwh": cols[3][d], "temp_c": cols[4][d]}
                if is_bat[d]:
                    m["soc"] = soc_l[d]
                devices[self._ids[d]] = m
            payload = orjson.dumps({"ts": ts, "devices": devices})
            if self.malformed_rate and self.rng.random() < self.malformed_rate:
                payload = MALFORMED[int(self.rng.integers(len(MALFORMED)))]
            topic = site_telemetry_topic(self.fleet.site_id[srow])
            if self.jitter_s > 0 or self.delay_s > 0:
                at = time.monotonic() + self.delay_s + float(self.rng.uniform(0, self.jitter_s))
                self._pending.append((at, srow, topic, payload))
            else:
                self._send(srow, topic, payload)
            sent += 1
        self._rewatch = True  # a socket too full for all of this tick's messages waits to write
        return sent

    def hi_kw_abs(self) -> np.ndarray:
        return np.nan_to_num(np.fmax(np.abs(self.lo_kw), np.abs(self.hi_kw)), nan=1.0)

    def _ev_arrivals(self, now_s: float, dt_s: float) -> None:
        ev = self.fleet.rows_of_type("ev_charger")
        if not len(ev) or self.ev_arrivals_per_h <= 0:
            return
        hit = ev[self.rng.random(len(ev)) < self.ev_arrivals_per_h * dt_s / 3600.0]
        if len(hit):
            need = self.rng.uniform(10.0, 60.0, len(hit))
            self.twin.plug_in(hit, need, now_s + self.rng.uniform(1800, 4 * 3600, len(hit)))

    def run(self, duration_s: float | None = None,
            clock: Callable[[], float] = time.time) -> dict[str, Any]:
        """Tick every ``interval_s`` on ``clock`` for ``duration_s`` [s] (forever: None).

        Returns figures: ticks, messages published, late ticks, acks sent.
        """
        self.clock = clock
        start = clock()
        next_tick = start
        ticks = late = 0
        while duration_s is None or clock() - start < duration_s:
            now = clock()
            if now >= next_tick:
                if now - next_tick > self.interval_s:
                    late += 1
                self.tick(now)
                ticks += 1
                next_tick += self.interval_s
                if next_tick < now:
                    next_tick = now + self.interval_s
            self.poll(max(0.0, min(0.05, next_tick - clock())))
        return {"ticks": ticks, "late_ticks": late, "published": self.published,
                "gateways_online": len(self._online), "acks": dict(self.acks)}


class DeviceFaults:
    """Injected device faults (issue 7: alert tests and the anomaly benchmark).

    * ``pv_factor[row]``: share of a PV device's output that reaches its meter
      (0.5 = one of two strings down);
    * ``ignores_setpoint[row]``: the device acknowledges setpoints but runs as
      if it had none;
    * ``stuck_meter[row]``: the meter repeats its last ``p_kw`` and ``e_kwh``.

    Parameters
    ----------
    n_devices : int
        Number of device rows.
    """

    KINDS: tuple[str, ...] = ("pv_derate", "ignore_setpoint", "stuck_meter")

    def __init__(self, n_devices: int):
        self.pv_factor = np.ones(n_devices)
        self.ignores_setpoint = np.zeros(n_devices, dtype=bool)
        self.stuck_meter = np.zeros(n_devices, dtype=bool)
        self._held_p_kw = np.zeros(n_devices)

    def inject(self, row: int, kind: str, factor: float = 0.5) -> None:
        """Start fault ``kind`` (one of :attr:`KINDS`) on device ``row``."""
        if kind == "pv_derate":
            self.pv_factor[row] = factor
        elif kind == "ignore_setpoint":
            self.ignores_setpoint[row] = True
        elif kind == "stuck_meter":
            self.stuck_meter[row] = True
        else:
            raise ValueError(f"unknown fault {kind!r}; faults are {self.KINDS}")

    def clear(self, row: int) -> None:
        """End every fault of device ``row``."""
        self.pv_factor[row] = 1.0
        self.ignores_setpoint[row] = False
        self.stuck_meter[row] = False

    def device_setpoint(self, setpoint: np.ndarray) -> np.ndarray:
        """The setpoints the devices really run with (NaN where they ignore them)."""
        if not self.ignores_setpoint.any():
            return setpoint
        return np.where(self.ignores_setpoint, np.nan, setpoint)

    def measure(self, p_kw: np.ndarray) -> np.ndarray:
        """What the meters report for true powers ``p_kw`` [kW]."""
        p = p_kw * self.pv_factor
        p = np.where(self.stuck_meter, self._held_p_kw, p)
        self._held_p_kw = p.copy()
        return p
