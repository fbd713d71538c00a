"""Fleet and site power history on a running app (offline mode), checked against a hand sum
of the devices' telemetry series; the site filter of ``/commands``; a scenario run's
fleet-flow series."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from adapters.history import HistoryWriter
from api.settings import Settings
from tests.api.server import ADMIN, running_app, wait_for

pytestmark = pytest.mark.timeout(300)

NOW_S = 1_750_000_000.0  # the service's clock: fixed, so its own snapshots stay out of the way
T0_S = NOW_S + 1000.0    # the snapshots written by the test
N_SNAPSHOTS = 12
STEP_S = 10.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), mode="offline",
                        fleet_sites=3, admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, history_flush_s=STEP_S)  # as written
    with running_app(settings, clock=lambda: NOW_S) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def written(served: tuple[str, Any]) -> np.ndarray:
    """Snapshots of random powers of both signs, with gaps (NaN), one all-NaN snapshot."""
    rt = served[1].state.runtime
    fleet = rt.fleet.fleet
    n = fleet.n_devices
    rng = np.random.default_rng(7)
    p = rng.uniform(-50.0, 50.0, (N_SNAPSHOTS, n)).astype(np.float32)
    p[rng.random((N_SNAPSHOTS, n)) < 0.15] = np.nan
    p[5] = np.nan  # nobody reported
    # An offline service writes no telemetry: the test writes the store as a writer does.
    with HistoryWriter(rt.settings.history_root(), "test", fleet.device_id.tolist(),
                       rt.fleet.version) as writer:
        for i in range(N_SNAPSHOTS):
            t = T0_S + i * STEP_S
            values = np.column_stack([p[i], np.full(n, 0.5)])
            ts = np.column_stack([np.where(np.isnan(p[i]), np.nan, t), np.full(n, t)])
            writer.append(t, ["p_kw", "soc"], values, ts)
    return p


def _device_series(client, viewer, start, end):
    """Every device's raw p_kw series from the device telemetry endpoint, with its type."""
    devices = client.get("/api/v1/devices", headers=viewer, params={"limit": 1000}).json()
    out = []
    for d in devices["items"]:
        h = client.get(f"/api/v1/devices/{d['id']}/telemetry", headers=viewer,
                       params={"start": start, "end": end}).json()
        assert (h["tier"], h["resolution_s"]) == ("raw", STEP_S), h
        out.append((d, h["t_s"], h["values"]))
    return out


def _hand_sum(series, site_id=None):
    """Per snapshot time: generation, consumption, battery, grid [kW], summed by hand."""
    sums: dict[float, list[float]] = {}
    seen: dict[float, bool] = {}
    for d, times, values in series:
        if site_id is not None and d["site_id"] != site_id:
            continue
        for t, v in zip(times, values, strict=True):
            acc = sums.setdefault(t, [0.0, 0.0, 0.0, 0.0])
            seen.setdefault(t, False)
            if v is None:
                continue
            seen[t] = True
            if v > 0 and d["type"] == "pv":  # generation: PV output
                acc[0] += v
            if v < 0 and d["type"] in ("load", "ev_charger"):  # consumption: load + EV
                acc[1] -= v
            if d["type"] == "battery":
                acc[2] += v
            acc[3] += v
    return {t: (acc if seen[t] else [None] * 4) for t, acc in sums.items()}


KEYS = ("generation_kw", "consumption_kw", "battery_kw", "grid_kw")


def _close(got, want):
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= 1e-3 + 1e-5 * abs(want)


