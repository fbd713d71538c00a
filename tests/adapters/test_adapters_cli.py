"""``ecogrid mqtt credentials`` and ``ecogrid devices simulate``, in process."""

from __future__ import annotations

import json
import stat
import time

from adapters.broker import Broker
from adapters.credentials import SERVICE_USER, read_secrets
from adapters.mqtt.ingest import TelemetryIngest
from api.cli.main import main
from twin.generator import generate_fleet


def test_credentials_then_simulate_against_a_secured_broker(tmp_path, capsys):
    out = tmp_path / "creds"
    assert main(["mqtt", "credentials", "--sites", "3", "--out", str(out)]) == 0
    assert stat.S_IMODE((out / "secrets.env").stat().st_mode) == 0o600
    secrets = read_secrets(out / "secrets.env")
    assert set(secrets) == {SERVICE_USER, "gw-S0001", "gw-S0002", "gw-S0003"}
    acl = (out / "acl").read_text()
    assert "user gw-S0002\ntopic write sites/S0002/telemetry" in acl
    fleet = generate_fleet(3)
    with Broker(tmp_path / "mq", password_file=out / "passwd", acl_file=out / "acl") as broker:
        svc_url = f"mqtt://{SERVICE_USER}:{secrets[SERVICE_USER]}@{broker.host}:{broker.port}"
        ingest = TelemetryIngest(fleet, client_id="cli-ingest").start(svc_url)
        capsys.readouterr()
        try:
            rc = main(["devices", "simulate", "--sites", "3", "--broker", broker.url,
                       "--credentials", str(out / "secrets.env"), "--duration", "1.5",
                       "--interval", "0.5"])
            figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            want = figures["ticks"] * fleet.n_devices * 5
            deadline = time.monotonic() + 10
            while ingest.counters()["values"] < want and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ingest.stop()
    assert rc == 0
    assert figures["gateways_online"] == 3 and figures["ticks"] >= 1
    assert ingest.counters()["values"] >= want  # every tick's telemetry passed the ACL
    assert ingest.rejects == {}


def test_bad_arguments_give_a_clear_error(tmp_path, capsys):
    assert main(["devices", "simulate", "--sites", "2", "--broker", "http://x"]) == 2
    assert "scheme must be mqtt://" in capsys.readouterr().err
    assert main(["devices", "simulate", "--fleet", str(tmp_path / "none.json"),
                 "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["devices", "simulate", "--sites", "2", "--broker", "mqtt://127.0.0.1:1",
                 "--drop", "S9999"]) == 2
    assert "unknown site" in capsys.readouterr().err
    assert main(["devices", "simulate", "--sites", "2", "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "cannot reach the broker" in capsys.readouterr().err
