"""One telemetry store, with ``ECOGRID_INGEST=workers``: the service subscribes to no telemetry;
an ``ecogrid ingest`` worker process (settings from the environment, fleet from the
registry) writes the store, and the service serves what it wrote: live values, ``/history``,
``/analytics``, reports; a device added through the API is taken by the worker too.

Real Mosquitto, SQLite registry, the device emulator, a worker process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from adapters.broker import Broker, free_port
from adapters.history import History, HistoryWriter
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.topics import device_telemetry_topic
from api.live.planning import HistoryWindow
from api.settings import Settings
from tests.api.server import ADMIN, login, running_app, running_emulator, wait_for
from twin.generator import generate_fleet

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
N_SITES = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mosquitto: Broker
          ) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("one-store")
    settings = Settings(data_dir=data, mqtt_url=mosquitto.url, fleet_sites=N_SITES,
                        ingest="workers", admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, dispatch_tick_s=0.2, fleet_poll_s=1.0,
                        import_price_eur_per_mwh=250.0, export_price_eur_per_mwh=90.0,
                        co2_kg_per_mwh=300.0)
    env = {**os.environ, "ECOGRID_DATA_DIR": str(data), "ECOGRID_MQTT_URL": mosquitto.url,
           "ECOGRID_FLEET_POLL_S": "1", "PYTHONPATH": str(ROOT)}
    port = free_port()
    with running_app(settings, use_default_planner=False) as (base, app):
        worker = subprocess.Popen(
            [sys.executable, "-m", "api.cli.main", "ingest", "--client-id", "worker-a",
             "--flush-interval", "1", "--metrics-port", str(port)], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fleet = app.state.runtime.fleet.fleet
        try:
            with running_emulator(fleet, mosquitto.url, interval_s=0.5) as emu, \
                    httpx.Client(base_url=base, timeout=60) as client:
                yield {"app": app, "client": client, "admin": login(client, *ADMIN),
                       "worker": worker, "emu": emu, "url": mosquitto.url, "data": data}
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=30)
            assert worker.returncode == 0, err


def test_the_service_subscribes_to_no_telemetry_and_serves_the_workers_values(stack):
    rt, client, admin = stack["app"].state.runtime, stack["client"], stack["admin"]
    assert rt.ingest is None and rt.recorder is None and rt.store_feed is not None
    fleet = rt.fleet.fleet
    load = next(d for d, t in zip(fleet.device_id.tolist(), fleet.device_type.tolist(),
                                  strict=True) if t == 3)  # a load: always consumes
    live = wait_for(lambda: (d := client.get(f"/api/v1/devices/{load}", headers=admin)
                             .json())["live"].get("values") and d["live"], 60)
    assert live["values"]["p_kw"] < 0 and live["online"] is True
    # the writer is the worker, not the service
    writers = {w.writer for w in History(rt.settings.history_root()).writers()}
    assert writers == {"p0of1"}  # the whole fleet as one site partition
    health = client.get("/healthz").json()
    assert health["ingest"] == "workers" and health["status"] == "ok"


def test_history_analytics_and_reports_read_what_the_worker_wrote(stack):
    client, admin = stack["client"], stack["admin"]
    now = time.time()

    def fleet_history() -> dict[str, Any] | None:
        h = client.get("/api/v1/history/fleet", headers=admin,
                       params={"start": now - 600, "end": time.time() + 1}).json()
        seen = [v for v in h["consumption_kw"] if v]
        return h if len(seen) >= 3 else None

    h = wait_for(fleet_history, 60)
    assert h["tier"] == "raw" and h["resolution_s"] > 0
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    rows = client.get("/api/v1/analytics/energy", headers=admin,
                      params={"start_s": start, "end_s": start + 86400, "every": "day"}
                      ).json()
    assert rows["tier"] == "raw" and rows["rows"][0]["consumption_kwh"] > 0
    assert rows["rows"][0]["cost_eur"] == pytest.approx(
        rows["rows"][0]["import_kwh"] * 0.25, abs=2e-6)  # 250 EUR/MWh, 6 decimals
    report = client.get(f"/api/v1/reports/{day}", headers=admin, params={"format": "csv"})
    assert report.status_code == 200 and b"consumption_kwh" in report.content


def test_a_device_added_through_the_api_is_taken_by_the_worker(stack):
    client, admin, rt = stack["client"], stack["admin"], stack["app"].state.runtime
    site = rt.fleet.fleet.site_id[0]
    dev = f"{site}-NEW-LOAD"
    r = client.post("/api/v1/devices", headers=admin, json={
        "id": dev, "site_id": site, "type": "load", "load_peak_kw": 20.0,
        "load_profile": "residential"})
    assert r.status_code == 201, r.text
    pub = make_client("one-store-pub")
    connect(pub, stack["url"])
    pub.loop_start()
    try:
        def reported() -> dict[str, Any] | None:
            pub.publish(device_telemetry_topic(site, dev),
                        json.dumps({"ts": time.time(), "p_kw": -7.25}), qos=1)
            d = client.get(f"/api/v1/devices/{dev}", headers=admin).json()
            return d["live"] if d["live"].get("values") else None

        live = wait_for(reported, 60, every_s=0.5)
        assert live["values"]["p_kw"] == -7.25
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_the_planners_history_window_reads_15_minute_means_of_the_store(tmp_path):
    fleet = generate_fleet(2, seed=1)
    ids = fleet.device_id.tolist()
    t0 = 1_800_000_000.0  # a whole quarter hour
    w = HistoryWriter(tmp_path, "leader", ids, 1, sites=fleet.site_id.tolist()).open()
    p = np.zeros((len(ids), 1))
    for k in range(0, 40 * 60, 60):  # 40 minutes at one snapshot a minute
        p[:, 0] = k / 60.0  # minute number
        w.append(t0 + k, ["p_kw"], p, np.full_like(p, t0 + k))
    w.close(finish=True)
    window = HistoryWindow(window_s=86400.0, every_s=900.0)
    window.update(History(tmp_path), t0 + 40 * 60)
    got = window.series(fleet)
    # means of minutes 0..14 and 15..29; the bucket that holds minute 30.. is the last one
    assert got["history_t_s"][:2].tolist() == [t0 + 450.0, t0 + 1350.0]
    assert got["history_p_kw"][:2, 0].tolist() == [7.0, 22.0]
