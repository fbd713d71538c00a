"""FastClient's batch publishing against a real Mosquitto."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.mqtt.client import FastClient, connect, make_client


def _subscriber(url: str, topic: str) -> tuple[FastClient, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    sub = make_client(f"sub-{time.monotonic_ns()}")
    sub.raw_sink = lambda t, p: got.append((t, p))
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    connect(sub, url)
    sub.loop_start()
    assert ready.wait(10)
    return sub, got


def _wait(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("inflight", [0, 50])
def test_publish_many_delivers_every_message_in_order_in_bursts(mqtt_url, inflight):
    sub, got = _subscriber(mqtt_url, "t/many/+")
    pub = make_client(f"pub-{inflight}", max_inflight=inflight)
    acked: list[int] = []
    pub.on_publish = lambda c, u, mid, *a: acked.append(mid)
    connect(pub, mqtt_url)
    pub.loop_start()
    try:
        _wait(pub.is_connected)
        n = 3 * FastClient._BURST + 17  # several bursts and a partial one
        messages = [(f"t/many/{i}" if i % 2 else f"t/many/{i}".encode(), b"%d" % i)
                    for i in range(n)]
        mids = pub.publish_many(messages)
        assert len(set(mids)) == n
        _wait(lambda: len(got) == n and len(acked) == n)
        assert got == [(f"t/many/{i}", b"%d" % i) for i in range(n)]
        assert sorted(acked) == sorted(mids) and not pub._out_messages  # all PUBACKed
        with pytest.raises(ValueError, match="wildcards"):
            pub.publish_many([("t/many/+", b"x")])
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()


def test_publish_many_without_a_network_thread_writes_at_the_end(mqtt_url):
    """The emulator runs its clients' loops itself: the batch is written when it ends."""
    sub, got = _subscriber(mqtt_url, "t/own/+")
    pub = make_client("pub-own-loop")
    connect(pub, mqtt_url)
    try:
        _wait(lambda: (pub.loop(0.05), pub.is_connected())[1])
        pub.publish_many([(f"t/own/{i}", b"x") for i in range(300)])
        assert not pub._out_packet  # written in publish_many, no loop call needed
        _wait(lambda: len(got) == 300)
    finally:
        pub.disconnect()
        sub.disconnect()
        sub.loop_stop()


def test_packets_whole_in_the_read_buffer_and_split_across_reads_arrive_intact(mqtt_url):
    """The subscriber reads 256 KiB at a time: small packets are sliced out of the buffer,
    a 300 kB one and those cut by a chunk's end go through paho's reader."""
    sub, got = _subscriber(mqtt_url, "t/read/+")
    pub = make_client("pub-read")
    connect(pub, mqtt_url)
    pub.loop_start()
    try:
        _wait(pub.is_connected)
        sizes = [10, 300_000, 5, 70_000] * 4 + [1, 200, 3000] * 700
        messages = [(f"t/read/{i}", bytes([i % 251]) * n) for i, n in enumerate(sizes)]
        pub.publish_many(messages)
        _wait(lambda: len(got) == len(messages))
        assert [(t, bytes(p)) for t, p in got] == messages
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
