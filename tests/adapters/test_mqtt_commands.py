"""Setpoints out through a real Mosquitto to the device emulator, and back as acks."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from adapters.emulator import Emulator
from adapters.mqtt.commands import CommandPublisher, MemoryCommandStore
from adapters.mqtt.topics import ack_topic
from adapters.mqtt.types import APPLIED, EXPIRED, QUEUED, RECEIVED, REJECTED, SENT, CommandRecord
from adapters.registry import open_registry
from adapters.registry.command_store import SqlCommandStore
from twin.generator import generate_fleet
from twin.limits import SETPOINT_KEY


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(3, seed=4)


def _pump(emu: Emulator, cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        emu.run(0.02)  # a tick (setpoints received since are applied), then the network
        if cond():
            return True
    return cond()


def _rows(fleet, kind):
    return [str(fleet.device_id[r]) for r in fleet.rows_of_type(kind)]


def test_the_device_confirms_applied_at_its_next_step(fleet, mqtt_url):
    pub = CommandPublisher(fleet, client_id="cmd-step")
    pub.start(mqtt_url)
    emu = Emulator(fleet, mqtt_url)
    emu.connect()
    bat = _rows(fleet, "battery")[1]
    try:
        rec = pub.send(bat, 20.0, valid_for_s=60)
        deadline = time.monotonic() + 10
        while pub.get(rec.command_id).state != RECEIVED and time.monotonic() < deadline:
            emu.poll(0.02)  # the network only: no physics step
        assert pub.get(rec.command_id).state == RECEIVED
        assert emu.acks == {"received": 1, "applied": 0, "rejected": 0}
        assert _pump(emu, lambda: pub.get(rec.command_id).state == APPLIED)
        assert emu.acks["applied"] == 1
    finally:
        emu.stop()
        pub.stop()


def test_setpoints_are_applied_or_rejected_by_the_device(fleet, mqtt_url):
    changes = []
    pub = CommandPublisher(fleet, client_id="cmd-e2e")
    pub.add_listener(changes.append)
    pub.start(mqtt_url)
    emu = Emulator(fleet, mqtt_url)
    emu.connect()
    bat, pv = _rows(fleet, "battery")[0], _rows(fleet, "pv")[0]
    try:
        ok = pub.send(bat, 40.0, valid_for_s=60)
        bad = pub.send(pv, -5.0, valid_for_s=60)
        assert ok.version == 1 and ok.state in (QUEUED, SENT)  # the PUBACK may be back
        assert _pump(emu, lambda: pub.get(ok.command_id).terminal
                     and pub.get(bad.command_id).terminal)
        rec = pub.get(ok.command_id)
        assert rec.state == APPLIED
        assert [s for s, _ in rec.transitions] == [QUEUED, SENT, RECEIVED, APPLIED]
        rej = pub.get(bad.command_id)
        assert rej.state == REJECTED and "outside the device's limits" in rej.reason
        row = fleet.device_row[bat]
        assert emu.setpoint[row] == 40.0 and emu.applied_version[row] == 1
        emu.tick(time.time())
        assert emu.twin.state.p_kw[row] == pytest.approx(40.0)  # battery follows the setpoint
        assert {(c.command_id, c.state) for c in changes} >= {(ok.command_id, APPLIED),
                                                              (bad.command_id, REJECTED)}
        assert [r.command_id for r in pub.history(bat)] == [ok.command_id]
        # a newer version supersedes; the device applies it
        newer = pub.send(bat, -20.0, valid_for_s=60)
        assert newer.version == 2
        assert _pump(emu, lambda: pub.get(newer.command_id).state == APPLIED)
        assert emu.setpoint[row] == -20.0
    finally:
        emu.stop()
        pub.stop()
    # the setpoint is retained: a gateway that connects later gets the desired state
    emu2 = Emulator(fleet, mqtt_url)
    emu2.connect()
    try:
        assert _pump(emu2, lambda: emu2.applied_version[row] == 2)
        assert emu2.setpoint[row] == -20.0
    finally:
        emu2.stop()


def test_unacknowledged_command_is_retried_then_expires(fleet, mqtt_url):
    pub = CommandPublisher(fleet, client_id="cmd-retry", ack_timeout_s=0.15,
                           check_interval_s=0.05).start(mqtt_url)
    try:
        rec = pub.send(_rows(fleet, "ev_charger")[0] if _rows(fleet, "ev_charger")
                       else _rows(fleet, "pv")[0], 5.0, valid_for_s=0.8)
        deadline = time.monotonic() + 5
        while not pub.get(rec.command_id).terminal and time.monotonic() < deadline:
            time.sleep(0.05)
        final = pub.get(rec.command_id)
        assert final.state == EXPIRED and final.reason == "valid_until passed"
        assert final.attempts >= 3  # first send plus retries
        assert SENT in [s for s, _ in final.transitions]
    finally:
        pub.stop()


def test_a_lost_applied_ack_heals_by_publishing_again(fleet, mqtt_url):
    """A broker under a burst may drop acknowledgements (Mosquitto's max_queued_messages):
    a command left ``received`` is published again, and the device confirms it."""
    pub = CommandPublisher(fleet, client_id="cmd-heal", final_ack_timeout_s=0.5,
                           check_interval_s=0.05).start(mqtt_url)
    emu = Emulator(fleet, mqtt_url)
    emu.connect()
    ours: list[str] = []
    lost: list[dict] = []
    send_applied = emu._send_applied

    def drop_ours_once(now_s: float) -> None:  # our first applied ack never arrives
        for site_row, acks in emu._applied.items():
            if not lost:
                lost.extend(a for _, a in acks if ours and a["command_id"] == ours[0])
                emu._applied[site_row] = [(t, a) for t, a in acks if a not in lost]
        send_applied(now_s)

    emu._send_applied = drop_ours_once
    bat = _rows(fleet, "battery")[-1]  # no other test's retained setpoint
    try:
        rec = pub.send(bat, 15.0, valid_for_s=60)
        ours.append(rec.command_id)
        assert _pump(emu, lambda: pub.get(rec.command_id).state == APPLIED)
        final = pub.get(rec.command_id)
        assert lost and final.attempts >= 2  # published again after the lost ack
        assert [s for s, _ in final.transitions] == [QUEUED, SENT, RECEIVED, APPLIED]
    finally:
        emu.stop()
        pub.stop()


def test_duplicate_late_and_unknown_acks_are_ignored(fleet):
    clock = [1000.0]
    pub = CommandPublisher(fleet, clock=lambda: clock[0])  # not started: no broker needed
    bat = _rows(fleet, "battery")[0]
    site = fleet.site_id[fleet.device_site[fleet.device_row[bat]]]
    topic = ack_topic(site, bat)
    rec = pub.send(bat, 10.0, valid_for_s=30)

    def ack(status, cid=rec.command_id, version=rec.version):
        return pub.handle_ack(topic, orjson.dumps(
            {"command_id": cid, "version": version, "status": status, "ts": clock[0]}))

    assert ack("received") == "received"
    assert ack("received") == "late_or_duplicate"
    assert ack("applied", version=99) == "mismatch"
    assert ack("applied") == "applied"
    assert ack("applied") == "late_or_duplicate"
    assert ack("rejected") == "late_or_duplicate"
    assert ack("applied", cid="no-such-command") == "unknown"
    assert pub.handle_ack(topic, b"{broken") == "malformed"
    assert pub.get(rec.command_id).state == APPLIED
    # an ack arriving after expiry changes nothing
    late = pub.send(bat, 11.0, valid_for_s=5)
    clock[0] += 10
    pub.tick()
    assert pub.get(late.command_id).state == EXPIRED
    assert pub.handle_ack(topic, orjson.dumps({"command_id": late.command_id, "version":
                                               late.version, "status": "applied"})) \
        == "late_or_duplicate"
    assert pub.get(late.command_id).state == EXPIRED
    assert pub.ignored_acks["late_or_duplicate"] == 4
    with pytest.raises(ValueError, match="is a load"):
        pub.send(_rows(fleet, "load")[0], 1.0, valid_for_s=10)
    with pytest.raises(ValueError, match="finite"):
        pub.send(bat, float("nan"), valid_for_s=10)
    with pytest.raises(ValueError, match="unknown device"):
        pub.send("nope", 1.0, valid_for_s=10)


def test_an_ack_before_its_record_is_applied_once_the_record_exists(fleet, monkeypatch):
    """The setpoints of a batch go out before their records are tracked: a device's
    ack that comes back in between waits for them instead of being dropped."""
    import adapters.mqtt.commands as commands

    pub = CommandPublisher(fleet)  # not started: no broker needed
    bat = _rows(fleet, "battery")[0]
    site = fleet.site_id[fleet.device_site[fleet.device_row[bat]]]
    topic = ack_topic(site, bat)
    monkeypatch.setattr(commands, "_uuids", lambda n: [f"cmd-{i}" for i in range(n)])
    early = orjson.dumps({"command_id": "cmd-0", "version": 1, "status": "received"})
    stray = orjson.dumps({"command_id": "nobody", "version": 1, "status": "received"})
    pub._sending = 1  # as send_many between its publish and its records
    assert pub.handle_ack(topic, early) == "early"
    assert pub.handle_ack(topic, stray) == "early"
    pub._sending = 0
    rec = pub.send(bat, 10.0, valid_for_s=30)  # records cmd-0, then applies what waited
    assert rec.command_id == "cmd-0" and pub.get("cmd-0").state == RECEIVED
    assert pub.ignored_acks == {"unknown": 1}  # the stray one, judged after the records


def test_versions_and_open_commands_survive_a_restart(fleet, tmp_path):
    """With the registry's durable store, a restarted publisher resumes the open commands
    and never reuses a version."""
    registry = open_registry(f"sqlite:///{tmp_path / 'reg.db'}")
    bat = _rows(fleet, "battery")[0]
    first = CommandPublisher(fleet, SqlCommandStore(registry, flush_s=60.0),
                             clock=lambda: 1000.0)
    a = first.send(bat, 1.0, valid_for_s=600)
    b = first.send(_rows(fleet, "pv")[0], 3.0, valid_for_s=600)
    first.store.close()  # its last flush writes everything
    second = CommandPublisher(fleet, SqlCommandStore(registry, flush_s=60.0),
                              clock=lambda: 1001.0)
    try:
        assert {r.command_id for r in second.open_commands()} == {a.command_id, b.command_id}
        c = second.send(bat, 2.0, valid_for_s=600)
        assert a.version == 1 and c.version > a.version
        assert {r.command_id for r in second.open_commands()} == {b.command_id, c.command_id}
        assert second.get(a.command_id).state == EXPIRED  # superseded by the newer version
    finally:
        second.store.close()
        registry.close()


def _rec(cid: str, device: str, version: int, t: float) -> CommandRecord:
    return CommandRecord(cid, "S1", device, version, {"p_kw": 5.0}, t, t + 60,
                         transitions=((QUEUED, t),))


def test_memory_store_keeps_records_and_versions():
    store = MemoryCommandStore()
    assert [store.next_version("A") for _ in range(3)] == [1, 2, 3]
    assert store.next_version("B") == 1
    store.save(_rec("c1", "A", 1, 10.0))
    store.save(_rec("c2", "A", 2, 20.0))
    store.save(_rec("c3", "B", 1, 15.0))
    store.save(store.get("c1").moved(APPLIED, 12.0))
    assert store.get("c1").state == APPLIED
    assert store.get("c1").transitions == ((QUEUED, 10.0), (APPLIED, 12.0))
    assert store.get("nope") is None
    assert {r.command_id for r in store.open_commands()} == {"c2", "c3"}
    assert [r.command_id for r in store.history("A")] == ["c2", "c1"]
    assert [r.command_id for r in store.history(limit=2)] == ["c2", "c3"]


def test_send_setpoints_from_the_twin_array(fleet):
    pub = CommandPublisher(fleet, clock=lambda: 50.0)
    sp = np.full(fleet.n_devices, np.nan)
    rows = [fleet.rows_of_type("battery")[0], fleet.rows_of_type("pv")[0],
            fleet.rows_of_type("load")[0]]
    sp[rows] = [5.0, 100.0, 1.0]
    recs = pub.send_setpoints(sp, valid_for_s=60)
    assert sorted(r.device_id for r in recs) == sorted(str(fleet.device_id[r])
                                                       for r in rows[:2])
    assert {tuple(r.setpoint) for r in recs} == {("p_kw",), ("p_limit_kw",)}


def test_bursts_from_many_threads_while_pubacks_return_do_not_deadlock(mqtt_url):
    """paho calls on_publish holding its own lock; sends hold the publisher's lock only
    while no paho call is made, so bursts from several threads (and the ticker) finish."""
    import threading

    fleet = generate_fleet(12, seed=9)
    ids = [str(d) for r, d in enumerate(fleet.device_id)
           if int(fleet.device_type[r]) in SETPOINT_KEY]
    pub = CommandPublisher(fleet, MemoryCommandStore(), client_id="cmd-burst",
                           ack_timeout_s=0.05, check_interval_s=0.01).start(mqtt_url)
    errors: list[BaseException] = []
    assert pub._client.max_inflight_messages == 0  # the broker announced no limit

    def burst(k: int) -> None:
        try:
            for i in range(6):
                until = time.time() + 60
                if (i + k) % 2:
                    pub.send_many([(d, 1.0 + i, until) for d in ids])
                else:
                    for d in ids[k::4]:
                        pub.send(d, 2.0 + i, valid_for_s=60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=burst, args=(k,), daemon=True) for k in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "senders stuck: lock-order deadlock"
        assert errors == []
        # One open command per device (older versions superseded), each one acknowledged
        # by the broker (an early PUBACK is not lost).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                r.state == QUEUED for r in pub.open_commands()):
            time.sleep(0.05)
        open_ = pub.open_commands()
        assert sorted(r.device_id for r in open_) == sorted(ids)
        assert {r.state for r in open_} == {SENT}
        latest = {r.device_id: r.version for r in open_}
        assert all(v == max(r.version for r in pub.history(d, 100)) for d, v in latest.items())
    finally:
        pub.stop()


def test_send_many_checks_every_item_before_anything_goes_out(fleet):
    pub = CommandPublisher(fleet, clock=lambda: 100.0)
    bat, pv = _rows(fleet, "battery")[0], _rows(fleet, "pv")[0]
    with pytest.raises(ValueError, match="is a load"):
        pub.send_many([(bat, 1.0, 200.0), (_rows(fleet, "load")[0], 1.0, 200.0)])
    with pytest.raises(ValueError, match="is not after the issue time"):
        pub.send_many([(bat, 1.0, 200.0), (pv, 1.0, 50.0)])
    assert pub.open_commands() == [] and pub.history() == []
    # A device named twice: the later value supersedes the earlier one.
    first, second, other = pub.send_many([(bat, 1.0, 200.0), (bat, 2.0, 200.0),
                                          (pv, 3.0, 200.0)])
    assert (first.state, second.state, other.state) == (EXPIRED, QUEUED, QUEUED)
    assert first.reason == f"superseded by version {second.version}"
    assert {r.command_id for r in pub.open_commands()} == {second.command_id,
                                                           other.command_id}


def test_a_burst_respects_the_brokers_receive_maximum(tmp_path, caplog):
    """A broker that announces a Receive Maximum (Mosquitto's max_inflight_messages) gets
    at most that many unacknowledged setpoints at once, and still every one of a burst;
    without one the publisher keeps no limit (a plan step goes out at once). A small one
    is a broker with stock limits: the publisher warns, naming the setting."""
    from adapters.broker import Broker

    fleet = generate_fleet(12, seed=9)
    ids = [str(d) for r, d in enumerate(fleet.device_id)
           if int(fleet.device_type[r]) in SETPOINT_KEY]
    with Broker(tmp_path / "mq", extra_config=("max_inflight_messages 5",)) as broker:
        with caplog.at_level("WARNING", logger="adapters.mqtt.commands"):
            pub = CommandPublisher(fleet, MemoryCommandStore(),
                                   client_id="cmd-rm").start(broker.url)
        try:
            assert pub._client.max_inflight_messages == 5
            assert "allows only 5 unacknowledged messages" in caplog.text
            assert "max_inflight_messages" in caplog.text
            until = time.time() + 60
            pub.send_many([(d, 3.0, until) for d in ids])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                    r.state == QUEUED for r in pub.open_commands()):
                time.sleep(0.05)
            assert {r.state for r in pub.open_commands()} == {SENT}
            assert len(pub.open_commands()) == len(ids) > 5
        finally:
            pub.stop()