def test_fleet_history_is_the_sum_of_the_device_series(client, viewer, written):
    start, end = T0_S - 1, T0_S + N_SNAPSHOTS * STEP_S
    hand = _hand_sum(_device_series(client, viewer, start, end))
    r = client.get("/api/v1/history/fleet", headers=viewer, params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tier"], body["resolution_s"]) == ("raw", STEP_S)
    assert body["t_s"] == sorted(hand) and len(body["t_s"]) == N_SNAPSHOTS
    for i, t in enumerate(body["t_s"]):
        for k, key in enumerate(KEYS):
            assert _close(body[key][i], hand[t][k]), (t, key, body[key][i], hand[t][k])
    assert body["generation_kw"][5] is None  # the snapshot nobody reported in
    assert body["consumption_kw"][0] > 0 and body["generation_kw"][0] > 0


def test_fleet_history_averaged_over_buckets(client, viewer, written):
    start, end, every = T0_S, T0_S + N_SNAPSHOTS * STEP_S, 4 * STEP_S
    hand = _hand_sum(_device_series(client, viewer, start, end))
    body = client.get("/api/v1/history/fleet", headers=viewer,
                      params={"start": start, "end": end, "every": every}).json()
    assert (body["tier"], body["resolution_s"]) == ("raw", every)
    assert body["t_s"] == [start, start + every, start + 2 * every]
    for b, t in enumerate(body["t_s"]):
        members = [hand[x] for x in sorted(hand) if t <= x < t + every and hand[x][0] is not None]
        for k, key in enumerate(KEYS):
            want = sum(m[k] for m in members) / len(members)
            assert _close(body[key][b], want), (t, key)


def test_site_history_is_the_sum_of_its_devices(served, client, viewer, written):
    fleet = served[1].state.runtime.fleet.fleet
    start, end = T0_S, T0_S + N_SNAPSHOTS * STEP_S
    series = _device_series(client, viewer, start, end)
    fleet_body = client.get("/api/v1/history/fleet", headers=viewer,
                            params={"start": start, "end": end}).json()
    total = np.zeros(N_SNAPSHOTS)
    for site in fleet.site_id.tolist():
        hand = _hand_sum(series, site)
        r = client.get(f"/api/v1/history/sites/{site}", headers=viewer,
                       params={"start": start, "end": end})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["site_id"] == site and body["t_s"] == sorted(hand)
        for i, t in enumerate(body["t_s"]):
            for k, key in enumerate(KEYS):
                assert _close(body[key][i], hand[t][k]), (site, t, key)
        total += np.nan_to_num(np.array(body["grid_kw"], dtype=float))
    fleet_grid = np.nan_to_num(np.array(fleet_body["grid_kw"], dtype=float))
    np.testing.assert_allclose(total, fleet_grid, atol=1e-2)  # sites add up to the fleet


def test_history_defaults_to_the_last_hour(client, viewer, written):
    body = client.get("/api/v1/history/fleet", headers=viewer).json()
    assert body["end_s"] == NOW_S and body["start_s"] == NOW_S - 3600
    assert T0_S not in body["t_s"]  # written after "now"


def test_history_refuses_bad_requests(client, viewer, written):
    def get(path, **params):
        return client.get(path, headers=viewer, params=params)

    r = get("/api/v1/history/fleet", start=T0_S + 10, end=T0_S)
    assert r.status_code == 400 and "must be after start" in r.json()["error"]
    r = get("/api/v1/history/fleet", start=T0_S, end=T0_S + 100, every=0)
    assert r.status_code == 400 and "every must be positive" in r.json()["error"]
    r = get("/api/v1/history/fleet", start=0, end=T0_S, every=1)
    assert r.status_code == 400 and "choose a larger every" in r.json()["error"]
    r = get("/api/v1/history/fleet", start="nan", end=T0_S)
    assert r.status_code in (400, 422) and "start" in r.json()["error"]
    r = get("/api/v1/history/fleet", start="yesterday")
    assert r.status_code == 422 and "start" in r.json()["error"]
    r = get("/api/v1/history/sites/NOPE", start=T0_S, end=T0_S + 100)
    assert r.status_code == 404 and "'NOPE'" in r.json()["error"]
    assert client.get("/api/v1/history/fleet").status_code == 401


def test_commands_filtered_by_site(served, client, operator, viewer):
    fleet = served[1].state.runtime.fleet.fleet
    bats = fleet.rows_of_type("battery")
    sites = {}
    for row in bats.tolist():
        sites.setdefault(fleet.site_id[fleet.device_site[row]], fleet.device_id[row])
    assert len(sites) >= 2, "the test fleet needs batteries at two sites"
    for dev in sites.values():
        r = client.post(f"/api/v1/devices/{dev}/setpoint", headers=operator,
                        json={"value_kw": 1.0})
        assert r.status_code == 201, r.text
    site, dev = next(iter(sites.items()))
    mine = client.get("/api/v1/commands", headers=viewer, params={"site_id": site}).json()
    everything = client.get("/api/v1/commands", headers=viewer, params={"limit": 5000}).json()
    assert mine and all(c["site_id"] == site for c in mine)
    assert [c["id"] for c in mine] == [c["id"] for c in everything if c["site_id"] == site]
    assert len(everything) > len(mine)
    one = client.get("/api/v1/commands", headers=viewer,
                     params={"site_id": site, "device_id": dev, "status": "pending",
                             "limit": 1}).json()
    assert len(one) == 1 and one[0]["device_id"] == dev
    r = client.get("/api/v1/commands", headers=viewer, params={"site_id": "NOPE"})
    assert r.status_code == 404 and "'NOPE'" in r.json()["error"]
    r = client.get("/api/v1/commands", headers=viewer, params={"site_id": site, "status": "x"})
    assert r.status_code == 400 and "status" in r.json()["error"]


def test_scenario_series_sums_the_site_flows(served, client, operator, viewer):
    text = ("name: series-test\nfleet:\n  generator: {n_sites: 2, seed: 1}\nperiod:\n"
            "  start: 2025-06-02T00:00\n  end: 2025-06-02T06:00\n  step: 1h\n"
            "strategy:\n  kind: rule\n")
    r = client.post("/api/v1/scenarios", headers=operator, content=text.encode())
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    done = wait_for(lambda: (x := client.get(f"/api/v1/scenarios/{run_id}",
                                             headers=viewer).json())["status"]
                    in ("done", "failed") and x, timeout_s=120)
    assert done["status"] == "done", done["error"]
    body = client.get(f"/api/v1/scenarios/{run_id}/series", headers=viewer).json()
    from scenarios.results import open_results

    ds = open_results(served[1].state.runtime.scenarios.out_dir / run_id)
    assert len(body["t_s"]) == 6 and body["t_s"][1] - body["t_s"][0] == 3600
    for name in ("pv_kw", "battery_kw", "load_kw", "net_kw"):
        by_hand = [float(sum(ds[name].values[i, :].astype(float))) for i in range(6)]
        np.testing.assert_allclose(body[name], by_hand, atol=1e-2)
    assert min(body["load_kw"]) < 0  # loads draw power: negative
    half = client.get(f"/api/v1/scenarios/{run_id}/series", headers=viewer,
                      params={"every": 3 * 3600}).json()
    assert len(half["t_s"]) == 2
    np.testing.assert_allclose(half["net_kw"][0], np.mean(body["net_kw"][:3]), atol=1e-2)
    two = client.get(f"/api/v1/scenarios/{run_id}/series", headers=viewer,
                     params={"points": 2}).json()
    assert two["t_s"] == half["t_s"] and two["every_s"] == 3 * 3600
    r = client.get(f"/api/v1/scenarios/{run_id}/series", headers=viewer,
                   params={"points": 2, "every": 60})
    assert r.status_code == 400 and "not both" in r.json()["error"]
    assert client.get("/api/v1/scenarios/nope/series", headers=viewer).status_code == 404
