"""Gateway offline alerts end to end on a private Mosquitto: the gateway's Will opens the
site's alert through the alert manager, its retained ``online`` clears it, a second loss
reopens the same alert; the periodic pass keeps an offline gateway's alert open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from adapters.registry import alerts as alert_repo
from adapters.registry import open_registry
from api.alerts.manager import AlertManager
from api.alerts.watch import FleetObservation, FleetWatch, gateway_offline
from api.live.fleet import load_or_import_fleet
from api.live.runtime import Runtime, build_runtime
from api.settings import Settings
from tests.api.server import ADMIN, login, running_app, running_emulator, wait_for
from tests.twin.test_fleet import small_records
from twin.fleet import Fleet
from twin.generator import generate_fleet

pytestmark = pytest.mark.timeout(300)

N_SITES = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("gateway"), mqtt_url=mqtt_url,
                        fleet_sites=N_SITES, admin_user=ADMIN[0], admin_password=ADMIN[1],
                        optimizer_enabled=False, history_flush_s=1.0,
                        telemetry_interval_s=0.5, alert_eval_s=0.3)
    fleet = generate_fleet(n_sites=N_SITES)
    with running_emulator(fleet, mqtt_url, interval_s=0.5) as emu, \
            running_app(settings, use_default_planner=False) as (url, app), \
            httpx.Client(base_url=url, timeout=60) as client:
        yield {"rt": app.state.runtime, "emu": emu, "client": client,
               "admin": login(client, *ADMIN)}


def _gateway_alerts(stack: dict[str, Any], site: str) -> list[dict[str, Any]]:
    got = stack["client"].get("/api/v1/alert-states", headers=stack["admin"],
                              params={"kind": "gateway_offline"}).json()
    return [a for a in got if a["site_id"] == site]


def test_will_opens_and_retained_online_clears_the_gateway_alert(stack):
    rt, emu = stack["rt"], stack["emu"]
    fleet = rt.fleet.fleet
    site = str(fleet.site_id[1])
    row = fleet.site_row[site]
    wait_for(lambda: (rt.telemetry.site_online == 1).all(), 60)
    assert _gateway_alerts(stack, site) == []
    emu.drop_gateway(site)
    opened = wait_for(lambda: _gateway_alerts(stack, site), 30)
    assert len(opened) == 1
    a = opened[0]
    assert a["cleared_s"] is None and a["key"] == f"gateway_offline:site:{site}"
    assert a["severity"] == "warning" and site in a["message"]
    # the periodic pass (every 0.3 s) sees the offline flag and keeps the alert open
    passes = rt.alerts.evaluations
    wait_for(lambda: rt.alerts.evaluations >= passes + 3, 30)
    assert rt.telemetry.site_online[row] == 0
    still = _gateway_alerts(stack, site)
    assert len(still) == 1 and still[0]["cleared_s"] is None
    assert still[0]["last_seen_s"] > a["first_seen_s"]
    emu.restore_gateway(site)
    cleared = wait_for(lambda: [x for x in _gateway_alerts(stack, site) if x["cleared_s"]], 30)
    assert cleared[0]["id"] == a["id"]
    assert rt.telemetry.site_online[row] == 1
    # the other site's gateway never raised anything
    assert _gateway_alerts(stack, str(fleet.site_id[0])) == []
    # lost again soon after: the same alert reopens (one alert, two occurrences)
    emu.drop_gateway(site)
    try:
        again = wait_for(lambda: [x for x in _gateway_alerts(stack, site)
                                  if x["cleared_s"] is None], 30)
    finally:
        emu.restore_gateway(site)
    assert again[0]["id"] == a["id"] and again[0]["occurrences"] == 2
    wait_for(lambda: all(x["cleared_s"] for x in _gateway_alerts(stack, site)), 30)
    assert len(_gateway_alerts(stack, site)) == 1
    assert not any(k.startswith("gateway_offline") for k in rt.alerts.manager.open_keys())


def test_watch_names_offline_gateways_only(tmp_path):
    fleet = Fleet.from_records(*small_records())
    w = FleetWatch(fleet)
    n = fleet.n_devices
    obs = FleetObservation(1_780_300_000.0, np.zeros(n), np.full(n, np.nan), np.full(n, np.nan),
                      site_online=np.array([-1, 0]))
    keys = [c.key for c in w.observe(obs) if c.kind == "gateway_offline"]
    assert keys == ["gateway_offline:site:B"]          # unknown (-1) is not judged


def test_kind_specific_clear_delay(tmp_path):
    reg = open_registry(f"sqlite:///{tmp_path / 'r.db'}")
    m = AlertManager(reg, clear_after_by_kind={"gateway_offline": 0.0})
    gw, t = gateway_offline("B"), 1000.0
    assert len(m.evaluate(t, [gw])["opened"]) == 1
    assert len(m.evaluate(t + 1.0, [])["cleared"]) == 1     # at once, not after 60 s
    # restarted manager: the kind comes from the registry, so the delay still holds
    assert len(m.evaluate(t + 2.0, [gw])["reopened"]) == 1
    m2 = AlertManager(reg, clear_after_by_kind={"gateway_offline": 0.0})
    assert m2.load_open() == 1
    assert len(m2.evaluate(t + 3.0, [])["cleared"]) == 1


def test_a_restart_continues_and_then_clears_the_gateway_alert(tmp_path):
    settings = Settings(data_dir=tmp_path, mode="offline", fleet_sites=2)
    reg = open_registry(settings.registry_url())
    fleet = load_or_import_fleet(reg, settings)
    now = [1_780_300_000.0]

    def service() -> Runtime:
        # the offline role's parts, with the alert loop started as Runtime.start does
        rt = build_runtime(settings, reg, use_default_planner=False, clock=lambda: now[0])
        assert rt.alerts is not None
        rt.alerts.start()
        return rt

    first = service()
    first.telemetry.set_site_online([1], [0], now[0])
    first.alerts.on_gateway(np.array([1]), np.array([0]))
    assert first.alerts.manager.open_keys() == [f"gateway_offline:site:{fleet.site_id[1]}"]
    # restarted (build_runtime starts no thread: nothing to stop); the retained "offline" arrives again before the first pass: no second alert
    now[0] += 60.0
    second = service()
    second.telemetry.set_site_online([1], [0], now[0])
    second.alerts.on_gateway(np.array([1]), np.array([0]))
    second.alerts.evaluate()
    with reg.session() as s:
        open_now = alert_repo.open_alerts(s)
    assert len(open_now) == 1 and open_now[0]["kind"] == "gateway_offline"
    # the gateway is back: the next periodic pass clears the same alert
    now[0] += 5.0
    second.telemetry.set_site_online([1], [1], now[0])
    out = second.alerts.evaluate()
    assert [a["id"] for a in out["cleared"]] == [open_now[0]["id"]]
    reg.close()
