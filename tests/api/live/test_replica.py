"""A leader and a read replica on one broker, one database and one telemetry store
(api/live/replica.py, api/http/middleware.py): the replica's own telemetry, the leader's
history read from the shared store, writes forwarded to the leader, relayed WebSocket
events and KPIs, and a leader that is away."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.broker import free_port
from api.http.middleware import needs_leader
from api.live.planning import OptimizerPlanner
from api.settings import Settings, load_settings
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

pytestmark = pytest.mark.timeout(300)

N_SITES = 2
SECRET = "replica-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str
         ) -> Iterator[dict[str, Any]]:
    """The leader (live, events relay on) and a replica of it, with the emulator."""
    lead_dir = tmp_path_factory.mktemp("leader")
    common: dict[str, Any] = dict(mqtt_url=mqtt_url, jwt_secret=SECRET,
                                  telemetry_interval_s=0.5)
    leader = Settings(data_dir=lead_dir, fleet_sites=N_SITES, admin_user=ADMIN[0],
                      admin_password=ADMIN[1], optimizer_enabled=False, events_relay=True,
                      dispatch_tick_s=0.2, history_flush_s=0.5, plan_horizon_s=3600.0,
                      **common)
    fleet = generate_fleet(n_sites=N_SITES)
    with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
            running_app(leader, planner=OptimizerPlanner(time_limit_s=30)) as (lurl, lapp):
        replica = Settings(data_dir=tmp_path_factory.mktemp("replica"), mode="replica",
                           database_url=f"sqlite:///{(lead_dir / 'ecogrid.db').resolve()}",
                           history_url=str(leader.history_root()), leader_url=lurl,
                           **common)
        with running_app(replica) as (rurl, rapp):
            yield {"leader": lurl, "leader_app": lapp, "replica": rurl, "replica_app": rapp,
                   "emu": emu, "settings": replica}


@pytest.fixture(scope="module")
def rc(pair: dict[str, Any]) -> Iterator[httpx.Client]:
    """An HTTP client of the replica."""
    with httpx.Client(base_url=pair["replica"], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def users(rc: httpx.Client) -> dict[str, dict[str, str]]:
    """Logins and user creation, all through the replica (forwarded to the leader)."""
    return add_staff(rc, login(rc, *ADMIN))


def test_which_requests_go_to_the_leader():
    assert needs_leader("POST", "/api/v1/plans")
    assert needs_leader("PATCH", "/api/v1/devices/d1")
    assert needs_leader("DELETE", "/api/v1/users/x")
    assert needs_leader("GET", "/api/v1/scenarios/r1/series")  # files of the leader
    # the telemetry store is shared: history, analytics and reports are read here
    for path in ("/api/v1/devices", "/api/v1/devices/d1", "/api/v1/plans", "/api/v1/kpis",
                 "/api/v1/commands", "/api/v1/alerts", "/healthz", "/metrics", "/",
                 "/api/v1/devices/d1/telemetry", "/api/v1/history/fleet",
                 "/api/v1/reports/2024-05", "/api/v1/scenarios/r1"):
        assert not needs_leader("GET", path), path


def test_replica_mode_needs_the_leader_url():
    with pytest.raises(ValueError, match="ECOGRID_LEADER_URL is required"):
        load_settings(mode="replica", jwt_secret=SECRET)
    with pytest.raises(ValueError, match="ECOGRID_JWT_SECRET is required"):
        load_settings(mode="replica", leader_url="http://ecogrid-leader:8000")


def test_replica_serves_devices_with_its_own_live_values(pair, rc, users):
    rt = pair["replica_app"].state.runtime
    assert rt.role == "replica"
    assert rt.commands is None and rt.planner is None and rt.planning is None
    assert rt.approvals is None and rt.recorder is None and rt.alerts is None
    assert rt.ingest is not None
    assert rt.ingest.ingest.client_id.startswith("ecogrid-replica-")
    assert not rt.ingest.ingest.persistent
    page = rc.get("/api/v1/devices", headers=users["viewer"]).json()
    assert page["total"] == rt.fleet.fleet.n_devices
    dev = page["items"][0]["id"]
    live = wait_for(lambda: rc.get(f"/api/v1/devices/{dev}", headers=users["viewer"]
                                   ).json()["live"].get("last_seen_s"))
    assert live > 0
    health = wait_for(lambda: (h := rc.get("/healthz")).status_code == 200 and h.json())
    assert health["role"] == "replica" and health["broker_connected"]
    assert health["database"] == "ok" and health["events_connected"]
    assert health["leader"]["url"] == pair["leader"] and health["leader"]["reachable"]
    site = rt.fleet.fleet.site_id[0]
    with ws_session(pair["replica"], users["viewer"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "channels": ["telemetry"], "sites": [site]}))
        tel = ws_until(ws, lambda m: m["type"] == "telemetry")
        assert {s["site_id"] for s in tel["samples"]} == {site}
    # The telemetry history is what the leader wrote to the shared store, read here.
    assert rt.history.root == pair["leader_app"].state.runtime.recorder.writer.root

    def stored() -> dict[str, Any] | None:
        r = rc.get(f"/api/v1/devices/{dev}/telemetry", headers=users["viewer"],
                   params={"metric": "p_kw", "start": time.time() - 60})
        assert r.status_code == 200, r.text
        body = r.json()
        return body if any(v is not None for v in body["values"]) else None

    body = wait_for(stored)
    assert body["tier"] == "raw" and body["device_id"] == dev


def test_kpis_on_the_replica_come_from_the_leader(pair, rc, users):
    k = wait_for(lambda: (r := rc.get("/api/v1/kpis", headers=users["viewer"])
                          ).status_code == 200 and r.json(), timeout_s=30)
    assert k["total_devices"] == pair["leader_app"].state.runtime.fleet.fleet.n_devices
    assert k["devices_online"] > 0


def test_writes_through_the_replica_reach_the_leader(pair, rc, users):
    wait_for(lambda: rc.get("/healthz").json()["last_ingest_s"])
    lead = pair["leader_app"].state.runtime
    plan = rc.post("/api/v1/plans", headers=users["operator"])
    assert plan.status_code == 201, plan.text
    plan = plan.json()
    assert lead.approvals is not None and plan["status"] == "proposed"
    r = rc.post(f"/api/v1/plans/{plan['id']}/approve", headers=users["viewer"])
    assert r.status_code == 403 and "operator" in r.json()["error"]
    r = rc.post(f"/api/v1/plans/{plan['id']}/approve", headers=users["operator"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["decided_by"] == "olga"

    def settled() -> list[dict[str, Any]] | None:
        cmds = rc.get("/api/v1/commands", headers=users["viewer"],
                      params={"plan_id": plan["id"], "limit": 5000}).json()
        done = cmds and all(c["status"] in ("applied", "rejected") for c in cmds)
        return cmds if done else None

    cmds = wait_for(settled, timeout_s=60)
    emu = pair["emu"]
    one = next(c for c in cmds if c["status"] == "applied")
    assert emu.applied_version[lead.fleet.fleet.device_row[one["device_id"]]] == \
        one["version"]


def test_websocket_on_the_replica_gets_relayed_events_and_approves(pair, rc, users):
    with ws_session(pair["replica"], users["operator"]) as ws:
        ws.send(json.dumps({"type": "subscribe", "channels": ["plans", "commands"],
                            "id": "sub"}))
        ws_until(ws, lambda m: m["type"] == "reply")
        plan = rc.post("/api/v1/plans", headers=users["operator"]).json()
        proposed = ws_until(ws, lambda m: m["type"] == "plans" and m["event"] == "proposed")
        assert proposed["plan"]["id"] == plan["id"]
        ws.send(json.dumps({"type": "approve", "plan_id": plan["id"], "id": "a1"}))
        # The relayed events may come before or after the reply: collect until both came.
        seen: list[dict[str, Any]] = []

        def applied(m: dict[str, Any]) -> bool:
            return (m["type"] == "commands" and m["command"]["status"] == "applied"
                    and m["command"]["plan_id"] == plan["id"])

        ws_until(ws, lambda m: seen.append(m) or (any(x["type"] == "reply" for x in seen)
                                                and any(applied(x) for x in seen)))
        reply = next(m for m in seen if m["type"] == "reply")
        assert reply["id"] == "a1" and reply["request"] == "approve" and reply["ok"], reply
        assert reply["result"]["decided_by"] == "olga"
        approved = [m for m in seen if m["type"] == "plans" and m["event"] == "approved"]
        assert [m["plan"]["id"] for m in approved] == [plan["id"]]
        ws.send(json.dumps({"type": "approve", "plan_id": "nope", "id": "a2"}))
        bad = ws_until(ws, lambda m: m["type"] == "reply")
        assert not bad["ok"] and "nope" in bad["error"]
    with ws_session(pair["replica"], users["viewer"]) as ws:
        ws.send(json.dumps({"type": "approve", "plan_id": plan["id"], "id": "v1"}))
        denied = ws_until(ws, lambda m: m["type"] == "reply")
        assert not denied["ok"] and "operator" in denied["error"]


def test_a_leader_that_is_away_gives_503_naming_it(pair, users):
    bogus = f"http://127.0.0.1:{free_port()}"
    settings = pair["settings"].model_copy(update={"leader_url": bogus})
    with running_app(settings) as (url, app), httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/plans", headers=users["operator"])
        assert r.status_code == 503 and bogus in r.json()["error"]
        r = c.post("/api/v1/auth/token", data={"username": "olga", "password": "x"})
        assert r.status_code == 503 and bogus in r.json()["error"]
        health = c.get("/healthz").json()
        assert health["role"] == "replica" and health["leader"]["reachable"] is False
        rt = app.state.runtime
        rt.events_feed.stop()  # the real leader relays KPIs on this broker: hear no more
        rt.kpis._kpis = None  # none relayed yet
        r = c.get("/api/v1/kpis", headers=users["viewer"])
        assert r.status_code == 503 and "relayed" in r.json()["error"]
        # Reads from the database still work.
        assert c.get("/api/v1/plans", headers=users["viewer"]).status_code == 200
        with ws_session(url, users["operator"]) as ws:
            ws.send(json.dumps({"type": "approve", "plan_id": "p", "id": "a"}))
            reply = ws_until(ws, lambda m: m["type"] == "reply")
            assert not reply["ok"] and bogus in reply["error"]


def test_serve_in_replica_mode_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from api.cli.main import main

    monkeypatch.setenv("ECOGRID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOGRID_MODE", "replica")
    monkeypatch.setenv("ECOGRID_JWT_SECRET", SECRET)
    assert main(["serve"]) == 2
    assert "ECOGRID_LEADER_URL is required" in capsys.readouterr().err
    # A replica never imports a fleet into an empty registry: the leader does.
    monkeypatch.setenv("ECOGRID_LEADER_URL", "http://127.0.0.1:1")
    assert main(["serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "start the leader" in err and "Traceback" not in err
