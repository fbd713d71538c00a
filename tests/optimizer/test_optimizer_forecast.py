"""Forecast helpers agree with the twin they are built on."""

from __future__ import annotations

import numpy as np

from optimizer import load_forecast, pv_forecast, sessions_from_state
from tests.optimizer.small import T0
from twin.fleet import LOAD_PROFILES
from twin.generator import generate_fleet
from twin.model import Twin
from twin.solar import clear_sky, sun_position
from twin.state import FLOW, StepInputs

FLEET = generate_fleet(8, seed=9)


def test_pv_forecast_equals_the_twin_pv_output():
    t = T0 + 11 * 3600.0
    zen, az = sun_position(FLEET.lat_deg, FLEET.lon_deg, np.array([t]))
    ghi, dni, dhi = clear_sky(zen, np.array([t]))
    site_kw, dev_kw = pv_forecast(FLEET, np.array([t]), ghi, dni, dhi, 25.0, 2.0, zen, az)
    twin = Twin(FLEET, backend="numpy", t_s=t)
    n = FLEET.n_sites
    inputs = StepInputs.constant(n, temp_air_c=25.0, wind_m_s=2.0)
    inputs.ghi, inputs.dni, inputs.dhi = ghi[0], dni[0], dhi[0]
    inputs.zenith_deg, inputs.azimuth_deg = zen[0], az[0]
    twin.step(t, 900.0, inputs)
    assert site_kw[0].sum() > 1000.0
    np.testing.assert_allclose(site_kw[0], twin.state.site_flows[:, FLOW["pv_kw"]], rtol=1e-9)
    pv = FLEET.rows_of_type("pv")
    np.testing.assert_allclose(dev_kw[0, pv], twin.state.p_kw[pv], rtol=1e-9)


def test_load_forecast_equals_the_twin_load():
    frac = np.random.default_rng(1).uniform(0.2, 1.0, (1, FLEET.n_sites, len(LOAD_PROFILES)))
    twin = Twin(FLEET, backend="numpy", t_s=T0)
    inputs = StepInputs.constant(FLEET.n_sites)
    inputs.load_frac = frac[0]
    twin.step(T0, 900.0, inputs)
    np.testing.assert_allclose(load_forecast(FLEET, frac)[0],
                               -twin.state.site_flows[:, FLOW["load_kw"]], rtol=1e-12)


def test_sessions_from_state_reads_connected_cars():
    twin = Twin(FLEET, backend="numpy", t_s=T0)
    ev = FLEET.rows_of_type("ev_charger")[:3]
    twin.plug_in(ev, np.array([10.0, 20.0, 30.0]), np.array([T0 + 3600.0] * 3))
    ses = sessions_from_state(twin.params, twin.state)
    assert sorted(ses.charger_row.tolist()) == sorted(ev.tolist())
    assert sorted(ses.need_kwh.tolist()) == [10.0, 20.0, 30.0]
    assert (ses.arrival_s == T0).all() and (ses.departure_s == T0 + 3600.0).all()
