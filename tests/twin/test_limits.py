"""One set of device rules: API validation, the emulator, the optimizer's check and the
twin's kernel accept (and refuse) the same setpoints."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.emulator import Emulator
from optimizer.report import setpoint_violations
from twin.fleet import BATTERY, DEVICE_TYPES, EV_CHARGER, LOAD, PV, TYPE_CODE, Fleet
from twin.limits import (
    DEVICE_RULES,
    SETPOINT_KEY,
    SETPOINT_TYPES,
    rated_power_kw,
    record_setpoint_bounds_kw,
    setpoint_bounds_kw,
    takes_setpoint,
)
from twin.model import Twin
from twin.state import StepInputs

NOW_S = 1_000.0
kw = st.integers(0, 1000).map(lambda n: n / 4)  # 0 .. 250 kW, exact in float32
positive_kw = st.integers(1, 1000).map(lambda n: n / 4)


def one_site_fleet(charge_kw: float, discharge_kw: float, inverter_kw: float,
                   ev_max_kw: float, connectors: int, load_peak_kw: float) -> Fleet:
    site = {"id": "S", "lat_deg": 0.0, "lon_deg": 0.0, "import_limit_kw": 1e6,
            "export_limit_kw": 1e6}
    devices = [
        {"id": "S-PV", "site_id": "S", "type": "pv", "pv_kwp": 4 * inverter_kw,
         "inverter_kw": inverter_kw, "tilt_deg": 0.0, "azimuth_deg": 180.0,
         "temp_coeff_per_c": -0.004},
        {"id": "S-BAT", "site_id": "S", "type": "battery",
         "battery_kwh": 2 * max(charge_kw, discharge_kw, 1.0), "charge_kw": charge_kw,
         "discharge_kw": discharge_kw, "charge_eff": 0.95, "discharge_eff": 0.95,
         "soc_min": 0.1, "soc_max": 0.9},
        {"id": "S-EV", "site_id": "S", "type": "ev_charger", "ev_max_kw": ev_max_kw,
         "ev_connectors": connectors},
        {"id": "S-LOAD", "site_id": "S", "type": "load", "load_peak_kw": load_peak_kw},
    ]
    return Fleet.from_records([site], devices)


fleets = st.builds(one_site_fleet, kw, kw, positive_kw, positive_kw, st.integers(1, 4), kw)


def api_accepts(fleet: Fleet, row: int, value_kw: float) -> bool:
    """What API validation does: the registry record's bounds (api.live.approvals)."""
    rec = {r["id"]: r for r in fleet.device_records()}[str(fleet.device_id[row])]
    lo, hi = record_setpoint_bounds_kw(rec)
    return bool(lo <= value_kw <= hi)


def emulator_accepts(emu: Emulator, row: int, value_kw: float, version: int) -> bool:
    fleet = emu.fleet
    key = SETPOINT_KEY.get(int(fleet.device_type[row]), "p_kw")
    cmd = orjson.dumps({"command_id": f"c{version}", "version": version, "issued_at": NOW_S,
                        "valid_until": NOW_S + 60, "setpoint": {key: float(value_kw)}})
    acks = emu.handle_setpoint(int(fleet.device_site[row]), str(fleet.device_id[row]), cmd,
                               NOW_S)
    final = acks[-1]
    assert final["status"] in ("applied", "rejected")
    if final["status"] == "rejected":
        assert ("outside the device's limits" in final["reason"]
                or final["reason"] == "device takes no setpoint"), final
    return final["status"] == "applied"


def optimizer_accepts(fleet: Fleet, row: int, value_kw: float) -> bool:
    sp = np.full((1, fleet.n_devices), np.nan)
    sp[0, row] = value_kw
    problems = setpoint_violations(fleet, sp)
    assert all(str(fleet.device_id[row]) in p or p == "loads got setpoints" for p in problems)
    return not problems


def kernel_delivers(fleet: Fleet, row: int, value_kw: float) -> float:
    """What the twin's kernel runs a device at for one 1 s step with ``value_kw`` as its
    setpoint [kW, in the setpoint's sign]: full sun (PV could give 4x its inverter), the
    battery half full, every EV connector busy with a car needing far more than a step."""
    twin = Twin(fleet, soc=0.5, t_s=NOW_S)
    ev = fleet.rows_of_type("ev_charger")
    chargers = np.repeat(ev, fleet.ev_connectors[ev])
    assert twin.plug_in(chargers, np.full(len(chargers), 1e4),
                        np.full(len(chargers), NOW_S + 86_400)).all()
    inputs = StepInputs.constant(fleet.n_sites, ghi=1000.0, dni=900.0, dhi=100.0,
                                 zenith_deg=0.0, temp_air_c=20.0)
    setpoint = np.full(fleet.n_devices, np.nan)
    setpoint[row] = value_kw
    p_kw = twin.step(NOW_S, 1.0, inputs, setpoint).p_kw[row]
    return float(-p_kw if fleet.device_type[row] == EV_CHARGER else p_kw)


