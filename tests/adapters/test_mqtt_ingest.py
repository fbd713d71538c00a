"""Ingest against a real Mosquitto: shapes, bad input, offline/stale, two workers, restart."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import orjson
import pytest

from adapters.broker import Broker
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.ingest import TelemetryIngest, owns_site
from twin.generator import generate_fleet
from twin.telemetry import Telemetry


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(6, seed=3)


def _publisher(url: str, client_id: str, persistent: bool = False):
    c = make_client(client_id, persistent=persistent)
    connect(c, url)
    c.loop_start()
    return c


def _wait(cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_three_shapes_reach_the_arrays(fleet, mqtt_url):
    ing = TelemetryIngest(fleet, client_id="shapes").start(mqtt_url)
    pub = _publisher(mqtt_url, "shapes-pub")
    now = time.time()
    site = fleet.site_id[0]
    d0, d1, d2 = fleet.device_id[fleet.site_start[0]:fleet.site_start[0] + 3]
    try:
        pub.publish(f"sites/{site}/devices/{d0}/telemetry/p_kw", b"12.5", qos=1)
        pub.publish(f"sites/{site}/devices/{d0}/telemetry/temp_c",
                    orjson.dumps({"ts": now - 5, "value": 31.0}), qos=1)
        pub.publish(f"sites/{site}/devices/{d1}/telemetry",
                    orjson.dumps({"ts": now - 2, "p_kw": 3.0, "v": 231.0, "humidity": 40}),
                    qos=1)
        pub.publish(f"sites/{site}/telemetry", orjson.dumps(
            {"ts": now - 1, "devices": {d2: {"p_kw": -1.5, "q_kvar": 0.2}}}), qos=1).wait_for_publish()
        assert _wait(lambda: ing.counters()["values"] == 7)
        tel = ing.telemetry
        assert tel.get(d0, "p_kw")[0] == 12.5
        assert tel.get(d0, "temp_c") == (31.0, now - 5)
        assert tel.get(d1, "v") == (231.0, now - 2)
        assert tel.get(d1, "humidity")[0] == 40.0  # unknown metric kept
        assert tel.get(d2, "q_kvar")[0] == 0.2
        assert ing.rejects == {}
    finally:
        pub.disconnect()
        pub.loop_stop()
        ing.stop()


BAD = [
    ("sites/{s}/devices/{d}/telemetry", b"{not json", "malformed_json"),
    ("sites/{s}/devices/{d}/telemetry", b'{"p_kw": "high"}', "wrong_type"),
    ("sites/{s}/devices/{d}/telemetry", b'{"p_kw": NaN}', "not_finite"),
    ("sites/{s}/devices/{d}/telemetry/p_kw", b"1e999", "not_finite"),
    ("sites/{s}/devices/{d}/telemetry/", b"1", "bad_topic"),  # empty metric name
    ("sites/NOPE/devices/{d}/telemetry/p_kw", b"1", "unknown_site"),
    ("sites/{s}/devices/NOPE/telemetry/p_kw", b"1", "unknown_device"),
    ("sites/{s}/devices/{d}/telemetry", b'{"p_kw": 1, "pad": "' + b"x" * 70000 + b'"}',
     "too_large"),
    ("sites/{s}/devices/{d}/telemetry", b'{"ts": 4102444800, "p_kw": 1}', "future_timestamp"),
    ("sites/{s}/devices/{d}/telemetry", b'{"ts": "now", "p_kw": 1}', "bad_timestamp"),
    ("sites/{s}/devices/{d}/telemetry", b'{"soc": 1.7}', "out_of_range"),
    ("sites/{s}/devices/{d}/telemetry", b'{"p_kw": 1e9}', "out_of_range"),
    ("sites/{s}/status", b"maybe", "bad_status"),
]


def test_bad_input_is_counted_and_changes_nothing(fleet, mqtt_url):
    ing = TelemetryIngest(fleet, client_id="bad").start(mqtt_url)
    pub = _publisher(mqtt_url, "bad-pub")
    s, d = fleet.site_id[1], fleet.device_id[fleet.site_start[1]]
    before = ing.telemetry.snapshot()
    try:
        for topic, payload, _ in BAD:
            pub.publish(topic.format(s=s, d=d), payload, qos=1)
        # a good message last: ingest is still running after all the bad ones
        pub.publish(f"sites/{s}/devices/{d}/telemetry/p_kw", b"2.0", qos=1)
        assert _wait(lambda: ing.counters()["values"] == 1)
        after = ing.telemetry.snapshot()
        want = {}
        for _, _, reason in BAD:
            want[reason] = want.get(reason, 0) + 1
        assert ing.rejects == want
        assert after["metrics"] == before["metrics"]  # no column from bad input
        new = ~np.isnan(after["ts_s"]) & np.isnan(before["ts_s"])
        assert int(new.sum()) == 1  # only the good value
        assert (after["site_online"] == before["site_online"]).all()
    finally:
        pub.disconnect()
        pub.loop_stop()
        ing.stop()


def test_will_marks_devices_offline_and_silence_marks_stale(fleet, mqtt_url):
    tel = Telemetry(fleet, expected_interval_s=0.2)
    ing = TelemetryIngest(fleet, tel, client_id="will", stale_check_s=0.05)
    events = []
    ing.add_listener("status", events.append)
    ing.start(mqtt_url)
    site = fleet.site_id[2]
    rows = np.arange(fleet.site_start[2], fleet.site_stop[2])
    gw = make_client("gw-test", persistent=False)
    gw.will_set(f"sites/{site}/status", b"offline", qos=1, retain=True)
    connect(gw, mqtt_url)
    gw.loop_start()
    try:
        gw.publish(f"sites/{site}/status", b"online", qos=1, retain=True)
        for r in rows:
            gw.publish(f"sites/{site}/devices/{fleet.device_id[r]}/status", b"online", qos=1,
                       retain=True)
            gw.publish(f"sites/{site}/devices/{fleet.device_id[r]}/telemetry/p_kw", b"1", qos=1)
        assert _wait(lambda: tel.online[rows].all())
        t_online = tel.online_changed_s[rows].copy()
        # silence: stale after 3 x 0.2 s
        assert _wait(lambda: tel.stale[rows].all(), 5)
        assert (tel.stale_changed_s[rows] > t_online).all()
        # kill the connection without DISCONNECT: the broker publishes the Will
        gw.socket().shutdown(socket.SHUT_RDWR)
        assert _wait(lambda: not tel.online[rows].any(), 10)
        assert tel.site_online[2] == 0
        assert (tel.online_changed_s[rows] > t_online).all()
        kinds = {e.kind for e in events}
        assert {"gateway", "device", "stale"} <= kinds
    finally:
        gw.disconnect()
        gw.loop_stop()
        ing.stop()


def test_two_workers_share_the_sites_and_lose_nothing(tmp_path):
    fleet = generate_fleet(12, seed=5)
    broker = Broker(tmp_path / "mq").start()  # no retained messages from other tests
    mqtt_url = broker.url
    workers = [TelemetryIngest(fleet, client_id=f"part-{k}", partition=(k, 2)).start(mqtt_url)
               for k in range(2)]
    owned = [np.array([owns_site(s, (k, 2)) for s in fleet.site_id]) for k in range(2)]
    assert (owned[0] ^ owned[1]).all() and owned[0].any() and owned[1].any()
    pub = _publisher(mqtt_url, "part-pub")
    now = time.time()
    try:
        n_msgs = 0
        for rnd in range(5):
            for s in range(fleet.n_sites):
                devs = {fleet.device_id[d]: {"p_kw": float(rnd), "v": 230.0}
                        for d in range(fleet.site_start[s], fleet.site_stop[s])}
                pub.publish(f"sites/{fleet.site_id[s]}/telemetry",
                            orjson.dumps({"ts": now + rnd, "devices": devs}), qos=1)
                n_msgs += 1
        total = 5 * 2 * fleet.n_devices
        assert _wait(lambda: sum(w.counters()["values"] for w in workers) >= total)
        assert sum(w.counters()["messages"] for w in workers) == n_msgs
        for k, w in enumerate(workers):
            seen = ~np.isnan(w.telemetry.ts_s[:, 0])
            mine = owned[k][fleet.device_site]
            assert (seen == mine).all()  # each device's state in exactly one worker
            assert (w.telemetry.value[mine, 0] == 4.0).all()
    finally:
        pub.disconnect()
        pub.loop_stop()
        for w in workers:
            w.stop()
        broker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mqtt_version", [5, 311])
def test_broker_restart_mid_stream_loses_nothing(fleet, tmp_path, mqtt_version):
    broker = Broker(tmp_path / "mq").start()
    seqs: set[int] = set()
    lock = threading.Lock()
    ing = TelemetryIngest(fleet, client_id="restart-ingest", mqtt_version=mqtt_version)

    def on_batch(batch):
        col = ing.telemetry.metric_index.get("seq")
        with lock:
            seqs.update(batch.values[batch.cols == col].astype(int).tolist())

    ing.add_listener("batch", on_batch)
    ing.start(broker.url)
    pub = _publisher(broker.url, "restart-pub", persistent=True)
    site, dev = fleet.site_id[0], fleet.device_id[0]
    n = 3000
    try:
        for i in range(n):
            pub.publish(f"sites/{site}/devices/{dev}/telemetry/seq", str(i).encode(), qos=1)
            if i == n // 3:
                broker.restart(down_s=0.5)
            if i % 100 == 0:
                time.sleep(0.01)
        assert _wait(lambda: len(seqs) == n, 30), f"{n - len(seqs)} lost"
        assert seqs == set(range(n))
        assert ing.connects >= 2  # reconnected after the restart
    finally:
        pub.disconnect()
        pub.loop_stop()
        ing.stop()
        broker.stop()
