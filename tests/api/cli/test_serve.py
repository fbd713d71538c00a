"""``ecogrid users ...`` and ``ecogrid serve`` start-up errors, and the service on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.registry import open_registry
from adapters.registry import users as users_repo
from api.cli.main import main
from api.settings import Settings
from tests.adapters.registry_fixtures import postgres_schema
from tests.api.server import login, running_app

pytestmark = pytest.mark.timeout(300)  # a hang fails with every thread's stack


def test_users_create_list_passwd(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("ECOGRID_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ECOGRID_DATABASE_URL", raising=False)
    assert main(["users", "create", "ada", "--role", "admin", "--password", "ada-pass-1"]) == 0
    assert "created user 'ada' with role admin" in capsys.readouterr().out
    assert main(["users", "create", "ada", "--role", "viewer", "--password", "x" * 9]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "create", "bob", "--role", "viewer", "--password", "short"]) == 1
    assert "at least 8" in capsys.readouterr().err
    assert main(["users", "passwd", "ada", "--password", "ada-pass-2"]) == 0
    assert main(["users", "list"]) == 0
    assert "ada" in capsys.readouterr().out
    reg = open_registry(f"sqlite:///{tmp_path / 'ecogrid.db'}")
    with reg.session() as s:
        assert users_repo.get_user(s, "ada")["role"] == "admin"
    reg.close()
    with pytest.raises(SystemExit):
        main(["users", "create", "eve", "--role", "king", "--password", "x" * 9])


def test_serve_refuses_an_unreachable_broker_and_bad_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECOGRID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOGRID_FLEET_SITES", "1")
    monkeypatch.setenv("ECOGRID_MQTT_URL", "mqtt://127.0.0.1:1")
    assert main(["serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the MQTT broker at mqtt://127.0.0.1:1" in err and "Traceback" not in err
    monkeypatch.setenv("ECOGRID_PLAN_STEP_S", "-5")
    assert main(["serve"]) == 2
    assert "ECOGRID_PLAN_STEP_S" in capsys.readouterr().err


@pytest.fixture
def pg_url() -> Iterator[str]:
    for url, schema in postgres_schema():
        yield f"{url}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
def test_service_on_postgresql(tmp_path: Path, pg_url: str):
    settings = Settings(data_dir=tmp_path, database_url=pg_url, mode="offline", fleet_sites=2,
                        admin_user="root", admin_password="root-pass-1",
                        optimizer_enabled=False)
    with running_app(settings) as (url, app), httpx.Client(base_url=url, timeout=60) as c:
        admin = login(c, "root", "root-pass-1")
        assert app.state.runtime.registry.engine.dialect.name == "postgresql"
        assert len(c.get("/api/v1/sites", headers=admin).json()) == 2
        plan = c.post("/api/v1/plans", headers=admin).json()
        ok = c.post(f"/api/v1/plans/{plan['id']}/approve", headers=admin).json()
        assert ok["status"] == "approved" and ok["decided_by"] == "root"
        assert c.get("/api/v1/audit", headers=admin, params={"action": "plan.approve"}).json()
