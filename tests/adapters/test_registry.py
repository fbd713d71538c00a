# ruff: noqa: F811  (pytest fixtures imported from registry_fixtures are used as arguments)
"""The SQL registry on SQLite and PostgreSQL: migrations, users, fleet, plans, commands,
alerts, audit log, scenarios."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from adapters.registry import (
    RegistryError,
    alerts,
    audit,
    commands,
    open_registry,
    plans,
    scenarios,
    users,
)
from adapters.registry import fleet as fleet_repo
from adapters.registry.models import Base, CommandRow
from adapters.registry.plans import PlanStateError
from tests.adapters.registry_fixtures import registry, registry_url  # noqa: F401
from tests.api.server import wait_for
from twin.fleet import FleetError
from twin.generator import generate_fleet

T0 = 1_800_000_000.0


def test_migrations_create_every_table_and_reopen_is_idempotent(registry, registry_url):
    tables = set(inspect(registry.engine).get_table_names())
    assert {"users", "refresh_tokens", "sites", "feeders", "devices", "plans", "commands",
            "device_versions", "alerts", "audit_log", "scenarios", "alembic_version"} <= tables
    url, schema = registry_url
    again = open_registry(url, schema=schema)  # upgrade head on a migrated database: no-op
    assert again.ping()
    again.close()


def test_migrations_build_the_schema_the_models_declare(registry):
    # Every table, column, type and index the models declare comes from a migration:
    # Alembic's autogenerate finds nothing left to write (every table, the alert tables
    # too, is in the one metadata of adapters.registry.models).
    with registry.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_users_and_refresh_tokens(registry):
    with registry.session() as s:
        u = users.create_user(s, "ada", "hash1", "operator", T0)
        assert u["role"] == "operator"
        with pytest.raises(RegistryError, match="already exists"):
            users.create_user(s, "ada", "hash2", "viewer", T0)
    with registry.session() as s, pytest.raises(RegistryError, match="role"):
        users.create_user(s, "bob", "h", "boss", T0)
    with registry.session() as s:
        users.add_refresh_token(s, "ada", "jti-1", T0, T0 + 100)
        users.add_refresh_token(s, "ada", "jti-2", T0, T0 + 100)
    with registry.session() as s:
        assert users.refresh_token_valid(s, "jti-1", T0 + 1)
        assert not users.refresh_token_valid(s, "jti-1", T0 + 101)  # expired
        assert users.revoke_refresh_token(s, "jti-1", T0 + 2)
        assert not users.refresh_token_valid(s, "jti-1", T0 + 3)
        users.set_password(s, "ada", "hash3", T0 + 4)  # revokes the rest
        assert not users.refresh_token_valid(s, "jti-2", T0 + 5)
        assert users.get_user(s, "ada")["password_hash"] == "hash3"
        assert users.count_users(s, "operator") == 1


def test_fleet_round_trip_and_device_queries(registry):
    fleet = generate_fleet(n_sites=4, seed=3)
    with registry.session() as s:
        assert fleet_repo.import_fleet(s, fleet) == fleet.n_devices
    with registry.session() as s:
        back = fleet_repo.load_fleet(s)
    assert sorted(back.device_id.tolist()) == sorted(fleet.device_id.tolist())
    assert back.installed_capacity_kw() == pytest.approx(fleet.installed_capacity_kw())
    site = fleet.site_id[0]
    with registry.session() as s:
        page, total = fleet_repo.list_devices(s, site_id=site, sort="-id", limit=3)
        assert total == int((fleet.device_site == 0).sum())
        assert [d["id"] for d in page] == sorted((d["id"] for d in page), reverse=True)
        assert all(d["site_id"] == site for d in page)
        bats, n_bat = fleet_repo.list_devices(s, type="battery", limit=1000)
        assert n_bat == fleet.count_by_type()["battery"] and bats[0]["type"] == "battery"
        found, _ = fleet_repo.list_devices(s, q=page[0]["id"].lower())
        assert page[0]["id"] in {d["id"] for d in found}
        with pytest.raises(RegistryError, match="sort"):
            fleet_repo.list_devices(s, sort="colour")


def test_site_and_device_changes_are_validated(registry):
    with registry.session() as s:
        fleet_repo.create_site(s, {"id": "X1", "lat_deg": 48.0, "lon_deg": 11.0,
                                   "import_limit_kw": 100.0, "export_limit_kw": 100.0})
        dev = fleet_repo.create_device(s, {"id": "X1-BAT", "site_id": "X1", "type": "battery",
                                           "battery_kwh": 100.0, "charge_kw": 50.0,
                                           "discharge_kw": 50.0, "charge_eff": 0.95,
                                           "discharge_eff": 0.95, "soc_min": 0.1,
                                           "soc_max": 0.9, "tags": ["north"]})
        assert dev["tags"] == ["north"] and dev["battery_kwh"] == 100.0
    with registry.session() as s, pytest.raises(FleetError, match="lat_deg"):
        fleet_repo.update_site(s, "X1", {"lat_deg": 123.0})
    with registry.session() as s, pytest.raises(FleetError, match="soc_min"):
        fleet_repo.update_device(s, "X1-BAT", {"soc_min": 0.95})
    with registry.session() as s:
        assert fleet_repo.update_device(s, "X1-BAT", {"status": "maintenance"})["status"] == \
            "maintenance"
        page, total = fleet_repo.list_devices(s, tag="north")
        assert total == 1 and page[0]["id"] == "X1-BAT"
        fleet_repo.delete_site(s, "X1")
    with registry.session() as s:
        assert fleet_repo.get_device(s, "X1-BAT") is None


def _plan(pid: str, created_s: float = T0) -> dict:
    return {"id": pid, "created_s": created_s, "start_s": created_s, "step_s": 900.0,
            "n_steps": 2, "initial_state": {"soc": {"B": 0.5}},
            "setpoints": {"p_kw": {"B": [10.0, None]}}, "kpis": {"cost_eur": 1.0},
            "solver_status": "optimal", "solver_time_s": 0.1}


def test_plan_life_cycle(registry):
    with registry.session() as s:
        plans.add_plan(s, _plan("p1"))
        plans.add_plan(s, _plan("p2", T0 + 1))
    with registry.session() as s:
        rec = plans.set_status(s, "p1", "approved", user="op", t_s=T0 + 5)
        assert (rec["status"], rec["decided_by"], rec["decided_s"]) == ("approved", "op", T0 + 5)
        plans.set_status(s, "p1", "dispatched")
        plans.set_status(s, "p2", "rejected", user="op", t_s=T0 + 6, reason="too costly")
    with registry.session() as s:
        with pytest.raises(PlanStateError, match="rejected"):
            plans.set_status(s, "p2", "approved")
        assert [p["id"] for p in plans.list_plans(s)] == ["p2", "p1"]
        assert [p["id"] for p in plans.list_plans(s, status="dispatched")] == ["p1"]
        assert plans.get_plan(s, "p1")["setpoints"] == {"p_kw": {"B": [10.0, None]}}
        assert "setpoints" not in plans.get_plan(s, "p1", with_setpoints=False)
        assert plans.get_plan(s, "p2")["reason"] == "too costly"


def test_commands_states_and_versions_keep_rising(registry, registry_url):
    item = {"site_id": "S", "device_id": "D", "kind": "p_kw", "value": 5.0, "due_s": T0,
            "valid_until_s": T0 + 900, "source": "manual", "created_by": "op"}
    with registry.session() as s:
        now_cmd, later = commands.add_commands(s, [item, {**item, "due_s": T0 + 60}], T0)
    assert (now_cmd["status"], later["status"]) == ("pending", "scheduled")
    with registry.session() as s:
        assert [c["id"] for c in commands.due_commands(s, T0)] == [now_cmd["id"]]
        commands.mark_queued(s, [now_cmd], T0)
        assert commands.cancel(s, later["id"], T0 + 1)["status"] == "cancelled"
    with registry.session() as s:
        rec = commands.set_state(s, "D", now_cmd["version"], "applied", T0 + 2)
        assert rec["status"] == "applied" and rec["acked_s"] == T0 + 2
        # A final state sticks.
        assert commands.set_state(s, "D", now_cmd["version"], "rejected", T0 + 3)["status"] \
            == "applied"
        with pytest.raises(commands.CommandStateError):
            commands.cancel(s, now_cmd["id"], T0 + 4)
        assert commands.count_by_status(s) == {"applied": 1, "cancelled": 1}
        commands.add_commands(s, [{**item, "site_id": "S2", "device_id": "D2"}], T0)
        assert [c["device_id"] for c in commands.list_commands(s, site_id="S")] == ["D", "D"]
        assert [c["site_id"] for c in commands.list_commands(s, site_id="S2")] == ["S2"]
    first = now_cmd["version"]
    url, schema = registry_url
    again = open_registry(url, schema=schema)
    with again.session() as s:
        assert commands.next_versions(s, ["D", "D"])["D"] == [first + 1, first + 2]
    again.close()


def test_command_store_implements_the_mqtt_protocol(registry):
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    seen = []
    store = SqlCommandStore(registry, on_change=seen.append, flush_s=60.0, version_block=3)
    try:
        item = {"site_id": "S", "device_id": "D", "kind": "p_kw", "value": 7.0, "due_s": T0,
                "valid_until_s": T0 + 900, "source": "plan", "plan_id": "p1"}
        with registry.session() as s:
            row = commands.add_commands(s, [item], T0)[0]
        store.adopt("D", row["id"])
        versions = [store.next_version("D") for _ in range(4)]
        assert versions == [1, 2, 3, 4]
        rec = CommandRecord("c-1", "S", "D", 4, {"p_kw": 7.0}, T0, T0 + 900, "queued",
                            transitions=(("queued", T0),))
        store.save(rec)
        assert store.get("c-1") == rec  # from memory before the flush
        store.save(rec.moved("sent", T0 + 0.1))
        assert store.flush() == 1
        assert [r.command_id for r in store.open_commands()] == ["c-1"]
        store.save(store.get("c-1").moved("applied", T0 + 0.5))
        store.flush()
        with registry.session() as s:
            stored = commands.get_command(s, row["id"])  # the adopted registry row
        assert (stored["command_id"], stored["version"], stored["status"]) == ("c-1", 4,
                                                                               "applied")
        assert stored["plan_id"] == "p1" and stored["acked_s"] == T0 + 0.5
        assert [t[0] for t in stored["transitions"]] == ["pending", "queued", "sent", "applied"]
        assert store.open_commands() == []
        assert store.history("D")[0].state == "applied"
        assert seen[-1]["status"] == "applied"
        # A record the registry never saw (sent by another path) is inserted.
        store.save(CommandRecord("c-2", "S", "E", 1, {"p_limit_kw": 3.0}, T0, T0 + 60,
                                 "queued"))
        store.flush()
        assert store.get("c-2").setpoint == {"p_limit_kw": 3.0}
    finally:
        store.close()
    # Versions come in durable blocks: a new store (a restart) never reuses one.
    store2 = SqlCommandStore(registry, flush_s=60.0, version_block=3)
    try:
        assert store2.next_version("D") > 4
    finally:
        store2.close()


def test_command_store_holds_its_writes_after_a_burst(registry):
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    store = SqlCommandStore(registry, flush_s=0.02, burst_hold_s=2.0)
    try:
        def stored(cid: str) -> str | None:
            with registry.session() as s:
                return s.scalar(select(CommandRow.status).where(CommandRow.command_id == cid))

        rec = CommandRecord("h-1", "S", "D", 1, {"p_kw": 1.0}, T0, T0 + 900, "queued",
                            transitions=(("queued", T0),))
        store.hold()  # a burst goes out: the writer waits
        store.save(rec)
        time.sleep(1.0)
        assert stored("h-1") is None
        t_held = time.monotonic()
        store.hold()  # a hold in force is not extended
        store.save(rec.moved("applied", T0 + 0.1))  # its ack comes within the hold
        wait_for(lambda: stored("h-1"), timeout_s=10, every_s=0.02)
        assert time.monotonic() - t_held < 1.7  # the first hold's end (1 s on), not 2 s on
        assert stored("h-1") == "applied"  # one write, with the newest state
        store.hold()
        store.save(CommandRecord("h-2", "S", "D", 2, {"p_kw": 2.0}, T0, T0 + 900, "queued"))
        assert store.flush() == 1 and stored("h-2") == "queued"  # flush() does not wait
    finally:
        store.close()


def test_checkpoint_folds_the_write_ahead_log(registry):
    if registry.engine.dialect.name != "sqlite":
        pytest.skip("a write-ahead log to fold in is SQLite's (PostgreSQL: nothing to do)")
    path = Path(registry.engine.url.database)
    with registry.session() as s:
        audit.record(s, T0, "op", "big", "x", {"blob": "x" * 500_000})
    before = path.stat().st_size  # the row is still in the -wal file
    registry.checkpoint()
    assert path.stat().st_size >= before + 400_000


def test_alerts_audit_and_scenarios(registry):
    with registry.session() as s:
        a = alerts.raise_alert(s, T0, "warning", "stale", "no telemetry", device_id="D")
        audit.record(s, T0, "op", "plan.approve", "plan:p1", {"why": "cheap"})
        scenarios.add_scenario(s, "r1", T0, "op", "name: x")
    with registry.session() as s:
        assert alerts.list_alerts(s, acked=False)[0]["id"] == a["id"]
        acked = alerts.ack_alert(s, a["id"], "op", T0 + 1)
        assert (acked["acked_by"], acked["acked_s"]) == ("op", T0 + 1)
        assert alerts.list_alerts(s, acked=False) == []
        with pytest.raises(RegistryError):
            alerts.raise_alert(s, T0, "apocalyptic", "x", "y")
        entry = audit.entries(s, user="op")[0]
        assert (entry["action"], entry["target"], entry["detail"]) == (
            "plan.approve", "plan:p1", {"why": "cheap"})
        scenarios.update_scenario(s, "r1", status="done", progress=1.0, kpis={"cost": 2})
        assert scenarios.get_scenario(s, "r1")["kpis"] == {"cost": 2}


def test_command_store_reserves_versions_in_bulk(registry):
    from adapters.registry.command_store import SqlCommandStore

    store = SqlCommandStore(registry, flush_s=60.0, version_block=2)
    try:
        assert store.next_version("A") == 1
        store.reserve(["A", "B", "C"])  # A still has version 2 reserved: untouched
        assert [store.next_version(d) for d in ("A", "A", "B", "C")] == [2, 3, 1, 1]
    finally:
        store.close()
    again = SqlCommandStore(registry, flush_s=60.0, version_block=2)
    try:
        again.reserve(["A", "B"])
        assert again.next_version("A") > 3 and again.next_version("B") > 1
    finally:
        again.close()


def test_command_store_writes_rows_behind_commands_already_sent(registry):
    """A plan step goes out before its rows exist: adopt() with the row's fields makes the
    writer insert them with the plan's id, source and author; a record replaced by a newer
    version is stored as superseded, not as a failure."""
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    seen = []
    store = SqlCommandStore(registry, on_change=seen.append, flush_s=60.0)
    try:
        fields = {"source": "plan", "plan_id": "p9", "created_by": "olga", "due_s": T0,
                  "created_s": T0}
        store.adopt("D", fields)
        store.adopt("E", dict(fields))
        store.forget(["E"])  # E's send was refused: nothing of it may stick
        first = CommandRecord("n-1", "S", "D", 1, {"p_kw": 5.0}, T0, T0 + 900, "queued",
                              transitions=(("queued", T0),))
        store.save(first)
        store.save(first.moved("sent", T0 + 0.1))
        store.save(CommandRecord("n-2", "S", "E", 1, {"p_kw": 1.0}, T0, T0 + 900, "queued"))
        assert store.flush() == 2
        with registry.session() as s:
            rows = {c["command_id"]: c for c in commands.list_commands(s, limit=10)}
        d, e = rows["n-1"], rows["n-2"]
        assert (d["plan_id"], d["source"], d["created_by"], d["status"]) == (
            "p9", "plan", "olga", "sent")
        assert (e["plan_id"], e["source"]) == (None, "mqtt")  # not E's forgotten fields
        store.save(store.get("n-1").moved("expired", T0 + 1, "superseded by version 2"))
        store.flush()
        with registry.session() as s:
            d = commands.get_command(s, d["id"])
        assert d["status"] == "superseded" and d["reason"] == "superseded by version 2"
        assert seen[-1]["status"] == "superseded"
    finally:
        store.close()


def test_a_restarted_store_ties_new_rows_to_new_commands_only(registry):
    """After a restart the publisher holds commands read back from the registry. When such
    an old command is saved (superseded by a plan step, or acknowledged late) while the
    step's rows wait to be written, it must not take the new command's row: the writer
    then inserted the old command again, failed on its (device, version) and retried the
    whole batch forever."""
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    fields = {"source": "plan", "plan_id": "p1", "created_by": "olga", "due_s": T0,
              "created_s": T0}
    before = SqlCommandStore(registry, flush_s=60.0)
    try:
        before.reserve(["D", "E"])
        for cid, dev in (("old-d", "D"), ("old-e", "E")):
            before.adopt(dev, dict(fields))
            before.save(CommandRecord(cid, "S", dev, before.next_version(dev), {"p_kw": 5.0},
                                      T0, T0 + 900, "received"))
        before.flush()
    finally:
        before.close()
    store = SqlCommandStore(registry, flush_s=60.0)  # the restarted service
    try:
        old_d = {r.command_id: r for r in store.open_commands()}["old-d"]
        step = dict(fields, plan_id="p2", due_s=T0 + 900, created_s=T0 + 900)
        store.reserve(["D", "E"])
        store.adopt("D", dict(step))
        store.adopt("E", dict(step))
        new = {}
        for dev in ("D", "E"):
            new[dev] = CommandRecord(f"new-{dev.lower()}", "S", dev, store.next_version(dev),
                                     {"p_kw": 7.0}, T0 + 900, T0 + 1800, "queued")
        # D's old command (from open_commands) is superseded; E's is acknowledged late
        # (read back through get), both before the new records are saved.
        store.save(old_d.moved("expired", T0 + 900, f"superseded by version "
                                                   f"{new['D'].version}"))
        store.save(store.get("old-e").moved("applied", T0 + 900))
        store.save(new["D"])
        store.save(new["E"])
        assert store.flush() == 4
        with registry.session() as s:
            rows = {c["command_id"]: c for c in commands.list_commands(s, limit=10)}
        assert set(rows) == {"old-d", "old-e", "new-d", "new-e"}
        assert (rows["old-d"]["status"], rows["old-d"]["plan_id"]) == ("superseded", "p1")
        assert (rows["old-e"]["status"], rows["old-e"]["plan_id"]) == ("applied", "p1")
        for dev in ("D", "E"):
            r = rows[f"new-{dev.lower()}"]
            assert (r["plan_id"], r["version"]) == ("p2", new[dev].version)
            assert r["version"] > rows[f"old-{dev.lower()}"]["version"]
    finally:
        store.close()


def test_command_store_keeps_changes_when_a_write_fails(registry):
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    store = SqlCommandStore(registry, flush_s=60.0)
    try:
        rec = CommandRecord("w-1", "S", "D", 1, {"p_kw": 2.0}, T0, T0 + 60, "queued")
        store.save(rec)
        real = store._write
        store._write = lambda *a: (_ for _ in ()).throw(RuntimeError("database gone"))
        with pytest.raises(RuntimeError, match="database gone"):
            store.flush()
        store._write = real
        assert store.flush() == 1  # the change was kept for the next flush
        with registry.session() as s:
            assert [c["command_id"] for c in commands.list_commands(s, limit=5)] == ["w-1"]
    finally:
        store.close()


def test_a_record_that_conflicts_is_dropped_and_does_not_hold_back_the_others(registry,
                                                                             caplog):
    from adapters.mqtt.types import CommandRecord
    from adapters.registry.command_store import SqlCommandStore

    store = SqlCommandStore(registry, flush_s=60.0)
    try:
        store.save(CommandRecord("c-1", "S", "D", 1, {"p_kw": 2.0}, T0, T0 + 60, "queued"))
        assert store.flush() == 1
        # Same device and version as c-1 under another id: a broken record.
        store.save(CommandRecord("c-2", "S", "D", 1, {"p_kw": 3.0}, T0, T0 + 60, "queued"))
        store.save(CommandRecord("c-3", "S", "E", 1, {"p_kw": 4.0}, T0, T0 + 60, "queued"))
        store.save(store.get("c-1").moved("sent", T0 + 1))
        with caplog.at_level("ERROR", logger="adapters.registry.command_store"):
            assert store.flush() == 2
        assert "command c-2 (device D, version 1, queued) conflicts" in caplog.text
        store.save(CommandRecord("c-4", "S", "E", 2, {"p_kw": 5.0}, T0, T0 + 60, "queued"))
        assert store.flush() == 1  # nothing left to retry
        with registry.session() as s:
            rows = {c["command_id"]: c for c in commands.list_commands(s, limit=10)}
        assert set(rows) == {"c-1", "c-3", "c-4"} and rows["c-1"]["status"] == "sent"
    finally:
        store.close()


def test_json_columns_are_strict_json_and_read_older_rows():
    import math

    import numpy as np

    from adapters.registry.db import json_dumps, json_loads

    assert json_dumps({"a": [1.5, float("nan")], 3: np.float32(2.0)}) == '{"a":[1.5,null],"3":2.0}'
    old = json_loads('{"x": NaN, "y": [1, 2]}')  # written by the standard library before
    assert math.isnan(old["x"]) and old["y"] == [1, 2]
