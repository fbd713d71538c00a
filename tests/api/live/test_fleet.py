# ruff: noqa: F811  (pytest fixtures imported from registry_fixtures are used as arguments)
"""The in-memory device view answers GET /devices exactly as the registry query does."""

from __future__ import annotations

import time

import pytest

from adapters.registry import RegistryError
from adapters.registry import fleet as fleet_repo
from api.live.fleet import DeviceView
from tests.adapters.registry_fixtures import registry, registry_url  # noqa: F401
from twin.generator import generate_fleet

QUERIES = [
    {},
    {"site_id": "S0002"},
    {"site_id": "S0002", "type": "battery"},
    {"type": "pv", "sort": "-site_id", "offset": 3, "limit": 7},
    {"q": "bat", "sort": "type"},
    {"q": "s0003"},
    {"status": "maintenance"},
    {"tag": "north", "sort": "-id"},
    {"sort": "-status", "limit": 1000},
    {"site_id": "no-such-site"},
]


@pytest.fixture
def filled(registry):
    with registry.session() as s:
        fleet_repo.import_fleet(s, generate_fleet(5, seed=7))
        first = fleet_repo.list_devices(s, limit=3)[0]
        fleet_repo.update_device(s, first[0]["id"], {"status": "maintenance"})
        fleet_repo.update_device(s, first[1]["id"], {"tags": ["north"]})
        fleet_repo.update_device(s, first[2]["id"], {"tags": ["north", "b"]})
    return registry


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: ",".join(f"{k}={v}" for k, v in
                                                                  q.items()) or "all")
def test_view_matches_the_registry_query(filled, query):
    view = DeviceView(filled)
    with filled.session() as s:
        expected = fleet_repo.list_devices(s, **query)
    assert view.list_devices(**query) == expected


def test_view_reloads_after_invalidate_and_when_old(filled):
    t = [0.0]
    view = DeviceView(filled, max_age_s=30.0, clock=lambda: t[0])
    dev = view.list_devices(limit=1)[0][0]["id"]
    assert view.fresh
    with filled.session() as s:
        fleet_repo.update_device(s, dev, {"status": "inactive"})
    assert view.list_devices(status="inactive")[1] == 0  # still the loaded records
    view.invalidate()
    assert not view.fresh
    assert [d["id"] for d in view.list_devices(status="inactive")[0]] == [dev]
    with filled.session() as s:
        fleet_repo.update_device(s, dev, {"status": "active"})
    t[0] += 31.0  # older than max_age_s: served as is while a thread reloads them
    assert view.list_devices(status="inactive")[1] == 1
    for _ in range(200):
        if view.list_devices(status="inactive")[1] == 0:
            break
        time.sleep(0.02)
    assert view.list_devices(status="inactive")[1] == 0


def test_view_refuses_bad_sort_and_type(filled):
    view = DeviceView(filled)
    with pytest.raises(RegistryError, match="sort 'power'"):
        view.list_devices(sort="power")
    with pytest.raises(RegistryError, match="type 'wind'"):
        view.list_devices(type="wind")


def test_loaded_view_answers_without_the_database_and_none_before(filled):
    view = DeviceView(filled)
    assert view.list_loaded_devices(site_id="S0002") is None  # not loaded: never queries
    expected = view.list_devices(site_id="S0002", type="battery")
    assert view.list_loaded_devices(site_id="S0002", type="battery") == expected
    view.invalidate()
    assert view.list_loaded_devices() is None