def test_one_rule_per_device_type():
    assert set(DEVICE_RULES) == set(DEVICE_TYPES)
    assert {name: SETPOINT_KEY.get(name) for name in DEVICE_TYPES} == {
        "pv": "p_limit_kw", "battery": "p_kw", "ev_charger": "p_limit_kw", "load": None}
    for name, code in TYPE_CODE.items():  # codes and names look up the same key
        assert SETPOINT_KEY.get(code) == SETPOINT_KEY.get(name)
        assert SETPOINT_KEY.get(np.int8(code)) == SETPOINT_KEY.get(name)  # fleet.device_type
    assert SETPOINT_TYPES == (PV, BATTERY, EV_CHARGER)
    np.testing.assert_array_equal(takes_setpoint(np.array([PV, BATTERY, EV_CHARGER, LOAD])),
                                  [True, True, True, False])


def test_bounds_and_rating_by_hand():
    fleet = one_site_fleet(charge_kw=40.0, discharge_kw=50.0, inverter_kw=80.0, ev_max_kw=22.0,
                           connectors=3, load_peak_kw=7.5)
    lo, hi = setpoint_bounds_kw(fleet)
    rows = [fleet.device_row[d] for d in ("S-PV", "S-BAT", "S-EV", "S-LOAD")]
    np.testing.assert_array_equal(lo[rows[:3]], [0.0, -40.0, 0.0])
    np.testing.assert_array_equal(hi[rows[:3]], [80.0, 50.0, 22.0])  # EV: not 22 * 3
    assert np.isnan(lo[rows[3]]) and np.isnan(hi[rows[3]])
    np.testing.assert_array_equal(rated_power_kw(fleet)[rows], [80.0, 50.0, 22.0, 7.5])
    for rec in fleet.device_records():
        r = fleet.device_row[rec["id"]]
        got = record_setpoint_bounds_kw(rec)
        np.testing.assert_array_equal(got, (lo[r], hi[r]))


def test_a_record_with_bad_fields_is_refused_by_name():
    with pytest.raises(ValueError, match=r"device 'X': type 'heat_pump' is not one of"):
        record_setpoint_bounds_kw({"id": "X", "type": "heat_pump"})
    with pytest.raises(ValueError, match=r"device 'B' \(battery\): field 'charge_kw' must be"):
        record_setpoint_bounds_kw({"id": "B", "type": "battery", "discharge_kw": 5.0})
    with pytest.raises(ValueError, match=r"field 'ev_max_kw' must be a number \[kW\], got '7'"):
        record_setpoint_bounds_kw({"id": "E", "type": "ev_charger", "ev_max_kw": "7"})
    assert all(math.isnan(v) for v in record_setpoint_bounds_kw({"id": "L", "type": "load"}))


def test_an_ev_charger_takes_its_own_rating_not_times_its_connectors():
    """The disagreement this module ended: the API accepted ev_max_kw * ev_connectors, the
    emulator refused it and the kernel delivered ev_max_kw."""
    fleet = one_site_fleet(10.0, 10.0, 10.0, ev_max_kw=11.0, connectors=2, load_peak_kw=1.0)
    emu = Emulator(fleet, "mqtt://127.0.0.1:1")  # never connected: the setpoint rules only
    row = fleet.device_row["S-EV"]
    for value, accepted in ((11.0, True), (22.0, False)):
        assert api_accepts(fleet, row, value) is accepted
        assert emulator_accepts(emu, row, value, version=int(value)) is accepted
        assert optimizer_accepts(fleet, row, value) is accepted
    assert kernel_delivers(fleet, row, 22.0) == pytest.approx(11.0, rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets, beyond_kw=st.floats(0.01, 100.0), inside=st.floats(0.0, 1.0))
def test_every_reader_accepts_the_same_setpoints(fleet, beyond_kw, inside):
    lo, hi = setpoint_bounds_kw(fleet)
    emu = Emulator(fleet, "mqtt://127.0.0.1:1")
    version = 0
    for row in range(fleet.n_devices):
        if not takes_setpoint(fleet.device_type[row:row + 1])[0]:  # a load: none at all
            for value in (0.0, 1.0):
                version += 1
                assert not api_accepts(fleet, row, value)
                assert not emulator_accepts(emu, row, value, version)
                assert not optimizer_accepts(fleet, row, value)
            continue
        cases = [(lo[row], True), (hi[row], True), (lo[row] + inside * (hi[row] - lo[row]), True),
                 (lo[row] - beyond_kw, False), (hi[row] + beyond_kw, False)]
        for value, accepted in cases:
            version += 1
            label = (str(fleet.device_id[row]), value)
            assert api_accepts(fleet, row, value) is accepted, label
            assert emulator_accepts(emu, row, value, version) is accepted, label
            assert optimizer_accepts(fleet, row, value) is accepted, label
            # The kernel runs an accepted setpoint as given and clamps one beyond the bounds.
            want = min(max(value, lo[row]), hi[row])
            assert kernel_delivers(fleet, row, value) == pytest.approx(want, rel=1e-12,
                                                                       abs=1e-9), label
