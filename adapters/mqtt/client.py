"""The thin layer over paho-mqtt: broker URLs and client set-up.

Everything else in :mod:`adapters.mqtt` is plain Python on bytes and arrays;
only this module and the classes that own a connection import paho.

Broker URLs: ``mqtt://[user[:password]@]host[:port]`` (plain TCP, port 1883 by
default) or ``mqtts://...`` (TLS, port 8883, the system CA store unless a CA
file is given).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.client import DISCONNECT, PUBACK, PUBLISH
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600  # how long the broker keeps a persistent session's queue
# What paho decodes from a bare PUBACK (no reason code, no properties), made once.
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


class FastClient(mqtt.Client):
    """paho's client with buffered socket reads and coalesced PUBACKs.

    paho reads every packet with two or more ``recv`` calls (one byte for the
    type, one per length byte, then the body), handles one packet per
    ``select`` and sends every PUBACK with its own ``send``. This subclass
    reads the socket in 256 KiB chunks; a packet that is whole in that buffer
    is taken in one slice, and paho's small reads are served from the buffer
    for the rest (a packet split across two chunks); :meth:`loop_read` drains
    everything buffered; PUBACKs made
    while reading are collected (in order) and sent in one ``send`` every
    2,000 packets and at the end of the read.

    With ``raw_sink`` set to ``fn(topic, payload)``, QoS 0/1 PUBLISH packets
    go straight to it (no ``MQTTMessage``, MQTT 5 properties skipped unread)
    instead of ``on_message``; the PUBACK follows as usual. A bare PUBACK
    (the broker's success, no properties) is not decoded: ``on_publish`` gets
    shared success reason code and empty properties objects (paho built two
    new ones for each, most of the cost of a burst's acknowledgements).

    Sending: paho wakes its network thread once per published packet and
    writes each packet with its own ``send`` (without a network thread, it
    writes each at once). Inside :meth:`corked` the packets are only queued
    and, at the end, the thread wakes once (without one, they are written
    there and then); the writer joins queued packets into sends of up to
    64 KiB. Nothing else changes. It
    overrides private paho methods (``_sock_recv``, ``_sock_close``,
    ``_packet_read``, ``_send_puback``, ``_handle_publish``,
    ``_handle_pubackcomp``, ``_packet_queue``, ``_packet_write``), checked
    against paho-mqtt 2.1-2.2.
    """

    _CHUNK = 262_144
    _WRITE_CHUNK = 65_536
    _BURST = 256  # publish_many: packets built before the network thread writes them

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._acks = bytearray()
        self._reading = False
        self.raw_sink: Callable[[str, bytes], None] | None = None
        self._corked = 0
        self._cork_lock = threading.Lock()

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._CHUNK)
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos:end]
        self._rpos += len(out)
        return out

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        buf, start = self._rbuf, self._rpos
        if self._in_packet["command"] or start >= len(buf):
            return super()._packet_read()  # paho's reader: a new chunk, or a split packet
        try:  # the remaining length: at most 4 bytes after the type byte
            length, n = VariableByteIntegers.decode(buf[start + 1:start + 5])
        except MalformedPacket:
            return super()._packet_read()  # split header, or paho reports the error
        i = start + 1 + n
        if i + length > len(buf):
            return super()._packet_read()  # the body goes on in the next chunk
        self._rpos = i + length
        self._in_packet["command"] = buf[start]
        self._in_packet["packet"] = bytearray(memoryview(buf)[i:i + length])
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [],
                           "remaining_mult": 1, "remaining_length": 0,
                           "packet": bytearray(b""), "to_process": 0, "pos": 0}
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        sink = self.raw_sink
        command = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if sink is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end = 2 + ((packet[0] << 8) | packet[1])
            topic = packet[2:end]
            mid = 0
            if qos:
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            if self._protocol == mqtt.MQTTv5:
                # Skip the properties: no topic aliases are negotiated, so none are needed.
                n, used = VariableByteIntegers.decode(packet[end:end + 4])
                end += used + n
            name = topic.decode()
        except (IndexError, MalformedPacket, UnicodeDecodeError):
            return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        sink(name, packet[end:])
        return self._send_puback(mid) if qos == 1 else mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Any) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:  # a reason code or properties: paho's way
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- sending -----------------------------------------------------------------------
    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Publish many packets in the block; they are written together after it."""
        with self._cork_lock:
            self._corked += 1
        try:
            yield
        finally:
            with self._cork_lock:
                self._corked -= 1
                last = self._corked == 0
            if last and self._out_packet:
                self._wake_writer()

    def _wake_writer(self) -> None:
        if self._thread is None and self._on_socket_register_write is None:
            # The owner runs the loop (the emulator): write now, as paho's publish does,
            # unless inside one of paho's callbacks (the owner's loop writes them next).
            if self._in_callback_mutex.acquire(False):
                self._in_callback_mutex.release()
                self.loop_write()
            return
        if self._sockpairW is not None:
            with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
                self._sockpairW.send(b"0")
        self._call_socket_register_write()

    def publish_many(self, messages: list[tuple[str | bytes, bytes]], *, retain: bool = False
                     ) -> list[int]:
        """Publish many ``(topic, payload)`` at QoS 1 in one go; returns their message ids.

        What :meth:`publish` does per message, with paho's bookkeeping intact
        (the message waits in ``_out_messages`` for its PUBACK, is resent on
        reconnect, respects the inflight limit, ``on_publish`` follows), but
        without a ``threading.Condition`` per message (nobody waits on these:
        ``wait_for_publish`` is not available for them) and without paho's
        per-packet logging. The packets go out in bursts of ``_BURST`` (each
        inside :meth:`corked`): the broker works on the first while the rest
        are built. Topics may be given encoded. Not connected: falls back to
        :meth:`publish`, which queues for the reconnect.
        """
        if self._sock is None:
            return [self.publish(t, p, qos=1, retain=retain).mid for t, p in messages]
        mids: list[int] = []
        header = bytes((PUBLISH | (1 << 1) | int(retain),))
        props = b"\x00" if self._protocol == mqtt.MQTTv5 else b""
        now = mqtt.time_func()
        for start in range(0, len(messages), self._BURST):
            with self.corked(), self._out_message_mutex:
                for topic, payload in messages[start:start + self._BURST]:
                    topic_b = topic if isinstance(topic, bytes) else topic.encode()
                    self._raise_for_invalid_topic(topic_b)
                    mid = self._mid_generate()
                    if mid in self._out_messages:
                        raise RuntimeError("more than 65,535 QoS 1 messages unacknowledged")
                    m = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)  # MQTTMessage without
                    m.mid, m._topic, m.payload, m.qos = mid, topic_b, payload, 1  # Condition
                    m.retain, m.dup, m.properties, m.timestamp = retain, False, None, now
                    m.info = _BatchInfo(mid)  # type: ignore[assignment]
                    self._out_messages[mid] = m
                    mids.append(mid)
                    if self._max_inflight_messages and (
                            self._inflight_messages >= self._max_inflight_messages):
                        m.state = mqtt.mqtt_ms_queued  # goes out as PUBACKs free the window
                        continue
                    self._inflight_messages += 1
                    m.state = mqtt.mqtt_ms_wait_for_puback
                    n = len(topic_b)
                    packet = b"".join((
                        header, VariableByteIntegers.encode(4 + n + len(props) + len(payload)),
                        n.to_bytes(2, "big"), topic_b, mid.to_bytes(2, "big"), props, payload))
                    self._packet_queue(PUBLISH, packet, mid, 1, m.info)  # type: ignore[arg-type]
        return mids

    def limit_inflight(self, n: int) -> None:
        """Messages with QoS > 0 in flight at once (0: no limit), also while connected
        (paho's setter refuses that): called from ``on_connect`` with the broker's
        Receive Maximum. Without a limit paho never walks its queue on a PUBACK."""
        if n < 0:
            raise ValueError(f"inflight limit must be >= 0, got {n}")
        with self._out_message_mutex:
            self._max_inflight_messages = int(n)

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        if not self._corked:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        """Write queued packets, several per ``send``.

        Packets that need paho's bookkeeping once written (QoS 0 PUBLISH:
        ``on_publish``; DISCONNECT: closing) go through paho's own writer.
        """
        out = self._out_packet
        while out:
            head = out[0]
            kind = head["command"] & 0xF0
            if kind == DISCONNECT or (kind == PUBLISH and head["qos"] == 0):
                return super()._packet_write()
            batch, size = [], 0
            while out and size < self._WRITE_CHUNK:
                p = out[0]
                k = p["command"] & 0xF0
                if k == DISCONNECT or (k == PUBLISH and p["qos"] == 0):
                    break
                batch.append(out.popleft())
                size += p["to_process"]
            data = b"".join(bytes(p["packet"][p["pos"]:]) for p in batch)
            try:
                n = self._sock_send(data)
            except (AttributeError, ValueError):
                out.extendleft(reversed(batch))
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(batch))
                return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(batch))
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()  # for the keep-alive
            for i, p in enumerate(batch):
                step = min(n, p["to_process"])
                p["pos"] += step
                p["to_process"] -= step
                n -= step
                if p["to_process"]:
                    out.extendleft(reversed(batch[i:]))  # the socket is full: later
                    return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket_connection(self) -> socket.socket:
        sock = super()._create_socket_connection()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small packets (a setpoint, an ack) go out at once, not after the peer's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        self._acks.clear()  # unacknowledged QoS 1 messages come again with the session
        super()._sock_close()

    def _send_puback(self, mid: int) -> mqtt.MQTTErrorCode:
        if not self._reading:
            return super()._send_puback(mid)
        self._acks += struct.pack("!BBH", PUBACK, 2, mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _flush_acks(self) -> mqtt.MQTTErrorCode:
        while self._acks and self._sock is not None:
            try:
                sent = self._sock.send(self._acks)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS  # later: want_write() stays true
            except OSError:
                return self._loop_rc_handle(mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST)
            del self._acks[:sent]
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def want_write(self) -> bool:
        return bool(self._acks) or super().want_write()

    def loop_write(self) -> mqtt.MQTTErrorCode:
        rc = self._flush_acks()
        if rc:
            return rc
        return super().loop_write()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        n = 0
        self._reading = True
        try:
            while True:
                if self._sock is None:
                    return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                    return self._flush_acks()
                n += 1
                if n % 2000 == 0:
                    rc = self._flush_acks()
                    if rc:
                        return rc
        finally:
            self._reading = False


class _BatchInfo:
    """The ``MQTTMessageInfo`` of a :meth:`FastClient.publish_many` message (no Condition)."""

    __slots__ = ("_published", "mid", "rc")

    def __init__(self, mid: int):
        self.mid = mid
        self.rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        self._published = False

    def _set_as_published(self) -> None:
        self._published = True

    def is_published(self) -> bool:
        return self._published


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker URL."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://`` / ``mqtts://`` URLs; raises ``ValueError`` naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: bad port") from exc
    return BrokerUrl(parts.hostname, port, tls,
                     unquote(parts.username) if parts.username else None,
                     unquote(parts.password) if parts.password else None)


