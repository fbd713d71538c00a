"""Alerts end to end: a private Mosquitto, the emulator with injected faults, the real app on
PostgreSQL (a fresh schema; skipped when PostgreSQL is not reachable), rules over REST, the
WebSocket ``alerts`` channel and e-mail to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from api.settings import Settings
from tests.adapters.registry_fixtures import postgres_schema
from tests.api.alerts.smtp_sink import smtp_sink
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
from twin.fleet import BATTERY
from twin.generator import generate_fleet

N_SITES = 2

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str) -> Iterator[dict[str, Any]]:
    for pg_url, schema in postgres_schema():
        with smtp_sink() as (smtp_port, inbox):
            settings = Settings(
                data_dir=tmp_path_factory.mktemp("alerts"), mqtt_url=mqtt_url,
                database_url=f"{pg_url}?options=-csearch_path%3D{schema}",
                fleet_sites=N_SITES, admin_user=ADMIN[0], admin_password=ADMIN[1],
                optimizer_enabled=False, dispatch_tick_s=0.2, history_flush_s=1.0,
                telemetry_interval_s=0.5, alert_eval_s=0.3, smtp_host="127.0.0.1",
                smtp_port=smtp_port, smtp_to="ops@example.org, lead@example.org")
            fleet = generate_fleet(n_sites=N_SITES)
            with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
                    running_app(settings, use_default_planner=False) as (url, app):
                rt = app.state.runtime
                rt.alerts.manager.clear_after_s = 1.0  # quick clearing for the test
                rt.alerts.watch.config.setpoint_delay_s = 1.0
                with httpx.Client(base_url=url, timeout=60) as client:
                    yield {"url": url, "app": app, "rt": rt, "emu": emu, "client": client,
                           "inbox": inbox, **add_staff(client, login(client, *ADMIN))}


@contextmanager
def _ws_alerts(base: str, headers: dict[str, str]) -> Iterator[Any]:
    with ws_session(base, headers) as ws:
        ws.send(json.dumps({"type": "subscribe", "channels": ["alerts"], "id": "a"}))
        yield ws


def test_rules_crud_roles_and_errors(stack):
    c, admin, viewer = stack["client"], stack["admin"], stack["viewer"]
    dev = stack["rt"].fleet.fleet.device_id[0]
    body = {"name": "hot inverter", "metric": "temp_c", "op": ">", "threshold": 80,
            "duration_s": 30, "device_id": dev}
    assert c.post("/api/v1/alert-rules", json=body, headers=viewer).status_code == 403
    assert c.post("/api/v1/alert-rules", json=body).status_code == 401
    bad = c.post("/api/v1/alert-rules", json={**body, "op": "=="}, headers=admin)
    assert bad.status_code == 422 and "op" in bad.json()["error"]
    unknown = c.post("/api/v1/alert-rules", json={**body, "device_id": "NOPE"}, headers=admin)
    assert unknown.status_code == 400 and "NOPE" in unknown.json()["error"]
    r = c.post("/api/v1/alert-rules", json=body, headers=admin)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["created_by"] == "root" and rule["enabled"] is True
    got = c.get("/api/v1/alert-rules", headers=viewer).json()
    assert [x["id"] for x in got] == [rule["id"]]
    p = c.patch(f"/api/v1/alert-rules/{rule['id']}", json={"threshold": 90}, headers=admin)
    assert p.status_code == 200 and p.json()["threshold"] == 90
    assert c.patch(f"/api/v1/alert-rules/{rule['id']}", json={"op": None},
                   headers=admin).status_code == 400
    assert c.delete(f"/api/v1/alert-rules/{rule['id']}", headers=admin).status_code == 204
    missing = c.get(f"/api/v1/alert-rules/{rule['id']}", headers=viewer)
    assert missing.status_code == 404 and str(rule["id"]) in missing.json()["error"]


def test_rule_takes_effect_without_restart_and_is_pushed_and_mailed(stack):
    c, admin, rt = stack["client"], stack["admin"], stack["rt"]
    wait_for(lambda: c.get("/healthz").json()["last_ingest_s"])
    dev = rt.fleet.fleet.device_id[1]
    with _ws_alerts(stack["url"], stack["viewer"]) as ws:
        rule = c.post("/api/v1/alert-rules", headers=admin, json={
            "name": "voltage present", "metric": "v", "op": ">", "threshold": 1.0,
            "duration_s": 0.5, "severity": "critical", "device_id": dev}).json()
        opened = ws_until(ws, lambda m: m["type"] == "alerts" and m["event"] == "opened"
                        and m["alert"]["kind"] == "threshold")
        a = opened["alert"]
        assert a["device_id"] == dev and a["rule_id"] == rule["id"]
        assert a["severity"] == "critical" and "voltage present" in a["message"]
        # persists: the same alert keeps being updated, not duplicated
        def seen_again() -> list[dict] | None:
            states = c.get("/api/v1/alert-states", headers=stack["viewer"],
                           params={"kind": "threshold"}).json()
            return states if any(x["last_seen_s"] > x["first_seen_s"] for x in states) else None

        states = wait_for(seen_again, timeout_s=20)
        assert len(states) == 1
        mail = wait_for(lambda: [m for m in stack["inbox"] if dev in m["Subject"]], 20)
        assert mail[0]["Subject"] == f"[EcoGrid critical] threshold at {dev}"
        assert "lead@example.org" in mail[0]["To"]
        # disabling the rule clears the alert
        c.patch(f"/api/v1/alert-rules/{rule['id']}", headers=admin, json={"enabled": False})
        cleared = ws_until(ws, lambda m: m["type"] == "alerts" and m["event"] == "cleared")
        assert cleared["alert"]["id"] == a["id"] and cleared["alert"]["cleared_s"]


def test_battery_ignoring_setpoints_and_rejected_commands(stack):
    c, fleet, emu = stack["client"], stack["rt"].fleet.fleet, stack["emu"]
    wait_for(lambda: c.get("/healthz").json()["last_ingest_s"])
    bats = [i for i in range(fleet.n_devices) if fleet.device_type[i] == BATTERY]
    bad, other = bats[0], bats[1]
    emu.faults.inject(bad, "ignore_setpoint")
    bad_id, other_id = fleet.device_id[bad], fleet.device_id[other]
    value = 0.8 * float(fleet.device_float["discharge_kw"][bad])
    with _ws_alerts(stack["url"], stack["viewer"]) as ws:
        r = c.post(f"/api/v1/devices/{bad_id}/setpoint", headers=stack["operator"],
                   json={"value_kw": value})
        assert r.status_code == 201, r.text
        opened = ws_until(ws, lambda m: m["type"] == "alerts" and m["event"] == "opened"
                        and m["alert"]["kind"] == "setpoint_deviation", 40)
        assert opened["alert"]["device_id"] == bad_id
        # a device that refuses the command: its applied version is ahead of ours
        emu.applied_version[other] = 10**9
        r = c.post(f"/api/v1/devices/{other_id}/setpoint", headers=stack["operator"],
                   json={"value_kw": 0.0})
        assert r.status_code == 201, r.text
        rej = ws_until(ws, lambda m: m["type"] == "alerts" and m["event"] == "opened"
                     and m["alert"]["kind"] == "command_rejected", 40)
        assert rej["alert"]["device_id"] == other_id and "not newer" in rej["alert"]["message"]
    emu.faults.clear(bad)
    kinds = {a["kind"] for a in c.get("/api/v1/alert-states", headers=stack["viewer"],
                                      params={"open_only": True}).json()}
    assert {"setpoint_deviation", "command_rejected"} <= kinds
    # nothing else fired on a healthy fleet under clear sky
    assert kinds <= {"setpoint_deviation", "command_rejected", "threshold"}
