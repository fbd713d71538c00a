"""Restart recovery: SIGKILL ``ecogrid serve`` and start it again on the same data.

Users, fleet, plans, command states, alerts, the audit log and the telemetry
history (up to the last flush) are all there, and command versions keep rising.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.broker import free_port
from tests.api.server import login, running_emulator, wait_for
from twin.generator import generate_fleet

pytestmark = pytest.mark.timeout(300)  # a hang fails with every thread's stack

N_SITES = 2


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "api.cli.main", "serve", "--port",
                                 str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[3])


def _wait_up(client: httpx.Client, proc: subprocess.Popen, log: Path) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ecogrid serve exited:\n{log.read_text()[-3000:]}")
        try:
            h = client.get("/healthz")
        except httpx.HTTPError:
            return False
        return h.status_code == 200 and h.json()["last_ingest_s"] is not None

    wait_for(up, timeout_s=120, every_s=0.3)


@pytest.fixture
def service_env(tmp_path: Path, mqtt_url: str) -> Iterator[dict[str, str]]:
    env = {**os.environ, "ECOGRID_DATA_DIR": str(tmp_path / "data"),
           "ECOGRID_MQTT_URL": mqtt_url, "ECOGRID_FLEET_SITES": str(N_SITES),
           "ECOGRID_ADMIN_USER": "root", "ECOGRID_ADMIN_PASSWORD": "root-pass-1",
           "ECOGRID_HISTORY_FLUSH_S": "1", "ECOGRID_DISPATCH_TICK_S": "0.2",
           "ECOGRID_TELEMETRY_INTERVAL_S": "0.5", "ECOGRID_OPTIMIZER_ENABLED": "false",
           "ECOGRID_LOG_LEVEL": "WARNING"}
    env.pop("ECOGRID_DATABASE_URL", None)
    yield env


@pytest.mark.slow
def test_state_survives_sigkill(service_env: dict[str, str], mqtt_url: str, tmp_path: Path):
    port = free_port()
    log = tmp_path / "serve.log"
    fleet = generate_fleet(n_sites=N_SITES)
    bat = fleet.device_id[fleet.rows_of_type("battery")[0]]
    site = fleet.site_id[1]
    with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        proc = _start(service_env, port, log)
        try:
            _wait_up(c, proc, log)
            admin = login(c, "root", "root-pass-1")
            c.post("/api/v1/users", headers=admin,
                   json={"name": "olga", "password": "olga-pass-1", "role": "operator"})
            op = login(c, "olga", "olga-pass-1")
            plan = c.post("/api/v1/plans", headers=op).json()
            assert c.post(f"/api/v1/plans/{plan['id']}/approve", headers=op).status_code == 200
            sp = c.post(f"/api/v1/devices/{bat}/setpoint", headers=op,
                        json={"value_kw": 1.5}).json()["commands"][0]
            done = wait_for(lambda: (x := c.get(f"/api/v1/commands/{sp['id']}",
                                                headers=op).json())["status"] == "applied"
                            and x, timeout_s=30)
            emu.drop_gateway(site)
            wait_for(lambda: c.get("/api/v1/alerts", headers=op).json(), timeout_s=30)
            emu.restore_gateway(site)
            time.sleep(2.5)  # at least two history flushes
            before_kill = time.time()
            plans_before = c.get("/api/v1/plans", headers=op).json()
            audit_before = c.get("/api/v1/audit", headers=admin).json()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)

        proc = _start(service_env, port, log)
        try:
            _wait_up(c, proc, log)
            op = login(c, "olga", "olga-pass-1")  # users survived
            admin = login(c, "root", "root-pass-1")
            assert len(c.get("/api/v1/sites", headers=op).json()) == N_SITES
            plans_after = c.get("/api/v1/plans", headers=op).json()
            assert [(p["id"], p["status"]) for p in plans_after] == \
                [(p["id"], p["status"]) for p in plans_before]
            again = c.get(f"/api/v1/commands/{sp['id']}", headers=op).json()
            assert (again["status"], again["version"]) == ("applied", done["version"])
            alerts = c.get("/api/v1/alerts", headers=op).json()
            assert any(a["site_id"] == site and a["kind"] == "gateway_offline" for a in alerts)
            audit_after = c.get("/api/v1/audit", headers=admin, params={"limit": 1000}).json()
            after_ids = {e["id"] for e in audit_after}
            assert {e["id"] for e in audit_before} <= after_ids
            hist = c.get(f"/api/v1/devices/{bat}/telemetry", headers=op,
                         params={"start": before_kill - 120, "end": before_kill}).json()
            assert len(hist["t_s"]) >= 2 and any(v is not None for v in hist["values"])
            sp2 = c.post(f"/api/v1/devices/{bat}/setpoint", headers=op,
                         json={"value_kw": 2.5}).json()["commands"][0]
            new = wait_for(lambda: (x := c.get(f"/api/v1/commands/{sp2['id']}",
                                               headers=op).json())["version"] and x,
                           timeout_s=30)
            assert new["version"] > done["version"]
            wait_for(lambda: emu.setpoint[fleet.device_row[bat]] == 2.5, timeout_s=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
