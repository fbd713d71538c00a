"""Ingest throughput: publisher process -> private Mosquitto -> TelemetryIngest -> twin arrays.

    python benchmarks/run.py ingest --shape site|device|metric --devices 10000 \
        --metrics 5 --seconds 20

A child process publishes pre-encoded telemetry at QoS 1 for ``--seconds``
as fast as the system takes it: at most ``--backlog`` messages may be
published but not yet decoded (end-to-end flow control through a shared
counter, so the broker does not pile up an unbounded queue; ``--backlog 0``
lifts it). This process runs one :class:`~adapters.mqtt.ingest.TelemetryIngest`
with a persistent session and counts every decoded value. ``values_per_s`` is
values written into the twin's arrays per second of ingest (first to last
message); ``lost`` is messages published but never decoded (should be 0).
``--rate`` paces the publisher instead (messages/s); ``lag_after_publish_s``
shows whether the ingest kept up (near 0) or drained a backlog after the
publisher stopped.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

import orjson

from adapters.mqtt.topics import device_telemetry_topic, metric_topic, site_telemetry_topic
from twin.generator import REFERENCE_SITES, generate_fleet

METRIC_VALUES = {"p_kw": 1.5, "q_kvar": 0.1, "v": 231.0, "e_kwh": 1234.5, "temp_c": 25.0,
                 "soc": 0.5}
DEVICES_PER_SITE = 9967 / REFERENCE_SITES  # of the generator's reference fleet


def _n_sites(devices: int) -> int:
    return max(1, round(devices / DEVICES_PER_SITE))


def _messages(shape: str, n_sites: int, n_metrics: int, ts: float) -> list[tuple[str, bytes]]:
    fleet = generate_fleet(n_sites)
    metrics = list(METRIC_VALUES)[:n_metrics]
    out: list[tuple[str, bytes]] = []
    for s in range(fleet.n_sites):
        site = fleet.site_id[s]
        ids = fleet.device_id[fleet.site_start[s]:fleet.site_stop[s]].tolist()
        if shape == "site":
            devs = {d: {m: METRIC_VALUES[m] for m in metrics} for d in ids}
            out.append((site_telemetry_topic(site), orjson.dumps({"ts": ts, "devices": devs})))
        elif shape == "device":
            for d in ids:
                body = {"ts": ts, **{m: METRIC_VALUES[m] for m in metrics}}
                out.append((device_telemetry_topic(site, d), orjson.dumps(body)))
        else:
            for d in ids:
                for m in metrics:
                    out.append((metric_topic(site, d, m), orjson.dumps(METRIC_VALUES[m])))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher on a plain socket, for load generation only.

    It writes pre-encoded PUBLISH packets in bulk and counts PUBACKs, so the
    load generator costs little CPU next to the broker and the ingest under
    test (real gateways are separate machines). Not for production use.
    """

    def __init__(self, host: str, port: int, client_id: str):
        import socket

        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        body = (b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        ack = self.sock.recv(4)
        if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
            raise ConnectionError(f"broker refused the benchmark publisher: {ack!r}")
        self.buf = b""
        self.acked = 0
        self.mid = 0

    def packet(self, topic: str, payload: bytes) -> bytes:
        self.mid = self.mid % 65535 + 1
        t = topic.encode()
        body = len(t).to_bytes(2, "big") + t + self.mid.to_bytes(2, "big") + payload
        return b"\x32" + _varint(len(body)) + body

    def read_acks(self, block: bool) -> None:
        self.sock.setblocking(block)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        finally:
            self.sock.setblocking(True)
        buf = self.buf + data
        i = 0
        while len(buf) - i >= 2:
            n, shift, j = 0, 0, i + 1
            while j < len(buf):
                byte = buf[j]
                n |= (byte & 0x7F) << shift
                shift += 7
                j += 1
                if not byte & 0x80:
                    break
            else:
                break
            if len(buf) - j < n:
                break
            if buf[i] >> 4 == 4:  # PUBACK
                self.acked += 1
            i = j + n
        self.buf = buf[i:]

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def _publish(url: str, shape: str, n_sites: int, n_metrics: int, seconds: float,
             window: int, rate: float, backlog: int, ingested: Any, go: Any,
             result: Any) -> None:
    from adapters.mqtt.client import parse_broker_url

    target = parse_broker_url(url)
    msgs = _messages(shape, n_sites, n_metrics, time.time())
    pub = RawPublisher(target.host, target.port, f"bench-pub-{os.getpid()}")
    go.wait()
    sent = 0
    chunk = max(1, min(window // 4, 256))
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    done = False
    while not done:
        for i in range(0, len(msgs), chunk):
            while sent - pub.acked > window - chunk:
                pub.read_acks(block=True)
            while backlog and sent - ingested.value > backlog:  # end-to-end flow control
                time.sleep(0.001)
                pub.read_acks(block=False)
            if rate > 0:  # pace: message number `sent` is due at t0 + sent / rate
                wait = t0 + sent / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            part = msgs[i:i + chunk]
            pub.sock.sendall(b"".join(pub.packet(t, p) for t, p in part))
            sent += len(part)
            pub.read_acks(block=False)
            if time.perf_counter() >= stop_at:
                done = True
                break
    deadline = time.perf_counter() + 60
    while pub.acked < sent and time.perf_counter() < deadline:
        pub.read_acks(block=True)
    elapsed = time.perf_counter() - t0
    acked = pub.acked
    pub.close()
    result.put({"published": sent, "acked": acked, "publish_s": elapsed,
                "done_at": time.time()})


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="run.py ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("site", "device", "metric"), default="site")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--metrics", type=int, default=5, choices=range(1, 7))
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--window", type=int, default=1000,
                   help="publisher's unacknowledged-message window")
    p.add_argument("--rate", type=float, default=0.0,
                   help="publish this many messages/s (default 0: as fast as the broker takes)")
    p.add_argument("--mqtt-version", type=int, choices=(5, 311), default=5,
                   help="the ingest's MQTT version (default 5)")
    p.add_argument("--backlog", type=int, default=5_000,
                   help="most messages published but not yet decoded (0: no limit, the "
                        "broker queues without bound)")
    args = p.parse_args(argv)
    return run(args.shape, args.devices, args.metrics, args.seconds, args.window, args.rate,
               args.mqtt_version, args.backlog)


def run(shape: str, devices: int, metrics: int, seconds: float,
        window: int = 1000, rate: float = 0.0, mqtt_version: int = 5,
        backlog: int = 5_000) -> dict[str, Any]:
    from adapters.broker import Broker
    from adapters.mqtt.ingest import TelemetryIngest

    n_sites = _n_sites(devices)
    fleet = generate_fleet(n_sites)
    counts = {"values": 0, "messages": 0, "first": 0.0, "last": 0.0, "last_wall": 0.0}

    def on_batch(batch: Any) -> None:
        now = time.perf_counter()
        if counts["messages"] == 0:
            counts["first"] = now
        counts["last"] = now
        counts["last_wall"] = time.time()
        counts["values"] += batch.n_values
        counts["messages"] += batch.messages
        ingested.value = counts["messages"]

    ctx = mp.get_context("spawn")
    ingested = ctx.Value("q", 0, lock=False)  # messages decoded so far (one writer)
    with Broker() as broker:
        ingest = TelemetryIngest(fleet, client_id="bench-ingest", mqtt_version=mqtt_version)
        ingest.add_listener("batch", on_batch)
        ingest.start(broker.url)
        go, result = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_publish, args=(broker.url, shape, n_sites, metrics, seconds,
                                                  window, rate, backlog, ingested, go,
                                                  result))
        proc.start()
        time.sleep(0.2)
        go.set()
        pub = result.get(timeout=seconds + 600)
        proc.join(30)
        deadline = time.monotonic() + 120
        while counts["messages"] < pub["published"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        ingest.stop()
        rejects = ingest.rejects
    span = max(counts["last"] - counts["first"], 1e-9)
    return {
        "benchmark": "ingest", "shape": shape, "devices": fleet.n_devices, "sites": n_sites,
        "metrics": metrics, "seconds": seconds, "mqtt_version": mqtt_version,
        "values_per_s": round(counts["values"] / span),
        "messages_per_s": round(counts["messages"] / span),
        "published": pub["published"], "received": counts["messages"],
        "lost": max(0, pub["published"] - counts["messages"]),
        "values": counts["values"], "ingest_span_s": round(span, 2),
        "publish_s": round(pub["publish_s"], 2), "rate": rate, "backlog": backlog,
        "acked_by_broker": pub["acked"],
        "lag_after_publish_s": round(max(0.0, counts["last_wall"] - pub["done_at"]), 2),
        "rejects": rejects,
        "cpus": os.cpu_count(),
    }
