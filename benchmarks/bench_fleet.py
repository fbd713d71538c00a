"""How soon the running service shows a fleet edit and the ingest workers' values.

    python benchmarks/run.py fleet --sites 342 --repeats 5

Starts a private Mosquitto, ``ecogrid serve`` with ``ECOGRID_INGEST=workers`` (its own
process, a fresh data folder, the generated fleet of ``--sites`` sites) and one
``ecogrid ingest`` worker (its own process). This process publishes telemetry and
reads the REST API.

Figures:

* ``edit_to_live_ms`` (median, max): from ``POST /devices`` of a new device until
  ``GET /devices/{id}`` shows a value published for it (the service and the worker
  both took the new fleet: the service at once, the worker at its fleet-version poll,
  ``ECOGRID_FLEET_POLL_S``, 1 s by default, then its next snapshot and the service's
  one-second read of the workers' latest values);
* ``edit_answer_ms``: the ``POST /devices`` answer itself (the leader's reload of the
  fleet inside it);
* ``publication_to_api_ms`` (median, p99, max): from publishing a new value of an
  existing device to ``GET /devices/{id}`` showing it (the worker's latest file, the
  service's one-second poll).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from adapters.broker import Broker, free_port
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.topics import device_telemetry_topic

ROOT = Path(__file__).resolve().parents[1]
ADMIN = ("bench", "bench-pass-1")
_LOGS: list[str] = []


def _until(check: Any, timeout_s: float, every_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"not within {timeout_s} s (the children's logs: {_LOGS})")


def run(n_sites: int, repeats: int) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker = Broker(data / "mq").start()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "ECOGRID_DATA_DIR": str(data / "data"), "ECOGRID_MQTT_URL": broker.url,
           "ECOGRID_FLEET_SITES": str(n_sites), "ECOGRID_INGEST": "workers",
           "ECOGRID_OPTIMIZER_ENABLED": "false", "ECOGRID_ADMIN_USER": ADMIN[0],
           "ECOGRID_ADMIN_PASSWORD": ADMIN[1], "ECOGRID_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
           "PYTHONPATH": str(ROOT)}
    base = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    pub = make_client("bench-fleet-pub")
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "api.cli.main", "serve", "--port",
                                       str(port)], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=_log(data, "serve")))
        client = httpx.Client(base_url=base, timeout=60)
        _until(lambda: _healthy(client), 300, 0.5)
        procs.append(subprocess.Popen([sys.executable, "-m", "api.cli.main", "ingest",
                                       "--client-id", "bench-worker", "--flush-interval", "1",
                                       "--metrics-port", str(metrics_port)], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=_log(data, "ingest")))
        token = client.post("/api/v1/auth/token", data={
            "username": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        connect(pub, broker.url)
        pub.loop_start()
        devices = client.get("/api/v1/devices", headers=headers,
                             params={"type": "load", "limit": 1}).json()["items"]
        site, known = devices[0]["site_id"], devices[0]["id"]
        value = [-1.0]

        def publish(dev: str) -> float:
            value[0] = round(value[0] - 0.001, 3)  # a new value each time, exact in JSON
            pub.publish(device_telemetry_topic(site, dev),
                        json.dumps({"ts": time.time(), "p_kw": value[0]}), qos=1)
            return value[0]

        def shows(dev: str, want: float) -> bool:
            r = client.get(f"/api/v1/devices/{dev}", headers=headers)
            return r.status_code == 200 and r.json()["live"].get("values", {}).get(
                "p_kw") == want

        publish(known)
        _until(lambda: shows(known, value[0]) or (publish(known) and False), 120, 0.5)
        pub_ms = []
        for _ in range(max(20, 4 * repeats)):
            want = publish(known)
            t0 = time.perf_counter()
            _until(lambda want=want: shows(known, want), 30)
            pub_ms.append((time.perf_counter() - t0) * 1000.0)
        edit_ms, answer_ms = [], []
        for i in range(repeats):
            dev = f"{site}-BENCH-{i}"
            t0 = time.perf_counter()
            r = client.post("/api/v1/devices", headers=headers, json={
                "id": dev, "site_id": site, "type": "load", "load_peak_kw": 5.0,
                "load_profile": "residential"})
            answer_ms.append((time.perf_counter() - t0) * 1000.0)
            r.raise_for_status()

            published = [0.0]

            def live(dev: str = dev, published: list[float] = published) -> bool:
                # A new device starts without values: any value shown is one published
                # here. Publish again every 0.25 s (the worker takes the new fleet at its
                # next poll, and drops what came before as an unknown device).
                if time.perf_counter() - published[0] >= 0.25:
                    publish(dev)
                    published[0] = time.perf_counter()
                r = client.get(f"/api/v1/devices/{dev}", headers=headers)
                return r.status_code == 200 and "p_kw" in r.json()["live"].get("values", {})

            _until(live, 60, 0.05)
            edit_ms.append((time.perf_counter() - t0) * 1000.0)
        return {"benchmark": "fleet", "sites": n_sites,
                "devices": client.get("/api/v1/devices", headers=headers,
                                      params={"limit": 1}).json()["total"],
                "edit_to_live_ms": {"median": _r(np.median(edit_ms)), "max": _r(max(edit_ms))},
                "edit_answer_ms": {"median": _r(np.median(answer_ms)),
                                   "max": _r(max(answer_ms))},
                "publication_to_api_ms": {"median": _r(np.median(pub_ms)),
                                          "p99": _r(np.percentile(pub_ms, 99)),
                                          "max": _r(max(pub_ms))},
                "repeats": repeats}
    finally:
        pub.disconnect()
        pub.loop_stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()


def _log(data: Path, name: str) -> Any:
    """A log file for a child process (named in the error when a wait times out)."""
    path = data / f"{name}.log"
    _LOGS.append(str(path))
    return path.open("wb")


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def _r(x: float) -> float:
    return round(float(x), 1)


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="run.py fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=342, help="sites of the generated fleet")
    p.add_argument("--repeats", type=int, default=5, help="devices added")
    args = p.parse_args(argv)
    return run(args.sites, args.repeats)
