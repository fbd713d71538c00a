"""KPI arithmetic against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.kpis import StepTracker, compute_kpis
from twin.fleet import Fleet
from twin.model import Twin
from twin.state import FLOW, SITE_FLOWS, TOTAL, StepInputs, TwinParams, TwinState

T0 = 1_748_822_400.0  # 2025-06-02T00:00Z


def _fleet(import_limit_kw: float = 25.0, feeder_import_kw: float = 20.0) -> Fleet:
    sites = [{"id": "A", "lat_deg": 48.0, "lon_deg": 11.0, "import_limit_kw": import_limit_kw,
              "export_limit_kw": 100.0, "feeder_id": "F"}]
    devices = [
        {"id": "A-BAT", "site_id": "A", "type": "battery", "battery_kwh": 100.0,
         "charge_kw": 50.0, "discharge_kw": 50.0, "charge_eff": 1.0, "discharge_eff": 1.0,
         "soc_min": 0.0, "soc_max": 1.0},
        {"id": "A-LOAD", "site_id": "A", "type": "load", "load_peak_kw": 100.0,
         "load_profile": "flat"},
        {"id": "A-PV", "site_id": "A", "type": "pv", "pv_kwp": 10.0, "inverter_kw": 10.0,
         "tilt_deg": 20.0, "azimuth_deg": 180.0, "temp_coeff_per_c": -0.004},
    ]
    feeders = [{"id": "F", "import_limit_kw": feeder_import_kw, "export_limit_kw": 100.0}]
    return Fleet.from_records(sites, devices, feeders)


def test_a_stepped_night_hour_matches_the_hand_calculation() -> None:
    # 4 steps of 15 min, no sun, 50 kW load, battery discharging 20 kW, price 100 EUR/MWh.
    fleet = _fleet()
    twin = Twin(fleet, backend="numpy", soc=0.5, t_s=T0)
    tracker = StepTracker(fleet.site_feeder, fleet.n_feeders)
    x = StepInputs.constant(1, load_frac=0.5, price_eur_per_mwh=100.0, feed_in_eur_per_mwh=50.0)
    sp = np.full(fleet.n_devices, np.nan)
    sp[fleet.device_row["A-BAT"]] = 20.0
    for k in range(4):
        twin.step(T0 + 900 * k, 900.0, x, sp)
        tracker.update(T0 + 900 * k, 900.0, twin.state.site_flows,
                       fleet.feeder_import_limit_kw, fleet.feeder_export_limit_kw)
    kpi = compute_kpis(fleet, twin.state, tracker)
    site = kpi["sites"]["A"]
    assert site["consumed_kwh"] == pytest.approx(50.0)
    assert site["imported_kwh"] == pytest.approx(30.0)
    assert site["self_sufficiency"] == pytest.approx(1 - 30 / 50)
    assert site["energy_cost_eur"] == pytest.approx(3.0)
    assert site["net_cost_eur"] == pytest.approx(3.0)
    assert site["battery_equivalent_full_cycles"] == pytest.approx(20 / 200)
    assert site["peak_import_kw"] == pytest.approx(30.0)
    assert site["peak_import_time"] == "2025-06-02T00:00:00+00:00"
    assert site["hours_over_site_limit"] == pytest.approx(1.0)  # 30 kW > 25 kW all hour
    assert site["self_consumption"] is None  # no PV generated: undefined
    fl = kpi["fleet"]
    assert fl["feeder_hours_over_limit"] == pytest.approx(1.0)  # 30 kW > 20 kW
    assert fl["imported_mwh"] == pytest.approx(0.030)
    assert fl["peak_import_mw"] == pytest.approx(0.030)
    assert fl["hours"] == pytest.approx(1.0)


def test_totals_to_kpis_by_hand() -> None:
    fleet = _fleet()
    params = TwinParams.from_fleet(fleet)
    state = TwinState.initial(params)
    tot = state.site_totals[0]
    tot[TOTAL["pv_kwh"]] = 400.0
    tot[TOTAL["self_consumed_kwh"]] = 300.0
    tot[TOTAL["export_kwh"]] = 100.0
    tot[TOTAL["import_kwh"]] = 50.0
    tot[TOTAL["load_kwh"]] = 320.0
    tot[TOTAL["ev_kwh"]] = 80.0
    tot[TOTAL["cost_eur"]] = 12.5
    tot[TOTAL["revenue_eur"]] = 4.0
    tot[TOTAL["co2_avoided_kg"]] = 120.0
    tot[TOTAL["pv_curtailed_kwh"]] = 7.0
    state.throughput_kwh[fleet.device_row["A-BAT"]] = 150.0
    state.ev_unmet_kwh[:] = 0.0
    tracker = StepTracker(fleet.site_feeder, fleet.n_feeders)
    kpi = compute_kpis(fleet, state, tracker, {"solves": 3, "solve_s_total": 1.5,
                                               "solve_s_median": 0.4, "fallbacks": 1})
    site = kpi["sites"]["A"]
    assert site["self_consumption"] == pytest.approx(0.75)
    assert site["self_sufficiency"] == pytest.approx(1 - 50 / 400)
    assert site["net_cost_eur"] == pytest.approx(8.5)
    assert site["battery_equivalent_full_cycles"] == pytest.approx(0.75)
    assert site["pv_curtailed_kwh"] == pytest.approx(7.0)
    assert kpi["fleet"]["co2_avoided_t"] == pytest.approx(0.12)
    assert kpi["fleet"]["optimizer_solves"] == 3 and kpi["fleet"]["optimizer_fallbacks"] == 1


def test_tracker_records_the_time_of_the_peak_and_feeder_excess() -> None:
    tracker = StepTracker(np.array([0, 0, 1]), 2)
    flows = np.zeros((3, len(SITE_FLOWS)))
    for k, imp in enumerate([10.0, 40.0, 20.0]):
        flows[:, FLOW["import_kw"]] = [imp, 1.0, 0.0]
        flows[:, FLOW["net_kw"]] = [-imp, -1.0, 0.0]
        tracker.update(100.0 * k, 1800.0, flows, np.array([30.0, 5.0]), np.array([9e9, 9e9]))
    assert tracker.peak_import_kw[0] == 40.0 and tracker.peak_import_time_s[0] == 100.0
    assert tracker.fleet_peak_import_kw == 41.0 and tracker.fleet_peak_time_s == 100.0
    np.testing.assert_allclose(tracker.feeder_hours_over, [0.5, 0.0])  # 41 kW > 30 once
