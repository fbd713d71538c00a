"""One definition of energy, money, CO2 and peak (twin/kpis.py), checked against the kernel.

A small random fleet is stepped with the numba kernel for a few hours under
time-varying prices and carbon intensity; its accumulators (``site_totals``)
must equal what ``device_flows`` + ``energy_value`` + ``energy_steps`` give on
the kernel's device powers, and ``compute_kpis``, ``fleet_kpis``, the live
``KpiLedger`` and ``api.analytics.energy.aggregate`` must agree with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from api.analytics import energy as an
from api.live.ledger import KpiLedger
from twin.fleet import BATTERY, EV_CHARGER, LOAD, PV, Fleet
from twin.generator import generate_fleet
from twin.kpis import (
    QUANTITIES,
    StepTracker,
    Tariff,
    compute_kpis,
    device_flows,
    energy_steps,
    energy_value,
    fleet_kpis,
    site_kpis,
)
from twin.model import Twin
from twin.profiles import load_fraction, utc_offset_s
from twin.solar import clear_sky, sun_position
from twin.state import FLOW, SITE_FLOWS, TOTAL, StepInputs, TwinParams, TwinState

T0 = 1_782_021_600.0  # 2026-06-21T06:00Z
DT_S = 900.0
N_STEPS = 24  # six hours
REL = 1e-9


@dataclass
class Run:
    fleet: Fleet
    twin: Twin
    tariff: Tariff
    t_s: np.ndarray  # snapshot times: each step's start, then the end of the run
    p_kw: np.ndarray  # (N_STEPS + 1, n_devices): each step's device powers, then NaN
    tracker: StepTracker


@pytest.fixture(scope="module")
def run() -> Run:
    rng = np.random.default_rng(16)
    fleet = generate_fleet(n_sites=6, seed=3)
    twin = Twin(fleet, soc=0.5, t_s=T0)
    steps = T0 + DT_S * np.arange(N_STEPS)
    tariff = Tariff((steps, rng.uniform(-20.0, 300.0, N_STEPS)),
                    (steps, rng.uniform(0.0, 120.0, N_STEPS)),
                    (steps, rng.uniform(50.0, 500.0, N_STEPS)))
    imp, exp, co2 = tariff.at(steps)
    mid = steps + DT_S / 2
    zen, az = sun_position(fleet.lat_deg, fleet.lon_deg, mid)
    ghi, dni, dhi = clear_sky(zen, mid)
    load = load_fraction(mid, utc_offset_s(fleet.timezone, T0))
    n = fleet.n_sites
    bat = np.flatnonzero(fleet.device_type == BATTERY)
    pv = np.flatnonzero(fleet.device_type == PV)
    chargers = np.flatnonzero(fleet.device_type == EV_CHARGER)
    twin.plug_in(chargers, rng.uniform(5.0, 40.0, len(chargers)),
                 T0 + rng.uniform(1.0, 5.0, len(chargers)) * 3600.0)
    tracker = StepTracker(fleet.site_feeder, fleet.n_feeders)
    powers = []
    for k, t in enumerate(steps):
        sp = np.full(fleet.n_devices, np.nan)
        rated = np.nan_to_num(fleet.device_float["discharge_kw"][bat])
        sp[bat] = rng.uniform(-1.0, 1.0, len(bat)) * rated  # charge and discharge
        sp[pv[rng.random(len(pv)) < 0.2]] = 1.0  # some PV curtailed
        x = StepInputs(ghi=ghi[k], dni=dni[k], dhi=dhi[k], zenith_deg=zen[k],
                       azimuth_deg=az[k], temp_air_c=np.full(n, 22.0),
                       wind_m_s=np.full(n, 2.0), load_frac=load[k],
                       price_eur_per_mwh=np.full(n, imp[k]),
                       feed_in_eur_per_mwh=np.full(n, exp[k]), co2_kg_per_mwh=np.full(n, co2[k]))
        twin.step(t, DT_S, x, sp, check=True)
        tracker.update(t, DT_S, twin.state.site_flows, fleet.feeder_import_limit_kw,
                       fleet.feeder_export_limit_kw)
        powers.append(twin.state.p_kw.copy())
    powers.append(np.full(fleet.n_devices, np.nan))  # the closing snapshot counts nothing
    return Run(fleet, twin, tariff, np.r_[steps, T0 + N_STEPS * DT_S], np.array(powers),
               tracker)


def _kernel(run: Run, name: str) -> np.ndarray:
    return run.twin.state.site_totals[:, TOTAL[name]]


def _flows(run: Run) -> dict[str, np.ndarray]:
    f = run.fleet
    return device_flows(run.p_kw, f.device_type, f.device_site, f.n_sites)


def test_the_run_exercises_every_flow(run):
    """Guard: the series has PV, charging and discharging, import, export and curtailment."""
    for name in ("pv_kwh", "battery_discharge_kwh", "battery_charge_kwh", "ev_kwh",
                 "import_kwh", "export_kwh", "pv_curtailed_kwh"):
        assert _kernel(run, name).sum() > 1.0, name


def test_device_flows_and_energy_value_equal_the_kernel(run):
    f = _flows(run)
    dt_h = DT_S / 3600.0
    e = {k: f[k] * dt_h for k in f}
    battery = f["battery_kw"]
    for name, mine in (
            ("pv_kwh", e["generation_kw"]),
            ("import_kwh", e["import_kw"]),
            ("export_kwh", e["export_kw"]),
            ("battery_discharge_kwh", np.maximum(battery, 0.0) * dt_h),
            ("battery_charge_kwh", np.maximum(-battery, 0.0) * dt_h)):
        np.testing.assert_allclose(mine.sum(axis=0), _kernel(run, name), rtol=REL, err_msg=name)
    np.testing.assert_allclose(e["consumption_kw"].sum(axis=0),
                               _kernel(run, "load_kwh") + _kernel(run, "ev_kwh"), rtol=REL)
    # grid = generation + battery - consumption (no other device types)
    np.testing.assert_allclose(f["grid_kw"], f["generation_kw"] + battery - f["consumption_kw"],
                               rtol=REL, atol=1e-9)
    np.testing.assert_allclose(f["import_kw"].max(axis=0), _kernel(run, "peak_import_kw"),
                               rtol=REL)
    value = energy_value(run.t_s, e["generation_kw"], e["import_kw"], e["export_kw"], run.tariff)
    for name in ("cost_eur", "revenue_eur", "co2_avoided_kg"):
        np.testing.assert_allclose(value[name].sum(axis=0), _kernel(run, name), rtol=REL,
                                   err_msg=name)


def test_energy_steps_equal_the_kernel(run):
    steps = energy_steps(run.fleet, run.t_s, run.p_kw, run.tariff, max_gap_s=DT_S)
    assert set(steps) == set(QUANTITIES)
    assert all(v.shape == (N_STEPS + 1, run.fleet.n_sites) for v in steps.values())
    for mine, theirs in (("generation_kwh", "pv_kwh"), ("import_kwh", "import_kwh"),
                         ("export_kwh", "export_kwh"),
                         ("self_consumption_kwh", "self_consumed_kwh"),
                         ("cost_eur", "cost_eur"), ("revenue_eur", "revenue_eur"),
                         ("co2_avoided_kg", "co2_avoided_kg")):
        np.testing.assert_allclose(steps[mine].sum(axis=0), _kernel(run, theirs), rtol=REL,
                                   err_msg=mine)
    np.testing.assert_allclose(steps["consumption_kwh"].sum(axis=0),
                               _kernel(run, "load_kwh") + _kernel(run, "ev_kwh"), rtol=REL)


def test_compute_kpis_and_fleet_kpis_agree(run):
    steps = energy_steps(run.fleet, run.t_s, run.p_kw, run.tariff, max_gap_s=DT_S)
    fleet_sum = {k: float(v.sum()) for k, v in steps.items()}
    kpi = compute_kpis(run.fleet, run.twin.state, run.tracker)["fleet"]
    for key, name in (("generated_mwh", "generation_kwh"), ("consumed_mwh", "consumption_kwh"),
                      ("imported_mwh", "import_kwh"), ("exported_mwh", "export_kwh")):
        assert kpi[key] == pytest.approx(fleet_sum[name] / 1000.0, abs=1e-6), key
    assert kpi["energy_cost_eur"] == pytest.approx(fleet_sum["cost_eur"], abs=0.006)
    assert kpi["export_revenue_eur"] == pytest.approx(fleet_sum["revenue_eur"], abs=0.006)
    assert kpi["co2_avoided_t"] == pytest.approx(fleet_sum["co2_avoided_kg"] / 1000.0, abs=1e-6)
    fleet_import = _flows(run)["import_kw"].sum(axis=1)
    assert kpi["peak_import_mw"] == pytest.approx(fleet_import.max() / 1000.0, abs=1e-6)
    assert kpi["hours"] == pytest.approx(N_STEPS * DT_S / 3600.0)
    sites = compute_kpis(run.fleet, run.twin.state, run.tracker)["sites"]
    for i, sid in enumerate(run.fleet.site_id):
        assert sites[sid]["generated_kwh"] == pytest.approx(
            steps["generation_kwh"][:, i].sum(), abs=1e-6)
    k = fleet_kpis(run.twin.params, run.twin.state, hours=6.0)
    assert k["generation_mwh"] == pytest.approx(fleet_sum["generation_kwh"] / 1000.0, rel=REL)
    assert k["consumption_mwh"] == pytest.approx(fleet_sum["consumption_kwh"] / 1000.0, rel=REL)
    assert k["revenue_eur"] == pytest.approx(fleet_sum["revenue_eur"], rel=REL)
    assert k["co2_avoided_t"] == pytest.approx(fleet_sum["co2_avoided_kg"] / 1000.0, rel=REL)
    # Energy balance: generation + battery discharge - charge - consumption = export - import.
    assert (k["generation_mwh"] + k["battery_discharge_mwh"] - k["battery_charge_mwh"]
            - k["consumption_mwh"]) == pytest.approx(k["export_mwh"] - k["import_mwh"],
                                                     rel=1e-9, abs=1e-9)


def test_the_live_ledger_agrees_with_energy_steps(run, tmp_path):
    steps = energy_steps(run.fleet, run.t_s, run.p_kw, run.tariff, max_gap_s=DT_S)
    f = run.fleet
    path = tmp_path / "kpis.json"
    ledger = KpiLedger(path, run.tariff, max_gap_s=DT_S)
    half = N_STEPS // 2
    for t, p in zip(run.t_s[:half], run.p_kw[:half], strict=True):
        ledger.add(float(t), device_flows(p, f.device_type, f.device_site, f.n_sites))
    ledger.save()
    ledger = KpiLedger(path, run.tariff, max_gap_s=DT_S)  # a restart in the middle
    for t, p in zip(run.t_s[half:], run.p_kw[half:], strict=True):
        ledger.add(float(t), device_flows(p, f.device_type, f.device_site, f.n_sites))
    for key, name, scale in (("generation_mwh", "generation_kwh", 1e-3),
                             ("co2_avoided_t", "co2_avoided_kg", 1e-3),
                             ("revenue_eur", "revenue_eur", 1.0)):
        want = float(steps[name].sum()) * scale
        assert ledger.total[key] == pytest.approx(want, rel=REL), key
        assert ledger.today[key] == pytest.approx(want, rel=REL), key  # all on one UTC day
    assert ledger.figures()["to_date"]["revenue_eur"] == pytest.approx(
        float(steps["revenue_eur"].sum()), abs=1e-6)


def test_analytics_aggregate_agrees(run):
    df = an.aggregate(run.fleet, run.t_s, run.p_kw, run.tariff, every="hour", max_gap_s=DT_S)
    assert len(df) == 7  # six hours, and the closing snapshot's empty hour
    for name, total in (("generation_kwh", "pv_kwh"), ("import_kwh", "import_kwh"),
                        ("export_kwh", "export_kwh"), ("cost_eur", "cost_eur"),
                        ("revenue_eur", "revenue_eur"), ("co2_avoided_kg", "co2_avoided_kg")):
        assert df[name].sum() == pytest.approx(_kernel(run, total).sum(), rel=REL), name


# -- the pieces by hand -------------------------------------------------------------------
def test_device_flows_by_hand():
    kind = np.array([PV, BATTERY, EV_CHARGER, LOAD, PV, LOAD])
    site = np.array([2, 0, 0, 0, 2, 2])  # not sorted; site 1 has no devices
    p = np.array([[30.0, 10.0, -5.0, -20.0, np.nan, -45.0],
                  [0.0, -15.0, 0.0, -10.0, 2.0, 0.0]])
    f = device_flows(p, kind, site, 3)
    np.testing.assert_allclose(f["generation_kw"], [[0, 0, 30], [0, 0, 2]])
    np.testing.assert_allclose(f["consumption_kw"], [[25, 0, 45], [10, 0, 0]])
    np.testing.assert_allclose(f["battery_kw"], [[10, 0, 0], [-15, 0, 0]])
    np.testing.assert_allclose(f["grid_kw"], [[-15, 0, -15], [-25, 0, 2]])
    np.testing.assert_allclose(f["import_kw"], [[15, 0, 15], [25, 0, 0]])
    np.testing.assert_allclose(f["export_kw"], [[0, 0, 0], [0, 0, 2]])
    one = device_flows(p[1], kind, site, 3)
    assert one["grid_kw"].tolist() == [-25.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="p_kw has shape"):
        device_flows(p[:, :5], kind, site, 3)
    with pytest.raises(ValueError, match=r"device_site must lie in 0\.\.1"):
        device_flows(p, kind, site, 2)


def test_tariff_holds_each_value_from_its_time():
    t = Tariff(250.0, (np.array([200.0, 100.0]), np.array([20.0, 10.0])), 300.0)
    imp, exp, co2 = t.at(np.array([50.0, 100.0, 150.0, 200.0, 1e9]))
    assert imp.tolist() == [250.0] * 5 and co2.tolist() == [300.0] * 5
    assert exp.tolist() == [10.0, 10.0, 10.0, 20.0, 20.0]  # sorted; first value before it
    for bad, match in (((np.array([1.0]), np.array([1.0, 2.0])), "equal length"),
                       (float("nan"), "finite number"), ("cheap", "a number or a pair"),
                       ((np.array([]), np.array([])), "not empty")):
        with pytest.raises(ValueError, match=match):
            Tariff(bad, 90.0, 300.0)
    with pytest.raises(ValueError, match="must not be negative"):
        Tariff(250.0, 90.0, -1.0)


def test_energy_value_and_steps_by_hand():
    tariff = Tariff(200.0, 50.0, (np.array([0.0, 3600.0]), np.array([400.0, 100.0])))
    v = energy_value(np.array([0.0, 3600.0]), np.array([[10.0], [10.0]]),
                     np.array([[4.0], [0.0]]), np.array([[0.0], [6.0]]), tariff)
    assert v["cost_eur"][:, 0].tolist() == pytest.approx([0.8, 0.0])
    assert v["revenue_eur"][:, 0].tolist() == pytest.approx([0.0, 0.3])
    assert v["co2_avoided_kg"][:, 0].tolist() == pytest.approx([4.0, 1.0])
    fleet = Fleet.from_records(
        [{"id": "S", "lat_deg": 45.0, "lon_deg": 7.0, "import_limit_kw": 100.0,
          "export_limit_kw": 100.0}],
        [{"id": "P", "site_id": "S", "type": "pv", "pv_kwp": 50.0, "inverter_kw": 50.0,
          "tilt_deg": 30.0, "azimuth_deg": 180.0, "temp_coeff_per_c": -0.004},
         {"id": "L", "site_id": "S", "type": "load", "load_peak_kw": 50.0}])
    p = np.array([[40.0, -10.0], [0.0, -20.0], [0.0, -20.0]])  # rows: P, L
    steps = energy_steps(fleet, np.array([0.0, 3600.0, 9000.0]), p, tariff, max_gap_s=1800.0)
    # 30 kW export for 0.5 h (held at most 1800 s), then 20 kW import for 0.5 h; last: nothing
    assert steps["export_kwh"][:, 0].tolist() == pytest.approx([15.0, 0.0, 0.0])
    assert steps["import_kwh"][:, 0].tolist() == pytest.approx([0.0, 10.0, 0.0])
    assert steps["self_consumption_kwh"][:, 0].tolist() == pytest.approx([5.0, 0.0, 0.0])
    assert steps["co2_avoided_kg"][:, 0].tolist() == pytest.approx([8.0, 0.0, 0.0])
    assert steps["cost_eur"][:, 0].tolist() == pytest.approx([0.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="must not decrease"):
        energy_steps(fleet, np.array([0.0, -1.0, 2.0]), p, tariff)


# -- KPIs from the accumulators (moved from tests/scenarios/test_scenario_kpis.py) ----------
def _one_site_fleet(import_limit_kw: float = 25.0, feeder_import_kw: float = 20.0) -> Fleet:
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
    t0 = 1_748_822_400.0  # 2025-06-02T00:00Z
    fleet = _one_site_fleet()
    twin = Twin(fleet, backend="numpy", soc=0.5, t_s=t0)
    tracker = StepTracker(fleet.site_feeder, fleet.n_feeders)
    x = StepInputs.constant(1, load_frac=0.5, price_eur_per_mwh=100.0, feed_in_eur_per_mwh=50.0)
    sp = np.full(fleet.n_devices, np.nan)
    sp[fleet.device_row["A-BAT"]] = 20.0
    for k in range(4):
        twin.step(t0 + 900 * k, 900.0, x, sp)
        tracker.update(t0 + 900 * k, 900.0, twin.state.site_flows,
                       fleet.feeder_import_limit_kw, fleet.feeder_export_limit_kw)
    kpi = compute_kpis(fleet, twin.state, tracker)
    site = kpi["sites"]["A"]
    assert site["generated_kwh"] == 0.0  # battery discharge is not generation
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
    assert fl["peak_import_time"] == "2025-06-02T00:00:00+00:00"
    assert fl["hours"] == pytest.approx(1.0)


def test_totals_to_kpis_by_hand() -> None:
    fleet = _one_site_fleet()
    params = TwinParams.from_fleet(fleet)
    state = TwinState.initial(params)
    tot = state.site_totals[0]
    for name, value in (("pv_kwh", 400.0), ("self_consumed_kwh", 300.0), ("export_kwh", 100.0),
                        ("import_kwh", 50.0), ("load_kwh", 320.0), ("ev_kwh", 80.0),
                        ("cost_eur", 12.5), ("revenue_eur", 4.0), ("co2_avoided_kg", 120.0),
                        ("pv_curtailed_kwh", 7.0), ("battery_discharge_kwh", 30.0)):
        tot[TOTAL[name]] = value
    state.throughput_kwh[fleet.device_row["A-BAT"]] = 150.0
    tracker = StepTracker(fleet.site_feeder, fleet.n_feeders)
    kpi = compute_kpis(fleet, state, tracker, {"solves": 3, "solve_s_total": 1.5,
                                               "solve_s_median": 0.4, "fallbacks": 1})
    site = kpi["sites"]["A"]
    assert site["generated_kwh"] == pytest.approx(400.0)  # PV only, not + 30 discharged
    assert site["self_consumption"] == pytest.approx(0.75)
    assert site["self_sufficiency"] == pytest.approx(1 - 50 / 400)
    assert site["net_cost_eur"] == pytest.approx(8.5)
    assert site["battery_equivalent_full_cycles"] == pytest.approx(0.75)
    assert site["pv_curtailed_kwh"] == pytest.approx(7.0)
    assert site["peak_import_time"] is None
    assert kpi["fleet"]["co2_avoided_t"] == pytest.approx(0.12)
    assert kpi["fleet"]["optimizer_solves"] == 3 and kpi["fleet"]["optimizer_fallbacks"] == 1
    s = site_kpis(state)
    assert s["generation_kwh"][0] == 400.0 and s["consumption_kwh"][0] == 400.0


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


def test_fleet_kpis_of_a_one_site_fleet_by_hand():
    fleet = Fleet.from_records(
        [{"id": "S", "lat_deg": 45.0, "lon_deg": 7.0, "import_limit_kw": 50.0,
          "export_limit_kw": 50.0}],
        [{"id": "L", "site_id": "S", "type": "load", "load_peak_kw": 100.0,
          "load_profile": "flat"},
         {"id": "B", "site_id": "S", "type": "battery", "battery_kwh": 100.0, "charge_kw": 50.0,
          "discharge_kw": 50.0, "charge_eff": 1.0, "discharge_eff": 1.0, "soc_min": 0.0,
          "soc_max": 1.0}],
    )
    twin = Twin(fleet, "numba", soc=1.0)
    inputs = StepInputs.constant(1, load_frac=0.8, price_eur_per_mwh=200.0)
    sp = np.array([20.0, np.nan])  # battery row first (sorted by type), load ignores it
    for k in range(4):  # one hour: load 80 kW, battery 20 kW, import 60 kW (10 over the limit)
        twin.step(900.0 * k, 900.0, inputs, sp)
    k = fleet_kpis(twin.params, twin.state, hours=1.0)
    assert k["generation_mwh"] == 0.0  # no PV; the battery's 20 kWh are reported on their own
    assert k["battery_discharge_mwh"] == pytest.approx(0.020)
    assert k["load_mwh"] == pytest.approx(0.080)
    assert k["import_mwh"] == pytest.approx(0.060)
    assert k["cost_eur"] == pytest.approx(60.0 * 200.0 / 1000.0)
    assert k["site_limit_violation_mwh"] == pytest.approx(0.010)
    assert k["battery_cycles"] == pytest.approx(20.0 / 200.0)
    assert k["max_site_peak_import_mw"] == pytest.approx(0.060)
    assert k["self_sufficiency"] == pytest.approx(1.0 - 60.0 / 80.0)
