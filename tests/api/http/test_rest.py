"""REST API on a running app (offline mode: no broker): auth, roles, fleet, plans,
setpoints, commands, alerts, telemetry history, health, metrics, errors."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from adapters.history import HistoryWriter
from adapters.registry import alerts as alert_repo
from api.live.ingest import Recorder
from api.settings import Settings
from tests.api.server import ADMIN, running_app, wait_for

pytestmark = pytest.mark.timeout(300)  # a hang fails with every thread's stack



@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, mode="offline", fleet_sites=4, admin_user=ADMIN[0],
                        admin_password=ADMIN[1], login_attempts_per_minute=3,
                        optimizer_enabled=False, history_flush_s=0.2)
    with running_app(settings) as (url, app):
        yield url, app


def test_token_me_and_bad_tokens(client, admin):
    assert client.get("/api/v1/auth/me", headers=admin).json() == {"name": "root",
                                                                   "role": "admin"}
    r = client.get("/api/v1/kpis")
    assert r.status_code == 401 and "not authenticated" in r.json()["error"]
    token = admin["Authorization"].split()[1]
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    r = client.get("/api/v1/kpis", headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401 and r.json()["status"] == 401


def test_expired_access_token_is_refused(served, client):
    from api.accounts import make_access_token

    rt = served[1].state.runtime
    old = make_access_token(rt.accounts.secret, "root", "admin", time.time() - 3600, 60)
    r = client.get("/api/v1/kpis", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_refresh_rotation_logout_and_password_change(client, admin):
    client.post("/api/v1/users", headers=admin,
                json={"name": "pat", "password": "pat-pass-12", "role": "viewer"})
    tokens = client.post("/api/v1/auth/token",
                         data={"username": "pat", "password": "pat-pass-12"}).json()
    fresh = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200
    # A refresh token is used up by the refresh.
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    new = fresh.json()
    r = client.post("/api/v1/auth/logout", json={"refresh_token": new["refresh_token"]})
    assert r.json() == {"revoked": True}
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": new["refresh_token"]}).status_code == 401
    # Changing the password revokes every refresh token of the user.
    t2 = client.post("/api/v1/auth/token",
                     data={"username": "pat", "password": "pat-pass-12"}).json()
    h = {"Authorization": f"Bearer {t2['access_token']}"}
    bad = client.post("/api/v1/auth/password", headers=h,
                      json={"old_password": "nope-nope", "new_password": "pat-pass-34"})
    assert bad.status_code == 401
    ok = client.post("/api/v1/auth/password", headers=h,
                     json={"old_password": "pat-pass-12", "new_password": "pat-pass-34"})
    assert ok.status_code == 200
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": t2["refresh_token"]}).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": "pat",
                                                   "password": "pat-pass-34"}).status_code == 200
    # An admin resets anyone's password.
    r = client.patch("/api/v1/users/pat", headers=admin, json={"password": "reset-pass-1"})
    assert r.status_code == 200
    assert client.post("/api/v1/auth/token", data={"username": "pat",
                                                   "password": "reset-pass-1"}).status_code == 200


def test_login_attempts_are_rate_limited(client):
    codes = [client.post("/api/v1/auth/token",
                         data={"username": "root", "password": f"wrong-{i}"}).status_code
             for i in range(4)]
    assert codes == [401, 401, 401, 429]
    r = client.post("/api/v1/auth/token", data={"username": "root", "password": ADMIN[1]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_roles(client, viewer, operator):
    assert client.get("/api/v1/sites", headers=viewer).status_code == 200
    r = client.post("/api/v1/plans/anything/approve", headers=viewer)
    assert r.status_code == 403 and "operator" in r.json()["error"]
    r = client.post("/api/v1/users", headers=operator,
                    json={"name": "x", "password": "xxxx-xxxx", "role": "admin"})
    assert r.status_code == 403
    r = client.post("/api/v1/devices/any/setpoint", headers=viewer, json={"value_kw": 1})
    assert r.status_code == 403


def test_sites_and_devices(client, viewer, admin):
    sites = client.get("/api/v1/sites", headers=viewer).json()
    assert len(sites) == 4
    one = client.get(f"/api/v1/sites/{sites[0]['id']}", headers=viewer).json()
    assert one["id"] == sites[0]["id"]
    page = client.get("/api/v1/devices", headers=viewer,
                      params={"site_id": sites[0]["id"], "type": "battery", "limit": 2}).json()
    assert page["limit"] == 2 and len(page["items"]) <= 2
    assert all(d["type"] == "battery" and d["site_id"] == sites[0]["id"]
               for d in page["items"])
    desc = client.get("/api/v1/devices", headers=viewer, params={"sort": "-id"}).json()
    ids = [d["id"] for d in desc["items"]]
    assert ids == sorted(ids, reverse=True)
    dev = client.get(f"/api/v1/devices/{ids[0]}", headers=viewer).json()
    assert dev["id"] == ids[0] and "live" in dev
    # Admin creates, updates and deletes; bad values are refused with 400 naming the field.
    body = {"id": "NEW-SITE", "lat_deg": 50.0, "lon_deg": 8.0, "import_limit_kw": 500.0,
            "export_limit_kw": 500.0}
    assert client.post("/api/v1/sites", headers=viewer, json=body).status_code == 403
    assert client.post("/api/v1/sites", headers=admin, json=body).status_code == 201
    # Fleet edits are live: the KPIs count the new site at once (not from a cache before it).
    assert client.get("/api/v1/kpis", headers=viewer).json()["total_sites"] == 5
    r = client.patch("/api/v1/sites/NEW-SITE", headers=admin, json={"lat_deg": 95.0})
    assert r.status_code == 400 and "lat_deg" in r.json()["error"]
    r = client.post("/api/v1/devices", headers=admin,
                    json={"id": "NEW-PV", "site_id": "NEW-SITE", "type": "pv", "pv_kwp": 10.0,
                          "inverter_kw": 9.0, "tilt_deg": 30.0, "azimuth_deg": 180.0,
                          "temp_coeff_per_c": -0.004})
    assert r.status_code == 201, r.text
    r = client.patch("/api/v1/devices/NEW-PV", headers=admin, json={"tags": ["roof"]})
    assert r.json()["tags"] == ["roof"]
    assert client.delete("/api/v1/sites/NEW-SITE", headers=admin).status_code == 200
    assert client.get("/api/v1/devices/NEW-PV", headers=viewer).status_code == 404
    assert client.get("/api/v1/kpis", headers=viewer).json()["total_sites"] == 4


def test_bad_input_is_4xx_json(client, viewer):
    for path, params in [("/api/v1/devices", {"limit": 0}), ("/api/v1/devices", {"sort": "x"}),
                         ("/api/v1/devices", {"type": "toaster"}),
                         ("/api/v1/plans", {"status": "pending"}),
                         ("/api/v1/commands", {"status": "lost"}),
                         ("/api/v1/devices/nope", None), ("/api/v1/plans/nope", None),
                         ("/api/v1/nowhere", None)]:
        r = client.get(path, headers=viewer, params=params)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/auth/token", "/api/v1/kpis", "/api/v1/plans/{plan_id}/approve",
            "/api/v1/devices/{device_id}/telemetry", "/healthz", "/metrics"} <= set(paths)


def test_kpis_health_metrics(client, viewer):
    k = client.get("/api/v1/kpis", headers=viewer).json()
    assert k["total_sites"] == 4 and k["installed_capacity_mw"] > 0
    assert {"today", "to_date"} <= set(k) and "co2_avoided_t" in k["today"]
    h = client.get("/healthz").json()
    assert h["database"] == "ok" and h["broker_connected"] is False and h["status"] == "ok"
    text = client.get("/metrics").text
    assert "ecogrid_http_request_seconds_bucket" in text and "ecogrid_ws_clients" in text


def test_setpoints_limits_schedule_cancel_group(served, client, operator, admin):
    fleet = served[1].state.runtime.fleet.fleet
    bat = fleet.device_id[fleet.rows_of_type("battery")[0]]
    load = fleet.device_id[fleet.rows_of_type("load")[0]]
    hi = float(fleet.discharge_kw[fleet.device_row[bat]])
    r = client.post(f"/api/v1/devices/{bat}/setpoint", headers=operator,
                    json={"value_kw": hi * 2})
    assert r.status_code == 400 and "outside its limits" in r.json()["error"]
    r = client.post(f"/api/v1/devices/{load}/setpoint", headers=operator, json={"value_kw": 1})
    assert r.status_code == 400 and "takes no setpoint" in r.json()["error"]
    r = client.post("/api/v1/devices/ghost/setpoint", headers=operator, json={"value_kw": 1})
    assert r.status_code == 404
    r = client.post(f"/api/v1/devices/{bat}/setpoint", headers=operator,
                    json={"value_kw": hi / 2})
    assert r.status_code == 201 and r.json()["commands"][0]["status"] == "pending"
    later = time.time() + 3600
    r = client.post(f"/api/v1/devices/{bat}/setpoint", headers=operator,
                    json={"at_s": [later, later + 900], "values_kw": [1.0, 2.0]})
    cmds = r.json()["commands"]
    assert [c["status"] for c in cmds] == ["scheduled", "scheduled"]
    c = client.post(f"/api/v1/commands/{cmds[0]['id']}/cancel", headers=operator)
    assert c.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/commands/{cmds[0]['id']}/cancel", headers=operator)
    assert again.status_code == 409
    listed = client.get("/api/v1/commands", headers=operator,
                        params={"device_id": bat, "status": "scheduled"}).json()
    assert [x["id"] for x in listed] == [cmds[1]["id"]]
    site = fleet.site_id[0]
    g = client.post("/api/v1/groups/setpoint", headers=operator,
                    json={"site_id": site, "type": "pv", "value_kw": 0.0})
    n_pv = int(((fleet.device_site == 0) & (fleet.device_type == 0)).sum())
    assert g.status_code == 201 and g.json()["count"] == n_pv
    audit = client.get("/api/v1/audit", headers=admin,
                       params={"action": "setpoint.send"}).json()
    assert audit and audit[0]["user"] == "olga"


def test_plan_request_approve_reject(served, client, operator, viewer):
    rt = served[1].state.runtime
    from api.live.planning import OptimizerPlanner

    rt.planning.planner = OptimizerPlanner(time_limit_s=30)  # in this process
    p1 = client.post("/api/v1/plans", headers=operator)
    assert p1.status_code == 201, p1.text
    plan = p1.json()
    assert plan["status"] == "proposed" and plan["solver_status"] in ("optimal", "time_limit")
    assert {"cost_eur", "revenue_eur", "co2_kg", "peak_import_kw"} <= set(plan["kpis"])
    full = client.get(f"/api/v1/plans/{plan['id']}", headers=viewer).json()
    assert full["setpoints"] and full["horizon_s"] == 86400.0
    assert client.post(f"/api/v1/plans/{plan['id']}/approve", headers=viewer).status_code == 403
    p2 = client.post("/api/v1/plans", headers=operator).json()
    first = client.get(f"/api/v1/plans/{plan['id']}", headers=viewer).json()
    assert first["status"] == "superseded"
    ok = client.post(f"/api/v1/plans/{p2['id']}/approve", headers=operator)
    assert ok.status_code == 200 and ok.json()["decided_by"] == "olga"
    cmds = client.get("/api/v1/commands", headers=viewer, params={"plan_id": p2["id"]}).json()
    assert cmds and all(c["source"] == "plan" for c in cmds)
    again = client.post(f"/api/v1/plans/{p2['id']}/reject", headers=operator)
    assert again.status_code == 409
    p3 = client.post("/api/v1/plans", headers=operator).json()
    rej = client.post(f"/api/v1/plans/{p3['id']}/reject", headers=operator,
                      json={"reason": "price spike expected"})
    assert rej.json()["status"] == "rejected" and rej.json()["reason"] == "price spike expected"
    listed = client.get("/api/v1/plans", headers=viewer, params={"status": "rejected"}).json()
    assert [p["id"] for p in listed] == [p3["id"]]


def test_alerts(served, client, operator, viewer):
    rt = served[1].state.runtime
    a = rt.query(alert_repo.raise_alert, rt.clock(), "warning", "stale",
                 "device stopped reporting", device_id="X")
    assert client.post(f"/api/v1/alerts/{a['id']}/ack", headers=viewer).status_code == 403
    r = client.post(f"/api/v1/alerts/{a['id']}/ack", headers=operator).json()
    assert r["acked_by"] == "olga"
    assert client.post("/api/v1/alerts/99999/ack", headers=operator).status_code == 404
    assert client.get("/api/v1/alerts", headers=viewer, params={"acked": True}).json()[0][
        "id"] == a["id"]


def test_telemetry_history_json_csv(served, client, viewer):
    rt = served[1].state.runtime
    fleet = rt.fleet.fleet
    dev = fleet.device_id[0]
    row = fleet.device_row[dev]
    col = rt.telemetry.metric_column("p_kw")
    # An offline service records no telemetry: a recorder of the test's own writes the twin's
    # arrays to the store, at two times of the last whole hour (raw, and its 1 h bucket closed).
    hour = math.floor(time.time() / 3600) * 3600 - 3600
    times = [hour + 600.0, hour + 1200.0]
    writer = HistoryWriter(rt.settings.history_root(), "test", fleet.device_id.tolist(),
                           rt.fleet.version).open()
    now = iter(times)
    recorder = Recorder(writer, rt.telemetry, 0.2, lambda: next(now))
    for t, v in zip(times, (1.0, 3.0), strict=True):
        rt.telemetry.write(np.array([row]), np.array([col]), np.array([v]), np.array([t]))
        recorder.flush()
    writer.close(finish=True)  # a writer that will not come back writes its open buckets
    q = {"start": hour, "end": hour + 3600}
    r = client.get(f"/api/v1/devices/{dev}/telemetry", headers=viewer,
                   params={"metric": "p_kw", **q})
    body = r.json()
    assert r.status_code == 200 and 1.0 in body["values"] and 3.0 in body["values"]
    assert body["t_s"] == times and (body["tier"], body["resolution_s"]) == ("raw", 600.0)
    agg = client.get(f"/api/v1/devices/{dev}/telemetry", headers=viewer,
                     params={**q, "every": 3600}).json()
    assert len(agg["values"]) == 1 and 1.0 <= agg["values"][0] <= 3.0
    assert (agg["tier"], agg["resolution_s"], agg["stat"]) == ("1h", 3600.0, "mean")
    top = client.get(f"/api/v1/devices/{dev}/telemetry", headers=viewer,
                     params={**q, "every": 3600, "stat": "max"}).json()
    assert top["values"] == [3.0]
    csv = client.get(f"/api/v1/devices/{dev}/telemetry", headers=viewer,
                     params={**q, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "t_s,p_kw"
    bad = client.get(f"/api/v1/devices/{dev}/telemetry", headers=viewer,
                     params={"start": 10, "end": 5})
    assert bad.status_code == 400


def test_scenarios_refuse_bad_files(client, operator, viewer):
    r = client.post("/api/v1/scenarios", headers=operator, content=b"period: [1, 2")
    assert r.status_code == 400 and "YAML" in r.json()["error"]
    assert client.post("/api/v1/scenarios", headers=viewer, content=b"x: 1").status_code == 403
    assert client.get("/api/v1/scenarios/nope", headers=viewer).status_code == 404


def test_scenario_runs_in_the_background(client, operator, viewer):
    text = ("name: api-test\nfleet:\n  generator: {n_sites: 2, seed: 1}\nperiod:\n"
            "  start: 2025-06-02T00:00\n  end: 2025-06-02T06:00\n  step: 1h\n"
            "strategy:\n  kind: rule\n")
    r = client.post("/api/v1/scenarios", headers=operator, content=text.encode())
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    done = wait_for(lambda: (x := client.get(f"/api/v1/scenarios/{run_id}",
                                             headers=viewer).json())["status"]
                    in ("done", "failed") and x, timeout_s=120)
    assert done["status"] == "done", done["error"]
    assert done["progress"] == 1.0 and done["kpis"]
    assert run_id in [x["id"] for x in client.get("/api/v1/scenarios", headers=viewer).json()]


def test_kpis_come_from_the_figures_the_service_refreshes(served, client, viewer):
    rt = served[1].state.runtime
    kpis = rt.kpis
    fresh = kpis.refresh()
    assert kpis.cached() is not None
    assert kpis.cached(max_age_s=-1.0) is None  # too old: GET /kpis computes anew
    before = rt.clock()
    kpis._kpis_mono_s -= 60.0
    k = client.get("/api/v1/kpis", headers=viewer).json()
    assert k["t_s"] >= before > 0 and k["total_sites"] == fresh["total_sites"] == 4
    assert kpis.cached() is not None  # the request left fresh figures behind
    first_values = kpis.first_values
    try:
        later = kpis._kpis_mono_s + 1.0
        kpis.first_values = lambda: later  # telemetry came after the figures
        assert kpis.cached() is None
    finally:
        kpis.first_values = first_values


def test_device_list_follows_admin_changes(served, client, admin, viewer):
    site = served[1].state.runtime.fleet.fleet.site_id[0]
    before = client.get("/api/v1/devices", headers=viewer, params={"site_id": site}).json()
    dev = before["items"][0]["id"]
    r = client.patch(f"/api/v1/devices/{dev}", headers=admin, json={"status": "maintenance"})
    assert r.status_code == 200, r.text
    after = client.get("/api/v1/devices", headers=viewer,
                       params={"site_id": site, "status": "maintenance"}).json()
    assert [d["id"] for d in after["items"]] == [dev] and after["total"] == 1
    r = client.patch(f"/api/v1/devices/{dev}", headers=admin, json={"status": "active"})
    assert r.status_code == 200, r.text
    bad = client.get("/api/v1/devices", headers=viewer, params={"sort": "power"})
    assert bad.status_code == 400
    assert "sort 'power'" in bad.text
