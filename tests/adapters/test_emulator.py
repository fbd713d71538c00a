"""The device emulator: setpoint rules, safe default, and the reference fleet at 1 Hz."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from adapters.emulator import Emulator
from adapters.mqtt.ingest import TelemetryIngest
from twin.generator import generate_fleet
from twin.limits import setpoint_bounds_kw


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(3, seed=4)


def _cmd(version, valid_until, **setpoint):
    return orjson.dumps({"command_id": f"c{version}", "version": version, "issued_at": 0,
                         "valid_until": valid_until, "setpoint": setpoint})


def test_setpoint_rules_and_safe_default(fleet):
    emu = Emulator(fleet, "mqtt://127.0.0.1:1")  # never connected: rules only
    row = int(fleet.rows_of_type("battery")[0])
    dev, site = str(fleet.device_id[row]), int(fleet.device_site[row])
    lo, hi = setpoint_bounds_kw(fleet)
    assert lo[row] == -fleet.charge_kw[row] and hi[row] == fleet.discharge_kw[row]

    def status(acks):
        return [(a["status"], a.get("reason", "")) for a in acks]

    assert status(emu.handle_setpoint(site, dev, _cmd(2, 200.0, p_kw=10.0), 100.0)) == [
        ("received", ""), ("applied", "")]
    assert emu.setpoint[row] == 10.0
    assert status(emu.handle_setpoint(site, dev, _cmd(2, 200.0, p_kw=10.0), 101.0)) == [
        ("applied", "")]  # re-delivery: confirmed again, nothing changes
    assert emu.handle_setpoint(site, dev, b"{no json", 101.0) == []
    old = status(emu.handle_setpoint(site, dev, _cmd(1, 200.0, p_kw=5.0), 101.0))
    assert old[1][0] == "rejected" and "not newer" in old[1][1]
    late = status(emu.handle_setpoint(site, dev, _cmd(3, 90.0, p_kw=5.0), 101.0))
    assert late[1] == ("rejected", "valid_until has passed")
    big = status(emu.handle_setpoint(site, dev, _cmd(4, 200.0, p_kw=1e6), 101.0))
    assert big[1][0] == "rejected" and "outside the device's limits" in big[1][1]
    wrong = status(emu.handle_setpoint(site, dev, _cmd(5, 200.0, p_limit_kw=1.0), 101.0))
    assert wrong[1][0] == "rejected" and "'p_kw'" in wrong[1][1]
    assert emu.setpoint[row] == 10.0 and emu.applied_version[row] == 2  # unchanged
    other_site = (site + 1) % fleet.n_sites
    assert status(emu.handle_setpoint(other_site, dev, _cmd(6, 200.0, p_kw=1.0), 101.0)) == [
        ("rejected", "unknown device")]
    emu.tick(150.0)
    assert emu.twin.state.p_kw[row] == pytest.approx(10.0)
    emu.tick(201.0)  # validity ran out: battery idle
    assert np.isnan(emu.setpoint[row]) and emu.twin.state.p_kw[row] == 0.0


@pytest.mark.slow
def test_reference_fleet_at_1_hz_through_mosquitto(mqtt_url):
    fleet = generate_fleet()  # 342 gateways, ~10,000 devices
    ingest = TelemetryIngest(fleet, client_id="emu-ref").start(mqtt_url)
    emu = Emulator(fleet, mqtt_url, interval_s=1.0)
    try:
        emu.connect()
        figures = emu.run(4.0)
        deadline = time.monotonic() + 10
        want = figures["published"]
        while ingest.counters()["messages"] < want + fleet.n_devices + fleet.n_sites \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        emu.stop()
        ingest.stop()
    assert figures["ticks"] >= 4 and figures["late_ticks"] == 0
    assert figures["gateways_online"] == 342
    assert figures["published"] == figures["ticks"] * 342
    tel = ingest.telemetry
    assert np.isfinite(tel.column("p_kw")[1]).all()  # every device reported
    bat = fleet.rows_of_type("battery")
    soc = tel.column("soc")[0][bat]
    assert ((soc >= 0) & (soc <= 1)).all()
    assert ingest.rejects == {}
    assert (tel.site_online == 0).all()  # stop() published offline for every gateway


def test_dropped_gateway_fires_its_will_and_malformed_messages_are_counted(fleet, tmp_path):
    from adapters.broker import Broker

    with Broker(tmp_path / "mq") as broker:
        ingest = TelemetryIngest(fleet, client_id="emu-drop").start(broker.url)
        emu = Emulator(fleet, broker.url, malformed_rate=1.0, seed=1)
        try:
            emu.connect()
            emu.tick(time.time())
            site = str(fleet.site_id[0])
            rows = np.arange(fleet.site_start[0], fleet.site_stop[0])
            deadline = time.monotonic() + 10
            while not ingest.telemetry.online[rows].all() and time.monotonic() < deadline:
                emu.poll(0.02)
            assert ingest.telemetry.online[rows].all()
            emu.drop_gateway(site)
            while ingest.telemetry.online[rows].any() and time.monotonic() < deadline:
                emu.poll(0.02)
            assert not ingest.telemetry.online[rows].any()
            assert ingest.telemetry.site_online[0] == 0
            assert ingest.telemetry.online[fleet.site_stop[0]:].all()  # others stay online
            while sum(ingest.rejects.values()) < fleet.n_sites and time.monotonic() < deadline:
                emu.poll(0.02)
            assert sum(ingest.rejects.values()) == fleet.n_sites  # every telemetry malformed
        finally:
            emu.stop()
            ingest.stop()


def test_delay_and_jitter(fleet, mqtt_url):
    ingest = TelemetryIngest(fleet, client_id="emu-delay").start(mqtt_url)
    emu = Emulator(fleet, mqtt_url, delay_s=0.4, jitter_s=0.2, seed=2)
    try:
        emu.connect()
        now = time.time()
        t0 = time.monotonic()
        emu.tick(now)
        assert emu.published == 0  # every site's message is held back, not yet sent
        deadline = t0 + 10
        p_ts = lambda: ingest.telemetry.column("p_kw")[1]  # noqa: E731
        while not np.isfinite(p_ts()).all() and time.monotonic() < deadline:
            emu.poll(0.02)
        assert time.monotonic() - t0 >= 0.4
        assert emu.published == fleet.n_sites
        assert (p_ts() == now).all()  # stamped when sampled, not when sent
    finally:
        emu.stop()
        ingest.stop()
