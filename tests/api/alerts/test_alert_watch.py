"""FleetWatch: the conditions it names from one observation of a small fleet."""

from __future__ import annotations

import numpy as np

from api.alerts.watch import FleetObservation, FleetWatch, WatchConfig
from tests.twin.test_fleet import small_records
from twin.fleet import Fleet

T = 1_780_300_000.0  # 2026-06-01 ~07:46 UTC: daylight in Europe


def _fleet() -> Fleet:
    return Fleet.from_records(*small_records())  # rows: A-pv, A-bat, A-ev, A-load, B-bat


def _obs(fleet: Fleet, **kw) -> FleetObservation:
    n = fleet.n_devices
    base = {"p_kw": np.zeros(n), "soc": np.array([np.nan, 0.5, np.nan, np.nan, 0.5]),
            "setpoint_kw": np.full(n, np.nan)}
    base.update(kw)
    return FleetObservation(T, **base)


def test_offline_stale_and_gateway_suppression():
    fleet = _fleet()
    w = FleetWatch(fleet)
    obs = _obs(fleet, reported_online=np.array([1, 0, 1, 1, 0]), site_online=np.array([1, 0]),
               stale=np.array([False, False, True, False, True]))
    keys = {c.key for c in w.observe(obs)}
    assert "device_offline:device:A-bat" in keys
    assert "stale:device:A-ev" in keys
    assert "device_offline:device:B-bat" not in keys   # its gateway is down: one site alert
    assert "stale:device:B-bat" not in keys


def test_rules_scope_and_site_limit():
    fleet = _fleet()
    w = FleetWatch(fleet)
    p = np.array([0.0, 0.0, 0.0, -520.0, 0.0])          # site A imports 520 kW > 500 + 1
    obs = _obs(fleet, p_kw=p, metrics={"temp_c": np.array([85.0, 90.0, 20.0, 20.0, 95.0])})
    rules = [{"id": 1, "name": "hot", "metric": "temp_c", "op": ">", "threshold": 80.0,
              "severity": "critical", "site_id": "A", "duration_s": 60, "enabled": True},
             {"id": 2, "name": "off", "metric": "temp_c", "op": ">", "threshold": 0.0,
              "severity": "info", "enabled": False},
             {"id": 3, "name": "bat", "metric": "temp_c", "op": ">", "threshold": 80.0,
              "severity": "warning", "device_type": "battery"},
             {"id": 4, "name": "none", "metric": "no_such_metric", "op": ">", "threshold": 0}]
    conds = {c.key: c for c in w.observe(obs, rules)}
    assert {"rule1:device:A-pv", "rule1:device:A-bat", "rule3:device:A-bat",
            "rule3:device:B-bat"} <= set(conds)
    assert not any(k.startswith(("rule2", "rule4")) for k in conds)
    assert conds["rule1:device:A-pv"].delay_s == 60 and conds["rule1:device:A-pv"].rule_id == 1
    assert conds["site_over_limit:site:A"].severity == "critical"


def test_setpoint_deviation_and_frozen_battery_meter():
    fleet = _fleet()
    w = FleetWatch(fleet, WatchConfig(sample_every_s=60.0))
    sp = np.full(fleet.n_devices, np.nan)
    keys: set[str] = set()
    for k in range(5):                                    # setpoint moves, meter does not
        sp[1] = -10.0 * (k + 1)
        obs = _obs(fleet, p_kw=np.array([0.0, 50.0, 0.0, 0.0, 0.0]), setpoint_kw=sp.copy())
        obs.t_s = T + 60.0 * k
        keys = {c.key for c in w.observe(obs)}
    assert "setpoint_deviation:device:A-bat" in keys
    assert "meter_frozen:device:A-bat" in keys
    # the meter says 50 kW out for 4 min (3.5 % of 100 kWh at 0.95), the SoC did not move
    assert "soc_drift:device:A-bat" in keys
