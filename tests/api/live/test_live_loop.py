"""The whole loop against a real Mosquitto: emulator -> ingest -> plan -> approval by an
operator -> setpoints at the devices -> acknowledgements -> commands ``applied``, with
the WebSocket following it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.live.planning import OptimizerPlanner
from api.settings import Settings
from tests.api.server import (
    ADMIN,
    add_staff,
    login,
    running_app,
    running_emulator,
    wait_for,
    ws_session,
    ws_until,
)
from twin.generator import generate_fleet

pytestmark = pytest.mark.timeout(300)  # a hang fails with every thread's stack

N_SITES = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str
         ) -> Iterator[tuple[str, Any, Any]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("live"), mqtt_url=mqtt_url,
                        fleet_sites=N_SITES, admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, dispatch_tick_s=0.2, history_flush_s=0.5,
                        telemetry_interval_s=0.5)
    fleet = generate_fleet(n_sites=N_SITES)
    with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
            running_app(settings, planner=OptimizerPlanner(time_limit_s=30)) as (url, app):
        yield url, app, emu


@pytest.fixture(scope="module")
def client(live: tuple[str, Any, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live[0], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def users(client: httpx.Client) -> dict[str, dict[str, str]]:
    return add_staff(client, login(client, *ADMIN))


def test_ingest_reaches_health_and_websocket(live, client, users):
    base, app, _ = live
    health = wait_for(lambda: (h := client.get("/healthz").json())["last_ingest_s"] and h)
    assert health["broker_connected"] and health["status"] == "ok"
    site = app.state.runtime.fleet.fleet.site_id[1]
    with ws_session(base, users["viewer"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "channels": ["telemetry"], "sites": [site],
                            "id": "s1"}))
        reply = ws_until(ws, lambda m: m["type"] == "reply")
        assert reply["id"] == "s1" and reply["ok"] and reply["result"]["sites"] == [site]
        tel = ws_until(ws, lambda m: m["type"] == "telemetry")
        assert tel["samples"] and {s["site_id"] for s in tel["samples"]} == {site}
        assert all("p_kw" in s for s in tel["samples"])
    k = client.get("/api/v1/kpis", headers=users["viewer"]).json()
    assert k["devices_online"] > 0


def test_plan_approval_over_websocket_applies_setpoints(live, client, users):
    base, app, emu = live
    rt = app.state.runtime
    wait_for(lambda: client.get("/healthz").json()["last_ingest_s"])
    plan = client.post("/api/v1/plans", headers=users["operator"]).json()
    assert plan["status"] == "proposed"
    r = client.post(f"/api/v1/plans/{plan['id']}/approve", headers=users["viewer"])
    assert r.status_code == 403
    with ws_session(base, users["viewer"]) as vws:
        vws.send(json.dumps({"type": "approve", "plan_id": plan["id"], "id": "v1"}))
        denied = ws_until(vws, lambda m: m["type"] == "reply")
        assert denied["id"] == "v1" and not denied["ok"] and "operator" in denied["error"]
    with ws_session(base, users["operator"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "channels": ["plans", "commands"],
                            "id": "sub"}))
        ws_until(ws, lambda m: m["type"] == "reply")
        ws.send(json.dumps({"type": "approve", "plan_id": plan["id"], "id": "a1"}))
        reply = ws_until(ws, lambda m: m["type"] == "reply")
        assert reply["id"] == "a1" and reply["ok"], reply
        assert reply["result"]["decided_by"] == "olga"
        applied = ws_until(ws, lambda m: m["type"] == "commands"
                         and m["command"]["status"] == "applied")
        assert applied["command"]["plan_id"] == plan["id"]

    def settled() -> list[dict[str, Any]] | None:
        cmds = client.get("/api/v1/commands", headers=users["viewer"],
                          params={"plan_id": plan["id"], "limit": 5000}).json()
        done = cmds and all(c["status"] in ("applied", "rejected") for c in cmds)
        return cmds if done else None

    cmds = wait_for(settled, timeout_s=60)
    assert sum(c["status"] == "applied" for c in cmds) >= 0.9 * len(cmds)
    one = next(c for c in cmds if c["status"] == "applied")
    row = rt.fleet.fleet.device_row[one["device_id"]]
    assert emu.applied_version[row] == one["version"]
    assert emu.setpoint[row] == pytest.approx(one["value"])
    assert client.get(f"/api/v1/plans/{plan['id']}", headers=users["viewer"],
                      params={"setpoints": False}).json()["status"] == "dispatched"


def test_manual_setpoint_reaches_the_device(live, client, users):
    _, app, emu = live
    fleet = app.state.runtime.fleet.fleet
    bat = fleet.device_id[fleet.rows_of_type("battery")[0]]
    value = round(float(fleet.discharge_kw[fleet.device_row[bat]]) / 3, 2)
    r = client.post(f"/api/v1/devices/{bat}/setpoint", headers=users["operator"],
                    json={"value_kw": value})
    cmd = r.json()["commands"][0]

    def state() -> str | None:
        c = client.get(f"/api/v1/commands/{cmd['id']}", headers=users["viewer"]).json()
        return c if c["status"] == "applied" else None

    done = wait_for(state, timeout_s=30)
    assert done["version"] >= 1 and done["acked_s"] >= done["issued_at_s"]
    assert emu.setpoint[fleet.device_row[bat]] == pytest.approx(value)
    text = client.get("/metrics").text
    assert "ecogrid_commands_sent_total" in text and "ecogrid_ingest_messages_total" in text


def test_gateway_loss_raises_an_alert(live, client, users):
    _, app, emu = live
    site = app.state.runtime.fleet.fleet.site_id[2]
    emu.drop_gateway(site)
    try:
        alerts = wait_for(lambda: [a for a in client.get(
            "/api/v1/alerts", headers=users["viewer"]).json() if a["site_id"] == site])
    finally:
        emu.restore_gateway(site)
    assert alerts[0]["kind"] == "gateway_offline"
