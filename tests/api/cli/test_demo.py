"""``ecogrid demo`` end to end: private broker, emulator, service and API from one command;
the printed credentials work, a plan is approved and applied, Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from adapters.broker import free_port
from tests.api.server import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_runs_the_loop_and_stops_cleanly(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "ECOGRID_DATA_DIR": str(tmp_path / "data"),
           "ECOGRID_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",  # nobody there: own broker
           "ECOGRID_OPTIMIZER_ENABLED": "false", "ECOGRID_DISPATCH_TICK_S": "0.2"}
    for k in ("ECOGRID_ADMIN_USER", "ECOGRID_ADMIN_PASSWORD", "ECOGRID_DATABASE_URL",
              "ECOGRID_FLEET_SITES"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "api.cli.main", "demo", "--sites", "2",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[3])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        def printed() -> re.Match[str] | None:
            if proc.poll() is not None:
                raise AssertionError("ecogrid demo exited early:\n" + "".join(lines)[-3000:])
            return next((m for ln in lines if (m := re.search(
                r"admin user: (\S+)\s+password: (\S+)", ln))), None)

        creds = wait_for(printed, timeout_s=180)
        assert any(f"http://127.0.0.1:{port}" in ln for ln in lines)
        assert any("started a private Mosquitto" in ln for ln in lines)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            tok = c.post("/api/v1/auth/token", data={"username": creds.group(1),
                                                     "password": creds.group(2)}).json()
            h = {"Authorization": f"Bearer {tok['access_token']}"}
            wait_for(lambda: c.get("/healthz").json()["last_ingest_s"], timeout_s=60)
            plan = c.post("/api/v1/plans", headers=h).json()
            assert c.post(f"/api/v1/plans/{plan['id']}/approve", headers=h).status_code == 200

            def applied() -> bool:
                cmds = c.get("/api/v1/commands", headers=h,
                             params={"plan_id": plan["id"]}).json()
                return bool(cmds) and all(x["status"] in ("applied", "rejected") for x in cmds)

            wait_for(applied, timeout_s=60)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
        proc.stdout.close()
    assert rc == 0, "".join(lines)[-3000:]
    assert any("stopped." in ln for ln in lines)
    assert not any("Traceback" in ln for ln in lines), "".join(lines)[-3000:]
    time.sleep(0.5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
