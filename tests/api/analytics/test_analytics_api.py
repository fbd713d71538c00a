"""``/api/v1/analytics/energy`` and ``/api/v1/reports/{period}`` on the real app (offline mode:
registry and history only), against a hand calculation."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from adapters.history import HistoryWriter
from api.settings import Settings
from tests.api.server import ADMIN, login, running_app
from twin.fleet import LOAD, PV

T0 = datetime(2030, 1, 10, tzinfo=UTC).timestamp()  # after anything the service writes


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, httpx.Client,
                                                                            dict[str, str]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("analytics"), mode="offline",
                        fleet_sites=2, admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, history_flush_s=10.0,
                        import_price_eur_per_mwh=200.0, export_price_eur_per_mwh=100.0,
                        co2_kg_per_mwh=500.0)
    with running_app(settings, use_default_planner=False) as (url, app), \
            httpx.Client(base_url=url, timeout=60) as client:
        rt = app.state.runtime
        fleet = rt.fleet.fleet
        site0 = np.flatnonzero(fleet.device_site == 0)
        pv = site0[fleet.device_type[site0] == PV][0]
        load = site0[fleet.device_type[site0] == LOAD][0]
        n = fleet.n_devices
        # An offline service writes no telemetry: the test writes the store as a writer does.
        with HistoryWriter(settings.history_root(), "test", fleet.device_id.tolist(),
                           rt.fleet.version) as writer:
            for k in range(4):  # 10 s apart: three intervals of 10 s count
                t = T0 + 10.0 * k
                p = np.zeros(n)
                p[pv], p[load] = 36.0, -18.0
                writer.append(t, ["p_kw", "soc"], np.column_stack([p, np.full(n, np.nan)]),
                              np.column_stack([np.full(n, t), np.full(n, np.nan)]))
        yield app, client, login(client, *ADMIN)


def test_energy_json_csv_parquet(app_client):
    app, client, auth = app_client
    q = {"start_s": T0 - 3600, "end_s": T0 + 3600, "every": "hour"}
    assert client.get("/api/v1/analytics/energy", params=q).status_code == 401
    r = client.get("/api/v1/analytics/energy", params=q, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tier"], body["resolution_s"]) == ("raw", 10.0)  # the raw snapshots
    rows = body["rows"]
    assert len(rows) == 1 and rows[0]["period"] == "2030-01-10T00:00:00+00:00"
    row = rows[0]
    assert row["generation_kwh"] == pytest.approx(0.3)       # 36 kW x 30 s
    assert row["consumption_kwh"] == pytest.approx(0.15)     # 18 kW x 30 s
    assert row["export_kwh"] == pytest.approx(0.15) and row["import_kwh"] == 0
    assert row["revenue_eur"] == pytest.approx(0.015)        # 0.15 kWh x 100 EUR/MWh
    assert row["co2_avoided_kg"] == pytest.approx(0.15)      # 0.3 kWh x 500 kg/MWh
    site = app.state.runtime.fleet.fleet.site_id[0]
    csv = client.get("/api/v1/analytics/energy", headers=auth,
                     params={**q, "scope": "site", "format": "csv"})
    df = pd.read_csv(io.StringIO(csv.text))
    assert csv.headers["content-type"].startswith("text/csv")
    assert df.set_index("site_id").loc[site, "generation_kwh"] == pytest.approx(0.3)
    pq = client.get("/api/v1/analytics/energy", headers=auth,
                    params={**q, "site_id": site, "format": "parquet"})
    assert pd.read_parquet(io.BytesIO(pq.content)).self_consumption_kwh.sum() == \
        pytest.approx(0.15)


def test_energy_errors(app_client):
    _, client, auth = app_client
    bad = client.get("/api/v1/analytics/energy", headers=auth,
                     params={"start_s": T0, "end_s": T0 - 1})
    assert bad.status_code == 400 and "must be after" in bad.json()["error"]
    bad = client.get("/api/v1/analytics/energy", headers=auth,
                     params={"start_s": T0, "end_s": T0 + 1, "every": "week"})
    assert bad.status_code == 422 and "every" in bad.json()["error"]
    bad = client.get("/api/v1/analytics/energy", headers=auth,
                     params={"start_s": T0, "end_s": T0 + 1, "site_id": "NOPE"})
    assert bad.status_code == 404 and "NOPE" in bad.json()["error"]  # as /history/sites/NOPE


def test_report_endpoint(app_client):
    _, client, auth = app_client
    r = client.get("/api/v1/reports/2030-01", headers=auth, params={"format": "pdf"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    r = client.get("/api/v1/reports/2030-01-10", headers=auth, params={"format": "csv"})
    assert "report-2030-01-10.csv" in r.headers["content-disposition"]
    assert "0.3" in r.text
    bad = client.get("/api/v1/reports/January", headers=auth)
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["error"]


def _gql(client: httpx.Client, query: str, headers: dict[str, str] | None = None
         ) -> httpx.Response:
    return client.post("/graphql", json={"query": query}, headers=headers or {})


def test_graphql_reads_with_rest_auth(app_client):
    app, client, auth = app_client
    fleet = app.state.runtime.fleet.fleet
    assert _gql(client, "{ sites { id } }").status_code == 401
    r = _gql(client, "{ sites(limit: 5) { id lat_deg devices(limit: 3) { id type } } "
                     "plans { id } alerts { id kind } }", auth)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [s["id"] for s in data["sites"]] == fleet.site_id.tolist()[:5]
    assert len(data["sites"][0]["devices"]) == 3 and data["plans"] == []
    q = (f'{{ energy(start_s: {T0 - 3600:f}, end_s: {T0 + 3600:f}, every: "hour") '
         '{ period generation_kwh revenue_eur } }')
    rows = _gql(client, q, auth).json()["data"]["energy"]
    assert rows == [{"period": "2030-01-10T00:00:00+00:00", "generation_kwh": 0.3,
                     "revenue_eur": 0.015}]
    r = _gql(client, "mutation { x }", auth)
    assert "errors" in r.json()
    for body in ('"{ sites { id } }"', "7", "null", "[]", "{bad"):  # not one JSON object
        r = client.post("/graphql", content=body,
                        headers={**auth, "content-type": "application/json"})
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert "request body" in r.json()["error"]
    # No subscriptions: a WebSocket handshake is refused (it failed with 500 before).
    ws_url = str(client.base_url).replace("http", "ws", 1) + "/graphql"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, subprotocols=["graphql-transport-ws"], additional_headers=auth,
                open_timeout=10)
    assert refused.value.response.status_code == 403


def test_graphql_depth_and_cost_limits(app_client):
    _, client, auth = app_client
    costly = _gql(client, "{ sites(limit: 1000) { devices(limit: 1000) { id p_kw soc } } }",
                  auth).json()
    assert costly["data"] is None
    assert "query cost" in costly["errors"][0]["message"]
    assert "errors" not in _gql(client, "{ sites { devices { id } } }", auth).json()
    deep = _gql(client, "{ sites { devices { a { b { c { d { e { f } } } } } } } }",
                auth).json()
    assert any("depth" in e["message"] for e in deep["errors"])
    too_deep = _gql(client, "{ a: sites { id } b: sites { id } c: sites { id } d: sites { id } "
                            "e: sites { id } f: sites { id } g: sites { id } h: sites { id } "
                            "i: sites { id } j: sites { id } k: sites { id } l: sites { id } "
                            "m: sites { id } n: sites { id } o: sites { id } p: sites { id } }",
                    auth).json()
    assert "alias" in too_deep["errors"][0]["message"].lower()
    bad = _gql(client, "{ devices(limit: 5000) { id } }", auth).json()
    assert "limit must be between 1 and 1000" in bad["errors"][0]["message"]
