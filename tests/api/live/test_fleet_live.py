"""Fleet edits are live: a site and a device created through the API get a broker account,
report, show their live values, take a setpoint and appear in the history of the running
service, without a restart; deleting the device cancels its pending commands (named in
the audit log) and takes it out of the running parts.

Against a real Mosquitto with the project's password file and ACL (the service keeps them
in line with the fleet and sends the broker SIGHUP), SQLite and the real telemetry store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from adapters.broker import Broker
from adapters.credentials import SERVICE_USER, gateway_user, read_secrets, write_credentials
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.topics import (
    ack_topic,
    device_status_topic,
    device_telemetry_topic,
    setpoint_filter,
    site_status_topic,
)
from adapters.registry import fleet as fleet_repo
from api.settings import Settings
from tests.api.server import ADMIN, login, running_app, wait_for

pytestmark = pytest.mark.timeout(300)

SITE = "S9001"
DEVICE = f"{SITE}-BAT01"
NEW_SITE = {"id": SITE, "name": "Added live", "lat_deg": 52.5, "lon_deg": 13.4,
            "timezone": "Europe/Berlin", "import_limit_kw": 200.0, "export_limit_kw": 200.0}
NEW_DEVICE = {"id": DEVICE, "site_id": SITE, "type": "battery", "battery_kwh": 100.0,
              "charge_kw": 50.0, "discharge_kw": 40.0, "charge_eff": 0.95,
              "discharge_eff": 0.95, "soc_min": 0.1, "soc_max": 0.9}


class Gateway:
    """A site gateway of our own: its broker account, setpoints in, acknowledgements out."""

    def __init__(self, url: str, site: str, password: str):
        self.site = site
        self.setpoints: list[dict[str, Any]] = []
        self.refused: list[bool] = []
        self.subscribed = threading.Event()
        c = make_client(f"gw-test-{site}-{time.monotonic_ns()}")
        c.username_pw_set(gateway_user(site), password)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda cl, ud, mid, codes, props: self.subscribed.set()
        c.on_message = self._on_message
        connect(c, url)
        c.loop_start()
        self.client = c

    def _on_connect(self, c: Any, ud: Any, flags: Any, reason: Any, props: Any) -> None:
        self.refused.append(bool(reason.is_failure))
        if not reason.is_failure:
            c.subscribe(setpoint_filter(self.site), qos=1)

    def _on_message(self, c: Any, ud: Any, msg: Any) -> None:
        sp = orjson.loads(msg.payload)
        self.setpoints.append(sp)
        device = msg.topic.split("/")[3]
        for status in ("received", "applied"):
            c.publish(ack_topic(self.site, device), json.dumps(
                {"command_id": sp["command_id"], "version": sp["version"], "status": status}),
                qos=1)

    def report(self, device: str, values: dict[str, float]) -> None:
        self.client.publish(site_status_topic(self.site), b"online", qos=1, retain=True)
        self.client.publish(device_status_topic(self.site, device), b"online", qos=1,
                            retain=True)
        self.client.publish(device_telemetry_topic(self.site, device),
                            json.dumps({"ts": time.time(), **values}), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("fleet-live")
    creds = write_credentials(["S0001", "S0002"], d / "creds", service_password="svc-pass-1")
    broker = Broker(d / "mq", password_file=creds.password_file,
                    acl_file=creds.acl_file).start()
    pid_file = d / "mosquitto.pid"
    pid_file.write_text(str(broker.pid))
    url = broker.url.replace("mqtt://", f"mqtt://{SERVICE_USER}:svc-pass-1@")
    settings = Settings(data_dir=d / "data", mqtt_url=url, fleet_sites=2,
                        admin_user=ADMIN[0], admin_password=ADMIN[1], optimizer_enabled=False,
                        dispatch_tick_s=0.2, history_flush_s=0.5, telemetry_interval_s=0.5,
                        fleet_poll_s=1.0, mqtt_credentials_dir=d / "creds",
                        mqtt_broker_pid_file=pid_file)
    try:
        with running_app(settings, use_default_planner=False) as (base, app), \
                httpx.Client(base_url=base, timeout=60) as client:
            yield {"app": app, "client": client, "admin": login(client, *ADMIN),
                   "broker": broker, "creds": d / "creds"}
    finally:
        broker.stop()


def test_a_site_and_device_added_live_report_take_setpoints_and_show_in_history(stack):
    client, admin, rt = stack["client"], stack["admin"], stack["app"].state.runtime
    before = rt.fleet.version
    r = client.post("/api/v1/sites", headers=admin, json=NEW_SITE)
    assert r.status_code == 201, r.text
    assert r.json()["fleet_version"] == before + 1
    r = client.post("/api/v1/devices", headers=admin, json=NEW_DEVICE)
    assert r.status_code == 201, r.text
    # The running parts took the new fleet: twin arrays, approvals, the broker's ACL.
    assert rt.telemetry.fleet.device_row.get(DEVICE) is not None
    assert rt.approvals.fleet.device_row.get(DEVICE) is not None
    password = read_secrets(stack["creds"] / "secrets.env")[gateway_user(SITE)]
    assert f"topic write sites/{SITE}/telemetry" in (stack["creds"] / "acl").read_text()

    gw = wait_for(lambda: _connected(stack["broker"].url, password), 30)
    try:
        assert gw.subscribed.wait(10)
        gw.report(DEVICE, {"p_kw": -12.5, "soc": 0.42})
        live = wait_for(lambda: (d := client.get(f"/api/v1/devices/{DEVICE}", headers=admin)
                                 .json())["live"].get("values") and d["live"], 30)
        assert live["values"]["p_kw"] == -12.5 and live["values"]["soc"] == 0.42
        assert live["online"] is True

        r = client.post(f"/api/v1/devices/{DEVICE}/setpoint", headers=admin,
                        json={"value_kw": 30.0})
        assert r.status_code == 201, r.text
        command_id = r.json()["commands"][0]["id"]
        wait_for(lambda: gw.setpoints, 30)
        assert gw.setpoints[0]["setpoint"] == {"p_kw": 30.0}
        applied = wait_for(lambda: (c := client.get(f"/api/v1/commands/{command_id}",
                                                    headers=admin).json())["status"]
                           == "applied" and c, 30)
        assert applied["device_id"] == DEVICE
        # A setpoint beyond the device's own bound is refused (discharge_kw = 40).
        r = client.post(f"/api/v1/devices/{DEVICE}/setpoint", headers=admin,
                        json={"value_kw": 45.0})
        assert r.status_code == 400 and "[-50, 40]" in r.json()["error"]

        def stored() -> list[float]:
            got = client.get(f"/api/v1/devices/{DEVICE}/telemetry", headers=admin,
                             params={"metric": "soc", "start": time.time() - 120})
            assert got.status_code == 200, got.text
            return [v for v in got.json()["values"] if v is not None]

        assert wait_for(stored, 30)[-1] == pytest.approx(0.42, abs=1e-6)  # float32 raw
        site = client.get(f"/api/v1/history/sites/{SITE}", headers=admin,
                          params={"start": time.time() - 120}).json()
        assert site["tier"] == "raw" and -12.5 in site["battery_kw"]
    finally:
        gw.close()


def _connected(url: str, password: str) -> Gateway | None:
    gw = Gateway(url, SITE, password)
    if not wait_for(lambda: gw.refused, 10) or gw.refused[-1]:
        gw.close()  # the broker has not re-read its password file yet
        return None
    return gw


def test_deleting_a_device_cancels_its_pending_commands_and_says_so(stack):
    client, admin, rt = stack["client"], stack["admin"], stack["app"].state.runtime
    if DEVICE not in rt.fleet.fleet.device_row:
        assert client.post("/api/v1/sites", headers=admin, json=NEW_SITE).status_code in (
            201, 400)
        assert client.post("/api/v1/devices", headers=admin, json=NEW_DEVICE).status_code == 201
    later = time.time() + 3600
    r = client.post(f"/api/v1/devices/{DEVICE}/setpoint", headers=admin,
                    json={"value_kw": 10.0, "at_s": later})
    assert r.status_code == 201, r.text
    scheduled = r.json()["commands"][0]
    assert scheduled["status"] == "scheduled"

    r = client.delete(f"/api/v1/devices/{DEVICE}", headers=admin)
    assert r.status_code == 200, r.text
    cancelled = client.get(f"/api/v1/commands/{scheduled['id']}", headers=admin).json()
    assert cancelled["status"] == "cancelled"
    assert "device deleted by root" in cancelled["reason"]
    entry = client.get("/api/v1/audit", headers=admin, params={"action": "device.delete"}
                       ).json()[0]
    assert entry["target"] == f"device:{DEVICE}"
    assert entry["detail"]["cancelled_commands"] == [scheduled["id"]]
    # Gone from the running parts: no setpoint, no live state; its history stays readable.
    assert DEVICE not in rt.telemetry.fleet.device_row
    r = client.post(f"/api/v1/devices/{DEVICE}/setpoint", headers=admin, json={"value_kw": 1.0})
    assert r.status_code == 404
    assert client.get(f"/api/v1/devices/{DEVICE}", headers=admin).status_code == 404


def test_deleting_the_site_takes_its_gateway_account_away(stack):
    client, admin = stack["client"], stack["admin"]
    if client.get(f"/api/v1/sites/{SITE}", headers=admin).status_code == 404:
        assert client.post("/api/v1/sites", headers=admin, json=NEW_SITE).status_code == 201
    assert gateway_user(SITE) in read_secrets(stack["creds"] / "secrets.env")
    r = client.delete(f"/api/v1/sites/{SITE}", headers=admin)
    assert r.status_code == 200, r.text
    secrets = read_secrets(stack["creds"] / "secrets.env")
    assert gateway_user(SITE) not in secrets and gateway_user("S0001") in secrets
    assert f"sites/{SITE}/" not in (stack["creds"] / "acl").read_text()


def test_another_process_sees_the_edit_through_the_fleet_version(stack):
    # A change written by another process (here: straight into the registry, as a second
    # API pod would) is picked up by the poll of the fleet version.
    rt = stack["app"].state.runtime
    with rt.registry.session() as s:
        fleet_repo.create_site(s, {**NEW_SITE, "id": "S9002"})
        fleet_repo.bump_fleet_version(s, time.time())
    wait_for(lambda: "S9002" in rt.fleet.fleet.site_row, 30)
    assert "S9002" in rt.telemetry.fleet.site_row
