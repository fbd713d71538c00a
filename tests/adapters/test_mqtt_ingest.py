"""Ingest against a real Mosquitto: shapes, bad input, offline/stale, two workers (site
partitions and a shared-subscription group), restart."""

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
from adapters.mqtt.topics import validate_group
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


def test_paused_decoding_queues_and_catches_up(fleet, mqtt_url):
    ing = TelemetryIngest(fleet, client_id="paused").start(mqtt_url)
    pub = _publisher(mqtt_url, "paused-pub")
    site, dev = fleet.site_id[0], fleet.device_id[fleet.site_start[0]]
    try:
        with ing.paused(max_s=10.0):
            pub.publish(f"sites/{site}/devices/{dev}/telemetry/p_kw", b"7.5",
                        qos=1).wait_for_publish()
            assert _wait(lambda: ing._received == 1)  # arrived, queued...
            time.sleep(0.3)
            assert ing.counters()["values"] == 0  # ...and not decoded while paused
        assert _wait(lambda: ing.counters()["values"] == 1)
        assert ing.telemetry.get(dev, "p_kw")[0] == 7.5
        with ing.paused(max_s=0.2):  # a pause longer than max_s does not stop ingest
            pub.publish(f"sites/{site}/devices/{dev}/telemetry/p_kw", b"8.5",
                        qos=1).wait_for_publish()
            assert _wait(lambda: ing.counters()["values"] == 2)
    finally:
        pub.disconnect()
        pub.loop_stop()
        ing.stop()


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


def _seq_collector(ing: TelemetryIngest, seqs: list[int], lock: threading.Lock):
    def on_batch(batch):
        col = ing.telemetry.metric_index.get("seq")
        with lock:
            seqs.extend(batch.values[batch.cols == col].astype(int).tolist())
    return on_batch


@pytest.mark.parametrize("mqtt_version", [5, 311])
def test_shared_group_splits_messages_and_members_join_and_leave(tmp_path, mqtt_version):
    """Every message reaches exactly one member: with two members, when a third joins
    mid-stream and when one leaves (stop) mid-stream."""
    fleet = generate_fleet(6, seed=3)
    broker = Broker(tmp_path / "mq").start()
    lock = threading.Lock()
    seqs: dict[str, list[int]] = {}

    def member(name: str) -> TelemetryIngest:
        ing = TelemetryIngest(fleet, client_id=name, shared_group="ecogrid-ingest",
                              mqtt_version=mqtt_version)
        seqs[name] = []
        ing.add_listener("batch", _seq_collector(ing, seqs[name], lock))
        return ing.start(broker.url)

    workers = [member("sh-a"), member("sh-b")]
    assert workers[0].topic_filters()[0] == "$share/ecogrid-ingest/sites/+/telemetry"
    assert len(workers[0].topic_filters()) == 5 and len(workers[0].sites) == fleet.n_sites
    pub = make_client("sh-pub", mqtt_version=mqtt_version)
    connect(pub, broker.url)
    pub.loop_start()
    n = 600
    rows = np.arange(fleet.n_devices)
    try:
        for i in range(n):  # device i % n_devices, all sites, every topic shape in turn
            r = int(rows[i % len(rows)])
            site, dev = fleet.site_id[fleet.device_site[r]], fleet.device_id[r]
            topic, payload = [
                (f"sites/{site}/devices/{dev}/telemetry/seq", str(i).encode()),
                (f"sites/{site}/devices/{dev}/telemetry", orjson.dumps({"seq": i})),
                (f"sites/{site}/telemetry", orjson.dumps({"devices": {dev: {"seq": i}}})),
            ][i % 3]
            info = pub.publish(topic, payload, qos=1)
            if i == 200:
                info.wait_for_publish(5)  # 0..200 are routed before the new member joins
                workers.append(member("sh-c"))  # joins mid-stream
            if i == 400:
                info.wait_for_publish(5)
                workers[0].stop()  # leaves mid-stream: takes what it was sent
            if i % 50 == 0:
                info.wait_for_publish(5)
        info.wait_for_publish(5)
        assert _wait(lambda: sum(len(v) for v in seqs.values()) >= n), \
            {k: len(v) for k, v in seqs.items()}
        time.sleep(0.2)  # nothing more may come (no duplicates)
        with lock:
            got = {k: list(v) for k, v in seqs.items()}
        everything = [s for v in got.values() for s in v]
        assert sorted(everything) == list(range(n))  # each message in exactly one member
        assert all(got.values()), {k: len(v) for k, v in got.items()}  # all took a share
        assert min(got["sh-c"]) > 200 and max(got["sh-a"]) <= 400
        assert sum(w.counters()["messages"] for w in workers) == n
        assert all(w.rejects == {} for w in workers)
        # Each member's arrays hold only what it saw: seq of a device is its last message
        # in that member.
        for w in workers:
            col = w.telemetry.metric_index["seq"]
            seen = ~np.isnan(w.telemetry.ts_s[:, col])
            assert 0 < seen.sum() <= fleet.n_devices
    finally:
        pub.disconnect()
        pub.loop_stop()
        for w in workers:
            w.stop()
        broker.stop()


def test_shared_group_names_and_partitions_are_checked(fleet):
    assert validate_group("ecogrid-ingest") == "ecogrid-ingest"
    for bad in ("", "a/b", "a+", "#", "x#y"):
        with pytest.raises(ValueError, match="shared subscription group"):
            validate_group(bad)
    with pytest.raises(ValueError, match="shared subscription group"):
        TelemetryIngest(fleet, shared_group="g/1")
    with pytest.raises(ValueError, match=r"shared_group=.*partition="):
        TelemetryIngest(fleet, shared_group="g", partition=(0, 2))
    ing = TelemetryIngest(fleet, shared_group="g", partition=(0, 1))
    assert ing.topic_filters() == [f"$share/g/sites/+/{f}" for f in (
        "telemetry", "status", "devices/+/telemetry", "devices/+/telemetry/+",
        "devices/+/status")]


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
                old_pid = broker.pid
                broker.restart(down_s=0.5)
                assert broker.pid not in (None, old_pid)  # a new Mosquitto process
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