def make_client(client_id: str, *, persistent: bool = False,
                username: str | None = None, password: str | None = None,
                ca_file: str | None = None, max_inflight: int = 1000,
                mqtt_version: int = 5) -> mqtt.Client:
    """A paho client (:class:`FastClient`) with reconnect back-off from 0.5 s to 30 s.

    ``persistent=True`` gives a session the broker keeps after a disconnect
    (clean start off), so QoS 1 messages sent while the client is away are
    delivered when it returns; with MQTT 5 the session expires
    :data:`SESSION_EXPIRY_S` seconds after the client left (set by
    :func:`connect`); with 3.1.1 (``mqtt_version=311``) the broker's own
    setting applies (Mosquitto: ``persistent_client_expiration``). 3.1.1 costs
    less per message in paho (no property parsing).
    """
    if mqtt_version not in (5, 311):
        raise ValueError(f"mqtt_version must be 5 or 311, got {mqtt_version}")
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if mqtt_version == 5 else mqtt.MQTTv311,
                        clean_session=None if mqtt_version == 5 else not persistent)
    client.reconnect_delay_set(min_delay=0.5, max_delay=30)
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    if username:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client._ecogrid_persistent = persistent  # type: ignore[attr-defined]
    return client


def connect(client: mqtt.Client, url: str, *, keepalive_s: int = 30,
            ca_file: str | None = None, blocking: bool = True) -> None:
    """Connect ``client`` to the broker at ``url``.

    ``blocking=False`` only records the target: the network loop
    (``loop_start``) then connects and keeps retrying with back-off.

    Credentials in the URL override those set on the client; ``mqtts://``
    turns TLS on with the system CA store (or ``ca_file``).
    """
    target = parse_broker_url(url)
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls and not ca_file and client._ssl_context is None:
        client.tls_set_context(ssl.create_default_context())
    elif target.tls and ca_file:
        client.tls_set(ca_certs=ca_file)
    persistent = getattr(client, "_ecogrid_persistent", False)
    how = client.connect if blocking else client.connect_async
    if client.protocol != mqtt.MQTTv5:  # 3.1.1: the session flag was set in make_client
        how(target.host, target.port, keepalive=keepalive_s)
        return
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    how(target.host, target.port, keepalive=keepalive_s, clean_start=not persistent,
        properties=props)


def reason_failed(reason_code: object) -> bool:
    """True when a paho v2 reason code (or int) says the operation failed."""
    is_failure = getattr(reason_code, "is_failure", None)
    if is_failure is not None:
        return bool(is_failure)
    return bool(reason_code)
