"""Command stores: versions rise per device and survive a restart (SQLite)."""

from __future__ import annotations

import pytest

from adapters.mqtt.store import MemoryCommandStore, SqliteCommandStore
from adapters.mqtt.types import APPLIED, QUEUED, CommandRecord


def _rec(cid: str, device: str, version: int, t: float) -> CommandRecord:
    return CommandRecord(cid, "S1", device, version, {"p_kw": 5.0}, t, t + 60,
                         transitions=((QUEUED, t),))


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryCommandStore()
    else:
        s = SqliteCommandStore(tmp_path / "cmd.db")
        yield s
        s.close()


def test_store_protocol(store):
    assert [store.next_version("A") for _ in range(3)] == [1, 2, 3]
    assert store.next_version("B") == 1
    store.save(_rec("c1", "A", 1, 10.0))
    store.save(_rec("c2", "A", 2, 20.0))
    store.save(_rec("c3", "B", 1, 15.0))
    done = store.get("c1").moved(APPLIED, 12.0)
    store.save(done)
    assert store.get("c1").state == APPLIED
    assert store.get("c1").transitions == ((QUEUED, 10.0), (APPLIED, 12.0))
    assert store.get("nope") is None
    assert {r.command_id for r in store.open_commands()} == {"c2", "c3"}
    assert [r.command_id for r in store.history("A")] == ["c2", "c1"]
    assert [r.command_id for r in store.history(limit=2)] == ["c2", "c3"]


def test_sqlite_versions_survive_reopen(tmp_path):
    path = tmp_path / "cmd.db"
    s = SqliteCommandStore(path)
    assert s.next_version("A") == 1 and s.next_version("A") == 2
    s.save(_rec("c1", "A", 2, 10.0))
    s.close()
    s2 = SqliteCommandStore(path)
    assert s2.next_version("A") == 3
    assert s2.get("c1").setpoint == {"p_kw": 5.0}
    s2.close()
