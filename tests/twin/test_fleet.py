"""Fleet model: validation names the record and field; nothing is half-loaded; files round-trip."""

import json
import math

import numpy as np
import pytest

from twin.fleet import BATTERY, PV, Fleet, FleetError, read_fleet, save_fleet
from twin.generator import generate_fleet


def small_records():
    sites = [
        {"id": "A", "name": "Site A", "lat_deg": 48.1, "lon_deg": 11.6, "timezone": "Europe/Berlin",
         "import_limit_kw": 500.0, "export_limit_kw": 400.0, "feeder_id": "F1"},
        {"id": "B", "lat_deg": 37.4, "lon_deg": -5.9, "timezone": "Europe/Madrid",
         "import_limit_kw": 300.0, "export_limit_kw": 300.0},
    ]
    feeders = [{"id": "F1", "import_limit_kw": 450.0, "export_limit_kw": None}]
    devices = [
        {"id": "B-bat", "site_id": "B", "type": "battery", "battery_kwh": 200.0,
         "charge_kw": 100.0, "discharge_kw": 100.0, "charge_eff": 0.95, "discharge_eff": 0.9,
         "soc_min": 0.1, "soc_max": 0.9},
        {"id": "A-pv", "site_id": "A", "type": "pv", "pv_kwp": 300.0, "inverter_kw": 250.0,
         "tilt_deg": 30.0, "azimuth_deg": 180.0, "temp_coeff_per_c": -0.004},
        {"id": "A-load", "site_id": "A", "type": "load", "load_peak_kw": 120.0,
         "load_profile": "commercial"},
        {"id": "A-ev", "site_id": "A", "type": "ev_charger", "ev_max_kw": 22.0,
         "ev_connectors": 2},
        {"id": "A-bat", "site_id": "A", "type": "battery", "battery_kwh": 100.0,
         "charge_kw": 50.0, "discharge_kw": 50.0, "charge_eff": 0.95, "discharge_eff": 0.95,
         "soc_min": 0.0, "soc_max": 1.0},
    ]
    return sites, devices, feeders


def test_rows_sorted_by_site_then_type_with_stable_maps():
    fleet = Fleet.from_records(*small_records())
    assert list(fleet.device_id) == ["A-pv", "A-bat", "A-ev", "A-load", "B-bat"]
    assert fleet.device_row["B-bat"] == 4
    assert fleet.site_row == {"A": 0, "B": 1}
    assert list(fleet.site_start) == [0, 4] and list(fleet.site_stop) == [4, 5]
    assert fleet.device_type[0] == PV and fleet.device_type[4] == BATTERY
    assert math.isnan(fleet.pv_kwp[1]) and fleet.battery_kwh[1] == 100.0
    # Site B has no feeder: it gets its own unlimited one.
    assert fleet.feeder_id[fleet.site_feeder[1]] == "B"
    assert math.isinf(fleet.feeder_export_limit_kw[fleet.feeder_row["F1"]])


@pytest.mark.parametrize(
    ("mutate", "record", "field"),
    [
        (lambda s, d, f: d.append(dict(d[0])), "device 'B-bat'", "id"),
        (lambda s, d, f: d[1].update(site_id="Z"), "device 'A-pv'", "site_id"),
        (lambda s, d, f: d[1].update(pv_kwp=-5.0), "device 'A-pv'", "pv_kwp"),
        (lambda s, d, f: d[0].update(soc_min=0.95), "device 'B-bat'", "soc_min"),
        (lambda s, d, f: d[0].update(charge_eff=1.2), "device 'B-bat'", "charge_eff"),
        (lambda s, d, f: d[0].update(discharge_eff=0.0), "device 'B-bat'", "discharge_eff"),
        (lambda s, d, f: d[3].update(ev_connectors=1.5), "device 'A-ev'", "ev_connectors"),
        (lambda s, d, f: d[2].update(load_profile="disco"), "device 'A-load'", "load_profile"),
        (lambda s, d, f: d[2].update(type="windmill"), "device 'A-load'", "type"),
        (lambda s, d, f: s[0].update(import_limit_kw="lots"), "site 'A'", "import_limit_kw"),
        (lambda s, d, f: s[1].update(timezone="Mars/Olympus"), "site 'B'", "timezone"),
        (lambda s, d, f: s.append(dict(s[0])), "site 'A'", "id"),
        (lambda s, d, f: s[0].update(feeder_id="nope"), "site 'A'", "feeder_id"),
        (lambda s, d, f: f[0].update(import_limit_kw=-1.0), "feeder 'F1'", "import_limit_kw"),
    ],
)
def test_bad_input_is_refused_naming_record_and_field(mutate, record, field):
    sites, devices, feeders = small_records()
    mutate(sites, devices, feeders)
    with pytest.raises(FleetError) as err:
        Fleet.from_records(sites, devices, feeders)
    assert (record, field) in [(r, f) for r, f, _ in err.value.problems]
    assert record in str(err.value) and field in str(err.value)


def test_every_problem_is_reported_at_once():
    sites, devices, feeders = small_records()
    devices[0]["soc_min"] = 0.95
    devices[1]["inverter_kw"] = 0.0
    with pytest.raises(FleetError) as err:
        Fleet.from_records(sites, devices, feeders)
    assert {f for _, f, _ in err.value.problems} == {"soc_min", "inverter_kw"}


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_file_round_trip(tmp_path, suffix):
    fleet = generate_fleet(n_sites=12, seed=3)
    path = tmp_path / f"fleet{suffix}"
    save_fleet(fleet, path)
    again = read_fleet(path)
    assert list(again.device_id) == list(fleet.device_id)
    assert list(again.site_feeder) == list(fleet.site_feeder)
    for name, col in fleet.device_float.items():
        np.testing.assert_array_equal(again.device_float[name], col)
    np.testing.assert_array_equal(again.feeder_import_limit_kw, fleet.feeder_import_limit_kw)


def test_bad_file_is_refused_and_nothing_loaded(tmp_path):
    sites, devices, feeders = small_records()
    devices[1]["tilt_deg"] = 120.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sites": sites, "devices": devices, "feeders": feeders}))
    with pytest.raises(FleetError, match="device 'A-pv' field 'tilt_deg'"):
        read_fleet(path)
    path.write_text("{not json")
    with pytest.raises(FleetError, match="not valid JSON"):
        read_fleet(path)
    path.write_text(json.dumps({"sites": "x"}))
    with pytest.raises(FleetError, match="expected an object"):
        read_fleet(path)
