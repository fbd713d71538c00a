"""Cases small enough to solve by hand."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import EvSessions, OptimizerConfig, optimize
from tests.optimizer.small import T0, battery, ev, fleet, forecast, load, pv, site

NO_WEAR = {"degradation_eur_per_kwh": 0.0, "curtail_cost_eur_per_kwh": 0.0}


def test_battery_arbitrage_two_price_levels_known_profit():
    # 10 kWh, 5 kW, lossless, empty at start; 1 h steps: 4 cheap (50), 4 dear (150).
    f = fleet([site("A")], [battery("B1", "A")])
    price = np.array([50.0] * 4 + [150.0] * 4)
    cfg = OptimizerConfig(n_steps=8, dt_s=3600.0, degradation_eur_per_kwh=0.001,
                          curtail_cost_eur_per_kwh=0.0)
    plan = optimize(f, 0.0, forecast(8, 1, price=price, feed_in=price), cfg, T0, strict=True)
    assert plan.status == "optimal"
    # Buy 10 kWh at 50 EUR/MWh (0.50 EUR), sell them at 150 EUR/MWh (1.50 EUR);
    # 20 kWh of throughput wear 0.02 EUR.
    assert plan.objective == pytest.approx(-0.98, abs=1e-9)
    net_import_kwh = plan.flows["import_kw"][:, 0] - plan.flows["export_kw"][:, 0]
    assert net_import_kwh[:4].sum() == pytest.approx(10.0)
    assert net_import_kwh[4:].sum() == pytest.approx(-10.0)
    sp = plan.setpoints[:, f.device_row["B1"]]
    assert sp[:4].sum() == pytest.approx(-10.0) and (sp[:4] <= 1e-9).all()
    assert sp[4:].sum() == pytest.approx(10.0) and (sp[4:] >= -1e-9).all()


def test_battery_arbitrage_with_losses():
    # 90 % each way: 11.11 kWh bought fill 10 kWh, which give 9 kWh back.
    f = fleet([site("A")], [battery("B1", "A", eff=0.9)])
    price = np.array([50.0] * 4 + [150.0] * 4)
    cfg = OptimizerConfig(n_steps=8, dt_s=3600.0, **NO_WEAR)
    plan = optimize(f, 0.0, forecast(8, 1, price=price, feed_in=price), cfg, T0, strict=True)
    expected = 10.0 * 0.9 * 0.150 - 10.0 / 0.9 * 0.050
    assert -plan.objective == pytest.approx(expected, rel=1e-9)


def test_pv_curtailed_exactly_when_feed_in_is_negative():
    f = fleet([site("A")], [pv("P1", "A"), pv("P2", "A", kwp=50.0), load("L1", "A", 0.0)])
    feed_in = np.array([20.0, -10.0, 5.0, -30.0, 0.5, -0.1])
    fc = forecast(6, 1, pv_kw=120.0, price=100.0, feed_in=feed_in)
    plan = optimize(f, 0.5, fc, OptimizerConfig(n_steps=6), T0, strict=True)
    rows = [f.device_row["P1"], f.device_row["P2"]]
    curtailed = ~np.isnan(plan.setpoints[:, rows]).all(axis=1)
    assert curtailed.tolist() == (feed_in < 0).tolist()
    np.testing.assert_allclose(plan.setpoints[feed_in < 0][:, rows], 0.0, atol=1e-9)
    np.testing.assert_allclose(plan.flows["export_kw"][:, 0],
                               np.where(feed_in < 0, 0.0, 120.0), atol=1e-6)


def test_binding_site_export_limit_curtails_and_import_limit_reports_slack():
    f = fleet([site("A", import_kw=60.0, export_kw=60.0), site("B", import_kw=60.0)],
              [pv("P1", "A"), load("L1", "B")])
    fc = forecast(4, 2, pv_kw=np.array([[100.0, 0.0]]), load_kw=np.array([[0.0, 100.0]]),
                  price=100.0, feed_in=50.0)
    plan = optimize(f, 0.5, fc, OptimizerConfig(n_steps=4), T0, strict=True)
    np.testing.assert_allclose(plan.flows["export_kw"][:, 0], 60.0, atol=1e-6)
    np.testing.assert_allclose(plan.setpoints[:, f.device_row["P1"]], 60.0, atol=1e-6)
    np.testing.assert_allclose(plan.flows["import_kw"][:, 1], 100.0, atol=1e-6)
    over = [s for s in plan.slacks if s["constraint"] == "site_import_limit"]
    assert [(s["where"], s["step"]) for s in over] == [("B", t) for t in range(4)]
    assert all(s["value"] == pytest.approx(40.0) for s in over)
    assert not [s for s in plan.slacks if s["where"] == "A"]


def test_ev_that_cannot_be_charged_by_departure_reports_the_shortfall():
    f = fleet([site("A")], [ev("E1", "A", kw=10.0)])
    # 50 kWh wanted, 2 h at 10 kW: 20 kWh can be delivered, 30 kWh cannot.
    ses = EvSessions(charger_row=np.array([f.device_row["E1"]]), arrival_s=np.array([T0]),
                     departure_s=np.array([T0 + 7200.0]), need_kwh=np.array([50.0]))
    plan = optimize(f, 0.5, forecast(12, 1, sessions=ses), OptimizerConfig(n_steps=12), T0,
                    strict=True)
    sp = plan.setpoints[:, f.device_row["E1"]]
    np.testing.assert_allclose(sp[:8], 10.0, atol=1e-6)
    assert np.isnan(sp[8:]).all()
    unmet = [s for s in plan.slacks if s["constraint"] == "ev_energy_by_departure"]
    assert len(unmet) == 1 and unmet[0]["where"] == "A" and unmet[0]["step"] == 7
    assert unmet[0]["value"] == pytest.approx(30.0)
    assert plan.kpis["ev_unmet_kwh"] == pytest.approx(30.0)


def test_feeder_limit_shared_by_two_sites():
    sites = [site("A", feeder="F1"), site("B", feeder="F1")]
    devices = [load("LA", "A"), load("LB", "B"), battery("BB", "B", kwh=200.0, kw=60.0)]
    fc = forecast(8, 2, load_kw=100.0, price=100.0)
    # Wear (0.2 EUR/kWh) costs more than the import it saves (0.1 EUR/kWh), so the
    # battery only discharges what the shared 150 kW import limit requires.
    cfg = OptimizerConfig(n_steps=8, degradation_eur_per_kwh=0.2)
    tight = fleet(sites, devices, [{"id": "F1", "import_limit_kw": 150.0,
                                    "export_limit_kw": 1000.0}])
    plan = optimize(tight, 0.5, fc, cfg, T0, strict=True)
    np.testing.assert_allclose(plan.flows["import_kw"].sum(axis=1), 150.0, atol=1e-6)
    np.testing.assert_allclose(plan.setpoints[:, tight.device_row["BB"]], 50.0, atol=1e-6)
    assert plan.slacks == []
    loose = fleet(sites, devices, [{"id": "F1", "import_limit_kw": 1000.0,
                                    "export_limit_kw": 1000.0}])
    free = optimize(loose, 0.5, fc, cfg, T0, strict=True)
    np.testing.assert_allclose(free.setpoints[:, loose.device_row["BB"]], 0.0, atol=1e-6)


def test_feeder_limit_beyond_reach_is_a_reported_slack():
    sites = [site("A", feeder="F1"), site("B", feeder="F1")]
    f = fleet(sites, [load("LA", "A"), load("LB", "B")],
              [{"id": "F1", "import_limit_kw": 150.0, "export_limit_kw": 1000.0}])
    plan = optimize(f, 0.5, forecast(3, 2, load_kw=100.0), OptimizerConfig(n_steps=3), T0,
                    strict=True)
    over = [s for s in plan.slacks if s["constraint"] == "feeder_import_limit"]
    assert [(s["where"], s["step"]) for s in over] == [("F1", 0), ("F1", 1), ("F1", 2)]
    assert all(s["value"] == pytest.approx(50.0) for s in over)


def test_vpp_commitment_makes_batteries_export():
    f = fleet([site("A"), site("B")], [battery("BA", "A"), battery("BB", "B")])
    vpp = np.array([0.0, 4.0, 4.0, 0.0])  # 8 kWh of the 10 kWh stored
    cfg = OptimizerConfig(n_steps=4, dt_s=3600.0, vpp_export_kw=vpp,
                          terminal_value_eur_per_kwh=0.5, **NO_WEAR)
    plan = optimize(f, 0.5, forecast(4, 2, price=100.0, feed_in=0.0), cfg, T0, strict=True)
    np.testing.assert_allclose(plan.flows["export_kw"].sum(axis=1), vpp, atol=1e-6)
    assert plan.solver["groups"] == 1
    assert plan.slacks == []


def test_terminal_soc_target_and_peak_charge():
    f = fleet([site("A")], [battery("B1", "A", kwh=10.0, kw=5.0), load("L1", "A")])
    cfg = OptimizerConfig(n_steps=4, dt_s=3600.0, terminal_soc=0.9,
                          peak_charge_eur_per_kw=1.0, **NO_WEAR)
    plan = optimize(f, 0.5, forecast(4, 1, load_kw=10.0, price=100.0, feed_in=0.0), cfg, T0,
                    strict=True)
    # 4 kWh must go in; the peak charge spreads it: 1 kW extra import in every hour.
    np.testing.assert_allclose(plan.flows["import_kw"][:, 0], 11.0, atol=1e-6)
    assert plan.kpis["peak_import_kw"] == pytest.approx(11.0)
    soc_end = 0.5 + (-plan.setpoints[:, 0]).sum() / 10.0
    assert soc_end == pytest.approx(0.9)
