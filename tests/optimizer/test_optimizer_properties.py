"""Setpoints stay inside every device's limits, whatever the input (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import EvSessions, Forecast, OptimizerConfig, optimize
from optimizer.report import setpoint_violations
from tests.optimizer.small import T0, battery, ev, fleet, load, pv, site
from twin.physics import battery_step

FLEET = fleet(
    [site("A", import_kw=150.0, export_kw=80.0, feeder="F"), site("B", feeder="F")],
    [pv("PA1", "A"), pv("PA2", "A", kwp=60.0), battery("BA1", "A", kwh=40.0, kw=20.0, eff=0.9),
     battery("BA2", "A", kwh=20.0, kw=15.0, eff=0.95, soc_min=0.2, soc_max=0.8),
     ev("EA1", "A", kw=11.0, connectors=2), ev("EA2", "A", kw=22.0), load("LA", "A"),
     battery("BB1", "B", kwh=100.0, kw=50.0, eff=0.92), ev("EB1", "B", kw=50.0),
     load("LB", "B", 200.0)],
    [{"id": "F", "import_limit_kw": 200.0, "export_limit_kw": 100.0}],
)
N = 12
DT = 1800.0

finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    price=st.lists(st.floats(-100, 400, **finite), min_size=N, max_size=N),
    feed_in=st.lists(st.floats(-100, 300, **finite), min_size=N, max_size=N),
    pv_scale=st.floats(0, 1.5, **finite),
    load_scale=st.floats(0, 2, **finite),
    soc=st.lists(st.floats(0, 1, **finite), min_size=3, max_size=3),
    need=st.lists(st.floats(0, 120, **finite), min_size=3, max_size=3),
    stay_steps=st.lists(st.integers(0, 20), min_size=3, max_size=3),
    peak=st.floats(0, 20, **finite),
    terminal=st.one_of(st.none(), st.floats(0, 1, **finite)),
)
def test_setpoints_inside_device_limits_for_any_input(price, feed_in, pv_scale, load_scale, soc,
                                                      need, stay_steps, peak, terminal):
    shape = np.sin(np.linspace(0, np.pi, N))[:, None]
    pv_kw = shape * np.array([[160.0, 0.0]]) * pv_scale
    load_kw = np.full((N, 2), 1.0) * np.array([[60.0, 120.0]]) * load_scale
    rows = np.array([FLEET.device_row[d] for d in ("EA1", "EA2", "EB1")])
    ses = EvSessions(charger_row=rows, arrival_s=np.full(3, T0),
                     departure_s=T0 + DT * np.array(stay_steps), need_kwh=np.array(need))
    fc = Forecast(pv_kw=pv_kw, load_kw=load_kw, import_price_eur_per_mwh=np.array(price),
                  feed_in_eur_per_mwh=np.array(feed_in), co2_kg_per_mwh=np.full(N, 250.0),
                  ev_sessions=ses)
    soc_rows = np.full(FLEET.n_devices, 0.5)
    soc_rows[[FLEET.device_row[d] for d in ("BA1", "BA2", "BB1")]] = soc
    cfg = OptimizerConfig(n_steps=N, dt_s=DT, peak_charge_eur_per_kw=peak, terminal_soc=terminal)
    plan = optimize(FLEET, soc_rows, fc, cfg, T0, strict=True)
    assert plan.status == "optimal"
    assert setpoint_violations(FLEET, plan.setpoints) == []
    # Replaying the battery setpoints through the twin's physics changes nothing:
    # every setpoint is reachable from the SoC the previous ones leave.
    bat = FLEET.rows_of_type("battery")
    e = np.clip(soc_rows[bat], FLEET.soc_min[bat], FLEET.soc_max[bat]) * FLEET.battery_kwh[bat]
    for t in range(N):
        p, e = battery_step(plan.setpoints[t, bat], e, FLEET.battery_kwh[bat],
                            FLEET.charge_kw[bat], FLEET.discharge_kw[bat],
                            FLEET.charge_eff[bat], FLEET.discharge_eff[bat],
                            FLEET.soc_min[bat], FLEET.soc_max[bat], DT / 3600.0)
        np.testing.assert_allclose(p, plan.setpoints[t, bat], atol=1e-6)
    # PV limits never exceed what is available; EV limits never exceed the rating.
    pv_rows = FLEET.rows_of_type("pv")
    limits = plan.setpoints[:, pv_rows]
    assert np.all(np.isnan(limits) | (limits <= pv_kw[:, [0]] + 1e-6))
